"""The one window rule: windows and gait-cycle segments at exact frames, derived and bridged
joints, restarts at long dropouts, gaps and glitches, resampling, and the counts that explain
a track that gives nothing."""
import numpy as np
import pytest

from gaitcam.skeleton.layouts import CANONICAL, KINECT_V2
from gaitcam.skeleton.sequence import JointState, SkeletonSequence
from gaitcam.skeleton import windows
from gaitcam.skeleton.windows import (DEFAULT_F, LIVE_STRIDE, TrackWindower, WindowRule, source_fps, track_windows,
                                      train_stride)

STEP = 1 / 30
HAND_L, SHOULDER_C, KNEE_L = CANONICAL.index("HandLeft"), CANONICAL.index("ShoulderCenter"), CANONICAL.index("KneeLeft")


def _body(k: float) -> np.ndarray:
    """A standing body shifted by k mm per frame along x: frame k shows which frame it is."""
    rng = np.random.default_rng(0)
    return (rng.normal(size=(20, 3)) * 0.3 + [0.001 * k, 0, 0]).astype(np.float32)


def _seq(n: int, fps: float = 30.0, states=None) -> SkeletonSequence:
    joints = np.stack([_body(k) for k in range(n)])
    return SkeletonSequence(joints, np.arange(n) / fps, CANONICAL, states)


def _frame_of(window_joints: np.ndarray) -> np.ndarray:
    return np.round((window_joints[:, 0, 0] - _body(0)[0, 0]) / 0.001).astype(int)


def test_strides_and_defaults():
    assert DEFAULT_F == 6 and LIVE_STRIDE == 3 and train_stride(6) == 3 and windows.test_stride(6) == 6 and train_stride(1) == 1
    with pytest.raises(ValueError):
        WindowRule(stride=0)


@pytest.mark.parametrize("stride", [1, 3, 6])
def test_windows_every_stride_oldest_frame_first(stride):
    tw = track_windows(_seq(40), WindowRule(stride=stride))
    starts = list(range(0, 40 - 6 + 1, stride))
    assert len(tw) == len(starts) == tw.stats.windows
    for s, w in zip(starts, tw.joints):
        assert _frame_of(w).tolist() == list(range(s, s + 6))
    np.testing.assert_allclose(tw.times, (np.array(starts) + 5) / 30)
    assert tw.tracked.all() and not tw.derived.any()


def test_a_stride_changed_on_the_way_keeps_each_window_f_consecutive_frames():
    """The live pipeline widens and narrows a track's stride under load: each window still
    holds f consecutive frames with its newest frame's time, the next comes `stride` frames
    after the last one, and the segments keep their own hop."""
    seq, plan = _seq(80), {0: 1, 12: 3, 30: 6, 50: 2, 60: 1}  # frame -> stride from there on
    windower, ends, segments = TrackWindower(WindowRule(stride=1)), [], 0
    for k, (t, j) in enumerate(zip(seq.timestamps, seq.joints)):
        windower.stride = plan.get(k, windower.stride)
        got, segs = windower.push(float(t), j)
        segments += len(segs)
        for w in got:
            assert _frame_of(w.joints).tolist() == list(range(k - 5, k + 1)) and w.time == pytest.approx(k / 30)
            ends.append(k)
    expected, last = [], None
    for k in range(5, 80):
        stride = [s for f, s in sorted(plan.items()) if f <= k][-1]
        if last is None or k - last >= stride:
            expected.append(k)
            last = k
    assert ends == expected and 6 in np.diff(ends) and 3 in np.diff(ends)
    assert segments == (80 - 32) // 8 + 1
    with pytest.raises(ValueError):
        windower.stride = 0


def test_a_move_puts_the_next_window_earlier_or_later_once():
    """The live pipeline lets people take turns: a move of d frames puts the run's next window d
    frames later (negative: earlier, never before the next frame) and the ones after it `stride`
    apart again; `next_window_time` says when the next completes; before the run's first window a
    move does nothing."""
    seq = _seq(50)
    windower, ends = TrackWindower(WindowRule(stride=3)), []
    for k, (t, j) in enumerate(zip(seq.timestamps, seq.joints)):
        if k == 2:
            assert windower.next_window_time() is None
            windower.move(4)  # no window yet: the first still comes at f frames
        if k == 12:  # windows at 5, 8, 11: the next at 14, put off to 16
            assert windower.next_window_time() == pytest.approx(14 / 30)
            windower.move(2)
            assert windower.next_window_time() == pytest.approx(16 / 30)
        if k == 20:  # ... 16, 19: the next at 22, brought forward to 21
            windower.move(-1)
            assert windower.next_window_time() == pytest.approx(21 / 30)
        if k == 22:  # ... 21: the next at 24, at most to 22 (this frame)
            windower.move(-5)
            assert windower.next_window_time() == pytest.approx(22 / 30)
        due = windower.next_window_time()
        got, _ = windower.push(float(t), j)
        if due is not None:
            assert bool(got) == (due == pytest.approx(t))
        for w in got:
            assert _frame_of(w.joints).tolist() == list(range(k - 5, k + 1))
            ends.append(k)
    assert ends == [5, 8, 11, 16, 19, 21, 22, 25, 28, 31, 34, 37, 40, 43, 46, 49]


def test_a_move_counts_from_a_window_that_is_overdue():
    """The stride narrowed past a window's turn: the window is due at the next frame, and a move
    counts from there (not from when it would have been due)."""
    seq = _seq(20)
    windower, ends = TrackWindower(WindowRule(stride=4)), []
    for k, (t, j) in enumerate(zip(seq.timestamps, seq.joints)):
        if k == 8:  # windows at 5; at stride 4 the next at 9, at stride 2 overdue since 7
            windower.stride = 2
            assert windower.next_window_time() == pytest.approx(8 / 30)
            windower.move(1)
            assert windower.next_window_time() == pytest.approx(9 / 30)
        ends += [k] * len(windower.push(float(t), j)[0])
    assert ends == [5, 9, 11, 13, 15, 17, 19]


def test_segments_every_hop_after_a_stride_of_frames():
    tw = track_windows(_seq(64))
    assert len(tw.segments) == tw.stats.segments == (64 - 32) // 8 + 1
    assert _frame_of(tw.segments[1]).tolist() == list(range(8, 40))


def test_streaming_and_whole_track_agree():
    seq = _seq(50)
    windower = TrackWindower(WindowRule())
    got = [w for t, j in zip(seq.timestamps, seq.joints) for w in windower.push(float(t), j)[0]]
    np.testing.assert_array_equal(np.stack([w.joints for w in got]), track_windows(seq).joints)


def test_never_tracked_hands_and_shoulder_centre_are_derived_not_zero():
    states = np.full((40, 20), JointState.TRACKED, np.int8)
    states[:, [HAND_L, SHOULDER_C]] = JointState.MISSING
    seq = _seq(40, states=states)
    seq.joints[:, [HAND_L, SHOULDER_C]] = 0.0  # what some writers put in untracked slots
    tw = track_windows(seq)
    assert len(tw) == 12 and tw.stats.incomplete == 0
    assert tw.derived[:, :, HAND_L].all() and tw.derived[:, :, SHOULDER_C].all() and not tw.derived[:, :, 0].any()
    assert not tw.tracked[:, :, HAND_L].any()
    assert np.isfinite(tw.joints).all() and (np.abs(tw.joints[:, :, HAND_L]).sum(-1) > 0).all()


def test_a_short_dropout_is_bridged_a_long_one_ends_the_run():
    states = np.full((60, 20), JointState.TRACKED, np.int8)
    states[10:15, KNEE_L] = JointState.MISSING  # 5 frames: 0.2 s, bridged
    states[30:45, KNEE_L] = JointState.MISSING  # 15 frames: 0.5 s, too long
    seq = _seq(60, states=states)
    tw = track_windows(seq)
    assert tw.stats.bridged == 5 and tw.stats.incomplete == 15
    bridged = tw.derived[:, :, KNEE_L].any(axis=1)
    assert bridged.any()
    # The bridge interpolates between the frames around it: the body moved linearly, so exactly.
    expected = np.stack([_body(k) for k in range(60)])[:, KNEE_L]
    for w in tw.joints:
        frames = _frame_of(w)
        np.testing.assert_allclose(w[:, KNEE_L], expected[frames], atol=1e-5)
        assert not (30 <= frames).any() or (frames >= 45).all()  # never spans the long dropout


def test_a_track_that_never_has_a_knee_gives_nothing_and_says_why():
    states = np.full((40, 20), JointState.TRACKED, np.int8)
    states[:, KNEE_L] = JointState.MISSING
    tw = track_windows(_seq(40, states=states))
    assert len(tw) == 0 and tw.stats.incomplete == 40


def test_non_finite_coordinates_are_missing():
    seq = _seq(40)
    seq.joints[12, 5] = np.inf
    tw = track_windows(seq)
    assert np.isfinite(tw.joints).all() and tw.stats.bridged == 1


def test_a_joint_jump_restarts_the_run():
    seq = _seq(40)
    seq.joints[20:, 3] += 2.0  # the head jumps 2 m in one frame (60 m/s) and stays
    tw = track_windows(seq)
    assert tw.stats.glitches == 1
    assert not any((_frame_of(w) < 20).any() and (_frame_of(w) >= 20).any() for w in tw.joints)


def test_gaps_longer_than_the_bridge_restart_shorter_ones_are_interpolated():
    seq = _seq(40)
    keep = np.r_[0:10, 13:25, 40:40]  # a 3-frame hole (0.1 s): bridged by resampling
    times = np.r_[seq.timestamps[keep], seq.timestamps[24] + 1.0 + np.arange(15) / 30]  # then 1 s away
    joints = np.concatenate([seq.joints[keep], seq.joints[25:40]])
    tw = track_windows(SkeletonSequence(joints, times, CANONICAL))
    assert tw.stats.gaps == 1
    first_run = tw.times < times[22] + 1e-6
    assert first_run.sum() == (25 - 6) // 3 + 1  # the hole was filled on the 30 fps grid


def test_a_15_fps_track_gives_30_fps_windows():
    tw = track_windows(_seq(30, fps=15.0))
    assert source_fps(np.arange(30) / 15.0) == pytest.approx(15.0)
    assert len(tw) > 10 and np.allclose(np.diff(tw.times), 0.1)


def test_any_layout_goes_through_retargeting():
    v2 = np.zeros((40, KINECT_V2.n_joints, 3), np.float32)
    canon = np.stack([_body(k) for k in range(40)])
    names = {"SpineBase": "HipCenter", "SpineMid": "Spine", "SpineShoulder": "ShoulderCenter"}
    for i, name in enumerate(KINECT_V2.joints):
        name = names.get(name, name)
        if name in CANONICAL.joints:
            v2[:, i] = canon[:, CANONICAL.index(name)]
    tw = track_windows(SkeletonSequence(v2, np.arange(40) / 30, KINECT_V2))
    assert len(tw) == 12
    np.testing.assert_allclose(tw.joints[0], canon[:6], atol=1e-6)


def test_a_walk_of_collapsed_or_all_zero_frames_is_no_body():
    seq = _seq(60)
    seq.joints[:] = 0.0  # a sensor that reports every joint at its own origin
    tw = track_windows(seq)
    assert len(tw) == 0 and tw.stats.implausible == 60 and tw.stats.incomplete == 60
    seq = _seq(60)
    seq.joints[30, SHOULDER_C] = seq.joints[30, CANONICAL.index("HipCenter")]  # one collapsed frame: bridged
    tw = track_windows(seq)
    assert tw.stats.implausible == 1 and tw.stats.bridged == 1 and np.isfinite(tw.joints).all()
