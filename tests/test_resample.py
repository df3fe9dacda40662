"""Resampling to 30 fps: exact on linear motion from any rate or jitter, a pass-through at 30 fps,
never across a gap, and the streaming and whole-track versions agree frame for frame."""
import numpy as np
import pytest

from gaitcam.skeleton.resample import MODEL_FPS, Resampler, default_max_gap, resample

VELOCITY = np.array([1.2, -0.1, 0.4], dtype=np.float32)


def _linear(times: np.ndarray) -> np.ndarray:
    """Joints [T, 20, 3] moving at constant velocity: linear interpolation reproduces them."""
    offsets = np.linspace(0, 1, 60, dtype=np.float32).reshape(20, 3)
    return (np.asarray(times, np.float32)[:, None, None] * VELOCITY + offsets).astype(np.float32)


def _stream(times, joints, max_gap):
    resampler = Resampler(MODEL_FPS, max_gap)
    outs = [resampler.push(float(t), j) for t, j in zip(times, joints)]
    t = np.concatenate([o.times for o in outs])
    j = np.concatenate([o.joints for o in outs])
    starts = np.concatenate([(np.arange(len(o.times)) == 0) & o.restart for o in outs])
    return t, j, starts


@pytest.mark.parametrize("fps", [15.0, 20.0, 60.0, 90.0])
def test_other_rates_land_on_the_30_fps_grid(fps):
    times = 5.0 + np.arange(int(2 * fps) + 1) / fps  # 2 s
    t, j, starts = _stream(times, _linear(times), default_max_gap(fps))
    np.testing.assert_allclose(t, 5.0 + np.arange(61) / 30, atol=1e-9)
    np.testing.assert_allclose(j, _linear(t), atol=1e-5)
    assert starts.tolist() == [True] + [False] * 60


def test_30_fps_passes_through():
    times = np.arange(90) / 30
    joints = np.random.default_rng(0).normal(size=(90, 20, 3)).astype(np.float32)
    t, j, starts = _stream(times, joints, default_max_gap(30))
    np.testing.assert_allclose(t, times, atol=1e-12)
    np.testing.assert_allclose(j, joints, atol=1e-6)
    assert starts.sum() == 1


def test_jittery_timestamps_give_a_regular_grid():
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.uniform(0.02, 0.05, 120))
    t, j, starts = _stream(times, _linear(times), 0.06)
    assert starts.sum() == 1
    np.testing.assert_allclose(np.diff(t), 1 / 30, atol=1e-9)
    assert t[0] == times[0] and t[-1] <= times[-1] + 1e-9
    np.testing.assert_allclose(j, _linear(t), atol=1e-5)


def test_a_gap_restarts_and_is_never_bridged():
    times = np.concatenate([np.arange(10) / 30, 1.0 + np.arange(10) / 30])  # 0.7 s gap
    t, j, starts = _stream(times, _linear(times), default_max_gap(30))
    assert starts.nonzero()[0].tolist() == [0, 10]
    assert not ((t > 9 / 30 + 1e-9) & (t < 1.0 - 1e-9)).any()  # nothing made up inside the gap
    assert t[10] == 1.0


def test_one_dropped_frame_is_bridged_two_are_not():
    times = np.delete(np.arange(20) / 30, [5])
    t, _, starts = _stream(times, _linear(times), default_max_gap(30))
    assert starts.sum() == 1 and len(t) == 20  # the dropped frame is interpolated back
    times = np.delete(np.arange(20) / 30, [5, 6])
    assert _stream(times, _linear(times), default_max_gap(30))[2].sum() == 2


def test_time_going_back_restarts():
    times = np.array([0, 1, 2, 3, 1.5, 2.5, 3.5]) / 30
    _, _, starts = _stream(times, _linear(times), default_max_gap(30))
    assert starts.nonzero()[0].tolist() == [0, 4]


def test_reset_starts_a_new_segment():
    resampler = Resampler()
    resampler.push(0.0, np.zeros((20, 3)))
    assert not resampler.push(1 / 30, np.zeros((20, 3))).restart
    resampler.reset()
    assert resampler.push(2 / 30, np.zeros((20, 3))).restart


def test_streaming_equals_batch():
    rng = np.random.default_rng(2)
    steps = rng.uniform(0.01, 0.05, 300)
    steps[[40, 41, 150]] = [0.3, -0.02, 1.0]  # a gap, time going back, a long gap
    times = 3.0 + np.cumsum(steps)
    joints = rng.normal(size=(300, 20, 3)).astype(np.float32)
    stream = _stream(times, joints, 0.06)
    batch = resample(times, joints, MODEL_FPS, 0.06)
    assert stream[2].sum() == 4
    np.testing.assert_array_equal(stream[2], batch[2])
    np.testing.assert_allclose(stream[0], batch[0], atol=1e-12)
    np.testing.assert_allclose(stream[1], batch[1], atol=1e-5)


def test_batch_edge_cases():
    t, j, s = resample(np.zeros(0), np.zeros((0, 20, 3)))
    assert len(t) == len(j) == len(s) == 0
    t, j, s = resample(np.array([0.0, 1.0]), np.ones((2, 20, 3)))  # two lone frames
    assert t.tolist() == [0.0, 1.0] and s.tolist() == [True, True]
    with pytest.raises(ValueError):
        Resampler(rate=0)
