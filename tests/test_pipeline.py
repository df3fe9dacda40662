"""The live pipeline end to end with a tiny untrained encoder: windows reach the matcher exactly as
a recording would cut them, stats add up, decisions are passed on when they change, a file
source ends the run, a lost source is retried, bad bodies are skipped, and nothing stops it."""
from collections import Counter
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest

from gaitcam.benchmarks.scene import crowd_recording
from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.recording.recording import Recording, RecordingMeta
from gaitcam.sensors.base import Body, Source, SourceLost
from gaitcam.sensors.demo import DEMO_FLOOR, DemoSource, demo_walk
from gaitcam.sensors.replay import ReplaySource
from gaitcam.session import summary
from gaitcam.skeleton.layouts import CANONICAL, KINECT_V2
from gaitcam.skeleton.sequence import SkeletonSequence
from gaitcam.skeleton.windows import WindowRule, track_windows
from gaitcam.stream.calibration import Calibration
from gaitcam.stream.pipeline import Pipeline
from gaitcam.stream.encode import EncoderLoad
from gaitcam.stream.stride import StrideControl

HIDDEN = 16


@pytest.fixture
def encoder(one_thread):
    return GaitEncoder(SGELA(SGELAConfig(hidden=HIDDEN)), "body", device="cpu")


@dataclass
class Verdict:
    identity: str | None
    score: float


class FakeMatcher:
    """Records what it is told; names a track "A" once it has 5 windows, "B" from 10 on."""

    def __init__(self):
        self.windows: dict[int, list[np.ndarray]] = {}
        self.segments: dict[int, int] = {}
        self.ages: dict[int, list[np.ndarray]] = {}
        self.times: dict[int, list[float]] = {}
        self.forgotten: list[int] = []
        self.decided: list[dict[int, Verdict]] = []

    def observe(self, track, time, ages, windows, tracked=None):
        assert track not in self.forgotten and len(ages) == len(windows) == len(tracked)
        self.windows.setdefault(track, []).extend(windows)
        self.ages.setdefault(track, []).extend(ages)
        self.times.setdefault(track, []).append(time)

    def observe_segments(self, segments):
        for track, s in segments.items():
            assert s.shape[1:] == (32, 20, 3)
            self.segments[track] = self.segments.get(track, 0) + len(s)

    def decide(self, time, tracks):
        n = {t: len(self.windows.get(t, [])) for t in tracks}
        self.decided.append({t: Verdict(None if n[t] < 5 else "A" if n[t] < 10 else "B", float(n[t])) for t in tracks})
        return self.decided[-1]

    def forget(self, track):
        self.forgotten.append(track)

    @property
    def observed(self) -> int:
        return sum(len(w) for w in self.windows.values())


class Faulty(Source):
    """Wraps a source: loses it at read `lose_at` (once), adds a 19-joint body every `bad_every`."""

    def __init__(self, inner, lose_at=None, bad_every=None):
        self.inner, self.lose_at, self.bad_every = inner, lose_at, bad_every
        self.name, self.layout, self.fps, self.is_file = "faulty", inner.layout, inner.fps, inner.is_file
        self.reads = self.opens = 0

    def open(self):
        self.opens += 1
        if self.opens == 1:
            self.inner.open()

    def read(self):
        self.reads += 1
        if self.reads == self.lose_at:
            raise SourceLost("faulty: unplugged")
        frame = self.inner.read()
        if frame is not None and self.bad_every and frame.index % self.bad_every == 0:
            frame.bodies.append(Body(None, np.zeros((19, 3), np.float32)))
        return frame


def test_demo_end_to_end(encoder):
    matcher, snapshots, decisions = FakeMatcher(), [], []
    pipeline = Pipeline(DemoSource(realtime=False, duration=6), encoder, matcher,
                        on_frame=snapshots.append, on_decision=lambda *d: decisions.append(d))
    stats = pipeline.run()
    assert stats.frames == 180 and len(snapshots) == 180 and stats.dropped == 0 and stats.errors == 0
    assert 100 < stats.frames_with_pose <= 180 and stats.tracks >= 3
    assert stats.windows == matcher.observed > 50  # every encoded window reached the matcher
    assert sorted(matcher.forgotten) == list(range(1, stats.tracks + 1))  # each track once, at the end
    for track, ages in matcher.ages.items():
        assert np.stack(ages).shape[1:] == (2, 6 * 3 * HIDDEN)  # each window and its mirror image
        assert np.stack(matcher.windows[track]).shape[1:] == (6, 20, 3)
        assert not np.isnan(np.stack(matcher.windows[track])).any()
    # The sensor's floor plane was used: feet are on the floor in what the matcher saw.
    feet = np.concatenate([np.stack(w)[:, :, [15, 19], 1].min(axis=2).ravel() for w in matcher.windows.values()])
    assert abs(np.median(feet)) < 0.08
    # on_decision reports exactly the changes of identity in what the matcher decided.
    changes, last = [], {}
    for decided in matcher.decided:
        for track, verdict in decided.items():
            if track not in last or last[track] != verdict.identity:
                changes.append((track, verdict.identity))
            last[track] = verdict.identity
    assert [(track, d.identity) for track, _, d in decisions] == changes and changes
    assert all(j.shape == (20, 3) for s in snapshots for j in s.tracks.values())


def test_windows_are_those_of_the_recording(encoder):
    """One walk replayed: the matcher gets exactly the windows and segments the window rule cuts
    from each of its tracks offline (the rule is one piece of code, so live and files agree)."""
    seq = demo_walk("Chloe", 4, 12)
    rec = Recording(RecordingMeta("demo", CANONICAL.name, 30.0, calibration={"floor": list(DEMO_FLOOR)}), {5: seq})
    matcher = FakeMatcher()
    stats = Pipeline(ReplaySource(rec, speed=0), encoder, matcher).run()
    joints = Calibration.from_floor_plane(DEMO_FLOOR).apply(seq.joints)
    # The tracker starts a new track for each pass through the view (a gap in time).
    passes = np.split(np.arange(len(seq)), np.flatnonzero(np.diff(seq.timestamps) > 0.5) + 1)
    offline = [track_windows(SkeletonSequence(joints[p], seq.timestamps[p], CANONICAL, seq.states[p]))
               for p in passes]
    expected = np.concatenate([tw.joints for tw in offline])
    got = np.stack([w for track in sorted(matcher.windows) for w in matcher.windows[track]])
    assert len(got) == len(expected) == stats.windows > 0
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert sum(matcher.segments.values()) == sum(len(tw.segments) for tw in offline) > 0
    assert stats.frames == len(seq) and stats.skipped == sum(tw.stats.incomplete for tw in offline)
    assert stats.tracks == len(matcher.windows) > 1  # out of view between passes: new tracks


def _longest_complete_run(seq):
    """The longest stretch of a walk with every joint and no gap in time: (joints, times)."""
    ok = ~np.isnan(seq.joints).any(axis=(1, 2))
    ok[1:] &= np.isclose(np.diff(seq.timestamps), 1 / 30)
    best, start = (0, 0), 0
    for k in range(1, len(ok) + 1):
        if k == len(ok) or not ok[k]:
            best = max(best, (k - start, start))
            start = k
    n, first = best
    return seq.joints[first:first + n], seq.timestamps[first:first + n]


def test_a_15_fps_kinect_v2_source_gives_30_fps_canonical_windows(encoder):
    joints, times = _longest_complete_run(demo_walk("Ben", 6, 12))
    joints, times = joints[::2], times[::2]  # 15 fps
    same = {"SpineBase": "HipCenter", "SpineMid": "Spine", "SpineShoulder": "ShoulderCenter", "Neck": "ShoulderCenter",
            "HandTipLeft": "HandLeft", "ThumbLeft": "HandLeft", "HandTipRight": "HandRight", "ThumbRight": "HandRight"}
    v2 = joints[:, [CANONICAL.index(same.get(name, name)) for name in KINECT_V2.joints]]
    rec = Recording(RecordingMeta("kinect", KINECT_V2.name, 15.0), {1: SkeletonSequence(v2, times, KINECT_V2)})
    matcher = FakeMatcher()
    stats = Pipeline(ReplaySource(rec, speed=0), encoder, matcher).run()
    expected = track_windows(SkeletonSequence(joints, times, CANONICAL), WindowRule())
    assert stats.windows == len(expected) > 10 and stats.gaps == 0
    assert np.allclose(np.diff(expected.times), 0.1)  # 30 fps windows every 3 frames
    np.testing.assert_allclose(np.stack(matcher.windows[1]), expected.joints, atol=1e-5)


def test_lost_source_is_retried_and_counted(encoder):
    source = Faulty(DemoSource(realtime=False, duration=3), lose_at=40)
    matcher = FakeMatcher()
    stats = Pipeline(source, encoder, matcher).run()
    assert stats.errors == 1 and stats.source_restarts == 1 and source.opens == 2
    assert stats.frames == 90 and stats.windows == matcher.observed > 0


def test_bodies_with_the_wrong_joint_count_are_skipped_and_counted(encoder, caplog):
    matcher = FakeMatcher()
    clean = Pipeline(DemoSource(realtime=False, duration=3), encoder, FakeMatcher()).run()
    stats = Pipeline(Faulty(DemoSource(realtime=False, duration=3), bad_every=10), encoder, matcher).run()
    assert stats.skipped == clean.skipped + 9
    assert stats.windows == clean.windows > 0 and stats.tracks == clean.tracks
    assert sum("(19, 3) joints" in r.message for r in caplog.records) == 1  # said once


def test_a_floor_plane_is_used_once_the_sensor_has_one(encoder):
    class FloorLater(Faulty):
        def read(self):
            frame = self.inner.read()
            if frame is not None and frame.index < 30:
                frame.extras["floor"] = (0.0, 0.0, 0.0, 0.0)  # Kinect: floor not seen yet
            return frame

    snapshots = []
    Pipeline(FloorLater(DemoSource(realtime=False, duration=2)), encoder, FakeMatcher(),
             on_frame=snapshots.append).run()
    feet = [np.nanmin(j[[15, 19], 1]) for s in snapshots for j in s.tracks.values()]
    assert len(feet) == sum(len(s.tracks) for s in snapshots) > 40
    early, late = np.array(feet[:20]), np.array(feet[-20:])
    assert (early < -0.5).all() and (np.abs(late) < 0.1).all()  # camera frame, then floor frame


def test_recorder_gets_tracked_frames_in_the_source_layout(encoder):
    class Recorder:
        frames = []

        def write(self, frame):
            self.frames.append(frame)

    recorder = Recorder()
    Pipeline(DemoSource(realtime=False, duration=2), encoder, FakeMatcher(), recorder=recorder).run()
    assert len(recorder.frames) == 60 and recorder.frames[0].layout == CANONICAL
    bodies = [b for f in recorder.frames for b in f.bodies]
    assert bodies and all(isinstance(b.track, int) and b.joints.shape == (20, 3) for b in bodies)
    # Before calibration: camera coordinates, the feet well below the (tilted) camera.
    assert np.nanmedian([b.joints[15, 1] for b in bodies]) < -0.5


def test_duration_and_stop_end_a_live_run(encoder):
    matcher, snapshots, start = FakeMatcher(), [], time.monotonic()
    stats = Pipeline(DemoSource(), encoder, matcher, on_frame=snapshots.append).run(duration=0.5)
    assert 0.45 < time.monotonic() - start < 2.0 and 8 < stats.frames <= 18  # 30 fps, 0.5 s
    # At the live pace, decisions come while people are in view, and the view is shown them.
    shown = [s for s in snapshots if s.decisions]
    assert shown and all(set(s.decisions) <= set(s.tracks) for s in shown)
    pipeline = Pipeline(DemoSource(), encoder, FakeMatcher())
    threading.Timer(0.3, pipeline.stop).start()
    start = time.monotonic()
    pipeline.run()
    assert time.monotonic() - start < 2.0


def test_stride_control_widens_at_once_narrows_after_calm_and_stays_within_limits(caplog):
    control, now = StrideControl(2, 4, calm=2), [0.0]
    control.update(0.0, 0, 0)  # the first interval starts

    def interval(lag: float | None, backlog: int = 0, dropped: int = 0) -> int:
        if lag is not None:
            control.add([lag] * 10)
        now[0] += 0.5
        control.update(now[0], backlog, dropped)
        return control.stride

    assert [interval(0.2) for _ in range(3)] == [3, 4, 4]  # one step per interval, never past 4
    assert not control.behind  # slow, but not falling further behind
    assert [interval(0.2, backlog=5), interval(0.2, backlog=9)] == [4, 4]
    assert control.behind and control.episodes == 1  # the backlog grows at the widest: warned once
    assert [r.levelname for r in caplog.records if "falling behind" in r.message] == ["WARNING"]
    assert [interval(0.01), interval(0.01)] == [4, 3] and not control.behind  # 2 calm intervals, one step
    assert interval(0.2) == 4  # the narrower stride did not hold: back, and the next step waits 4 intervals
    assert [interval(0.01) for _ in range(6)] == [4, 4, 4, 3, 3, 2]  # ... then held: 2 intervals again
    assert [interval(0.01) for _ in range(4)] == [2] * 4 and control.lag == pytest.approx(0.01)  # the base
    assert interval(None, backlog=4) == 3 and control.lag == 0.5  # nothing back for an interval while frames wait
    assert interval(0.001, backlog=4) == 4  # frames piling up in the queues are overload at any lag
    assert interval(None) == 4 and control.lag == 0.0  # no one in view: idle, calm
    with pytest.raises(ValueError):
        StrideControl(3, 2)


def test_a_lag_the_encoder_did_not_cause_does_not_widen_the_stride():
    """Over target while the encoder has time to spare (a scheduler or other processes hold the
    loop back, or the lag is the encode time itself): a wider stride cannot help. From a demand of
    SATURATED it does, as wide at once as the demand asks (at most double), and it narrows while
    the narrower stride would leave the encoder under ROOM (here, where the lag would pass the target
    one step narrower, only then)."""
    control, now, load = StrideControl(1, 6), [0.0], [EncoderLoad(0.0, 0, 0)]
    control.update(0.0, 0, 0, load[0])

    def interval(share: float, came: int = 30, done: int = 30, backlog: int = 0) -> int:
        control.add([0.12] * 10)  # well over the 50 ms target
        now[0] += 0.5
        busy, offered, finished, *_ = load[0]
        load[0] = EncoderLoad(busy + share * 0.5, offered + came, finished + done)
        control.update(now[0], backlog, 0, load[0])
        return control.stride

    assert [interval(0.2), interval(0.6), interval(0.8)] == [1] * 3 and control.lag == pytest.approx(0.12)
    assert control.demand == pytest.approx(0.8)
    assert [interval(0.9), interval(0.9)] == [1, 2]  # saturated twice in a row: its queue's lag; one step
    assert interval(1.0, came=60) == 4 and control.demand == pytest.approx(2.0)  # 2 x 2.0 / 0.7 = 5.7: at most double
    assert interval(0.1, backlog=5) == 5  # frames piling up are overload whoever is busy: one step
    # The lag stays over target, but one step narrower the encoder would stay under ROOM: calm
    # after 3 intervals, down to where the next step would be too much.
    assert [interval(0.1) for _ in range(3)] == [5, 5, 4]
    assert [interval(0.4) for _ in range(3)] == [4, 4, 3]  # 0.4 x 4/3 = 0.53
    assert [interval(0.6) for _ in range(5)] == [3] * 5  # 0.6 x 3/2 = 0.9 at stride 2: no room


def _intervals(control: StrideControl):
    """Drive `control` interval by interval: `interval(share, lag, came)` is 0.5 s with the encoder
    busy `share` of it, every window back after `lag` s, `came` windows offered and 30 done; it
    returns the stride decided."""
    now, load = [0.0], [EncoderLoad(0.0, 0, 0)]
    control.update(0.0, 0, 0, load[0])

    def interval(share: float, lag: float, came: int = 30) -> int:
        control.add([lag] * 10)
        now[0] += 0.5
        busy, offered, finished, *_ = load[0]
        load[0] = EncoderLoad(busy + share * 0.5, offered + came, finished + 30)
        control.update(now[0], 0, 0, load[0])
        return control.stride

    return interval


def test_a_narrower_stride_is_taken_while_its_demand_and_lag_would_stay_in_bounds():
    """One step narrower, from s to s - 1, the demand and the lag grow by at most s / (s - 1):
    while both would stay in bounds there (a demand under NARROW, the lag under target) the stride
    narrows, even from a demand over ROOM; a lag that would pass the target keeps it."""
    interval = _intervals(StrideControl(1, 6, calm=1))

    assert [interval(1.0, 0.2, came=60), interval(1.0, 0.2, came=40)] == [2, 4]  # demand 2.0, then 1.33
    assert interval(0.6, 0.03) == 3  # 0.6 x 4/3 = 0.8, 30 ms x 4/3 = 40 ms
    assert interval(0.62, 0.04) == 3  # 0.62 x 3/2 = 0.93, but 40 ms x 3/2 = 60 ms: over target there
    assert interval(0.62, 0.03) == 2  # 0.93 and 45 ms
    assert [interval(0.8, 0.03) for _ in range(3)] == [2] * 3  # 0.8 x 2 = 1.6 at stride 1: no room


def test_a_narrower_stride_s_larger_batches_cost_what_the_encoder_s_calls_say():
    """With several windows a call, a narrower stride keeps the calls at one a frame and makes each
    larger: the demand and the lag grow by the part of a call that is not fixed (the encoder's
    call-cost line, the fixed part at most MAX_FIXED). With a window a call (a narrower stride may
    add calls) or no line yet, by s / (s - 1); in between, the fixed part counts in proportion."""

    def decide(windows_per_call: float, call_cost: tuple[float, float] | None, demand: float = 0.7) -> int:
        control = StrideControl(1, 6, calm=1)
        control.stride = 3
        control.update(0.0, 0, 0, EncoderLoad(0.0, 0, 0, 0, call_cost))
        control.add([0.035] * 10)
        done = round(20 * windows_per_call)
        control.update(0.5, 0, 0, EncoderLoad(0.5 * demand, done, done, 20, call_cost))
        return control.stride

    line = (0.002, 0.001)  # 2 ms a call + 1 ms a window: at 2 windows a call half fixed
    assert decide(2, line) == 2  # x 1.25: 0.875 and 44 ms at stride 2
    assert decide(2, None) == 3  # x 3/2: 1.05
    assert decide(1, line) == 3  # a window a call: x 3/2
    assert decide(1.5, line) == 2  # half the fixed part counts: x 1.36, 0.95 and 48 ms
    assert decide(1.5, line, demand=0.75) == 3  # 1.02
    assert decide(2, (0.0, 0.001)) == 3  # no fixed part: x 3/2 again
    # A flat line (a noisy fit) would make the narrower stride free: the fixed part stops at MAX_FIXED
    assert decide(2, (0.004, 0.0), demand=0.85) == 3  # x 1.2 at most: 1.02
    assert decide(2, (0.004, 0.0), demand=0.8) == 2  # 0.96 and 42 ms


def test_a_lag_over_target_from_an_encoder_that_keeps_up_must_last_two_intervals():
    """With a demand under 1 the encoder's queue does not grow: one interval over target plus a
    frame (the machine's noise) does not widen, two in a row do, and the interval after a widening
    (the windows queued at the narrower stride draining) does not count. Over target by less than
    the frame a wider stride would add to each frame's wait, it never widens. Up to OVERLOAD the
    same holds for a demand of 1 or more (its queue grows, but slowly); from OVERLOAD on, a lag
    over target widens at once."""
    interval = _intervals(StrideControl(1, 6))

    assert [interval(0.9, 0.09), interval(0.9, 0.04), interval(0.9, 0.09)] == [1, 1, 1]  # never twice in a row
    assert interval(0.9, 0.09) == 2  # twice: 0.9 / 0.7 = 1.3, one step
    assert interval(0.9, 0.12) == 2  # the interval after the widening: what came before it draining ...
    assert interval(0.9, 0.09) == 2  # ... does not count: this is the first in a row
    assert [interval(0.9, 0.07) for _ in range(4)] == [2] * 4  # over 50 ms but not 50 + 33: a wider stride would not pay
    assert [interval(0.9, 0.09), interval(0.9, 0.09)] == [2, 3]  # over target plus a frame twice: another step
    assert interval(1.0, 0.09, came=33) == 3  # demand 1.1, under OVERLOAD: not at once, though ...
    assert interval(1.0, 0.09, came=33) == 4  # ... right after a widening it counts (not enough): one step
    assert interval(1.0, 0.06, came=39) == 6  # demand 1.3: over 50 ms widens at once, to 4 x 1.3 / 0.7 = 7.4, at most 6


def test_a_narrower_stride_that_does_not_hold_is_undone_at_once_and_trusted_less():
    """In the `calm` intervals after a narrowing, one interval whose lag is the queue's (over target
    plus a frame, the encoder saturated) undoes it, and the next narrowing waits twice as long."""
    control = StrideControl(1, 6)
    control.stride = 3
    interval = _intervals(control)
    assert [interval(0.3, 0.03) for _ in range(3)] == [3, 3, 2]  # calm: one step narrower
    assert interval(0.9, 0.09) == 3  # the first such interval, not the second in a row: back
    assert [interval(0.3, 0.03) for _ in range(6)] == [3] * 5 + [2]  # 6 calm intervals now
    assert [interval(0.5, 0.03) for _ in range(3)] == [2] * 3  # held (no room for stride 1: 0.5 x 2)
    assert interval(0.9, 0.09) == 2  # out of probation, one such interval is noise


def test_a_step_the_encoder_cannot_keep_up_with_widens_as_soon_as_its_calls_show_it():
    """People stepping into an empty view: a demand of OVERLOAD or more since their first windows
    (not since the interval began, quiet until then) widens a quarter into the interval, before
    any window is back over target."""
    control = StrideControl(1, 6)
    control.update(0.0, 0, 0, EncoderLoad(0.0, 0, 0))
    control.update(0.1, 0, 0, EncoderLoad(0.0, 0, 0))  # nobody in view
    assert not control.update(0.133, 0, 0, EncoderLoad(0.0, 6, 0))  # the first windows: nothing known yet
    control.add([0.045])  # in target
    # since 0.1 s: busy 0.06 of 0.067 s, 12 windows offered and 6 done, a demand of 1.8 (since 0: 0.72)
    assert control.update(0.167, 0, 0, EncoderLoad(0.06, 12, 6)) and control.stride == 2


def test_frames_handled_back_to_back_after_a_quiet_interval_are_not_a_step():
    """After a stall, two frames' windows offered a millisecond apart, the first call (3 ms) done:
    offered / done is 2 over 3.5 ms, no measure of the load (a demand of 0.03 over the interval)."""
    control = StrideControl(3, 6)
    control.update(0.0, 0, 0, EncoderLoad(0.0, 0, 0))
    control.update(0.5, 0, 0, EncoderLoad(0.0, 0, 0))  # a quiet interval decided: demand 0
    control.update(0.7, 0, 0, EncoderLoad(0.0, 0, 0))
    control.update(0.701, 1, 0, EncoderLoad(0.0005, 1, 0))  # one person's window ...
    control.update(0.702, 1, 0, EncoderLoad(0.0015, 2, 0))  # ... and the next frame's, behind it
    control.add([0.0025])
    assert not control.update(0.7035, 0, 0, EncoderLoad(0.0035, 2, 1)) and control.stride == 3


def test_an_overload_far_over_target_widens_before_the_interval_is_out():
    """Windows back over target from an encoder that cannot keep up, a quarter into the interval:
    wider now, then no second early step while the widening drains what came before it. From an
    encoder that was already busy (a demand over QUIET) and still keeps up, it waits for the
    interval's end: a busy machine's noise, not a step in the load."""

    control, calm, widest = StrideControl(1, 6), StrideControl(1, 6), StrideControl(1, 1)
    for c in (control, calm, widest):
        c.update(0.0, 0, 0, EncoderLoad(0.0, 0, 0))
    calm.add([0.02] * 5)
    assert not calm.update(0.2, 0, 0, EncoderLoad(0.18, 36, 36))  # saturated (0.9), in target: wait for the interval
    widest.add([0.09] * 30)
    assert not widest.update(0.2, 0, 0, EncoderLoad(0.2, 36, 18)) and widest.lag == 0.0  # nothing to do early
    control.add([0.09] * 30)
    assert not control.update(0.1, 0, 0, EncoderLoad(0.1, 18, 9)) and control.stride == 1  # not 1/4 in yet
    assert control.update(0.2, 0, 0, EncoderLoad(0.2, 36, 18)) and control.stride == 2  # demand 2.0: at most double
    control.add([0.2] * 5)  # the windows queued before it
    assert not control.update(0.5, 0, 0, EncoderLoad(0.5, 80, 60))  # settling: no second early step
    assert not control.update(0.8, 0, 0, EncoderLoad(0.8, 100, 100))  # an interval on: decided, no longer saturated
    assert control.stride == 2 and control.lag == pytest.approx(0.2) and control.demand < 0.85

    for last, early in ((0.8, False), (0.5, False), (0.3, True)):  # the last interval's demand
        busy = StrideControl(1, 6)
        busy.update(0.0, 0, 0, EncoderLoad(0.0, 0, 0))
        busy.add([0.03] * 10)
        busy.update(0.5, 0, 0, EncoderLoad(0.5 * last, 30, 30))
        busy.add([0.09] * 10)
        assert busy.update(0.7, 0, 0, EncoderLoad(0.5 * last + 0.18, 42, 42)) == early  # demand 0.9 so far
        assert busy.stride == (2 if early else 1)
    # From an encoder that was busy, not even a demand over 1 so far decides early: a quarter
    # interval holds a few calls, one stalled call makes it (the interval's end decides).
    busy = StrideControl(1, 6)
    busy.update(0.0, 0, 0, EncoderLoad(0.0, 0, 0))
    busy.add([0.03] * 10)
    busy.update(0.5, 0, 0, EncoderLoad(0.4, 30, 30))
    busy.add([0.09] * 10)
    assert not busy.update(0.7, 0, 0, EncoderLoad(0.6, 50, 36)) and busy.stride == 1  # demand 3.3 so far


def test_without_the_encoder_s_load_the_lag_alone_decides():
    control, now = StrideControl(1, 4, calm=2), [0.0]
    control.update(0.0, 0, 0)

    def interval(lag: float) -> int:
        control.add([lag] * 10)
        now[0] += 0.5
        control.update(now[0], 0, 0)
        return control.stride

    assert [interval(0.2), interval(0.2)] == [2, 3]  # one step at a time
    assert [interval(0.04) for _ in range(4)] == [3] * 4  # under target but not under half of it
    assert [interval(0.01), interval(0.01)] == [3, 2]


class PacedEncoder:
    """Costs `per_window` seconds a window (what a slow CPU does), switchable to free."""

    f = 6

    def __init__(self, per_window: float):
        self.per_window = per_window

    def encode(self, windows, level="window", mirror=False):
        time.sleep(self.per_window * len(windows))
        return np.zeros((len(windows), 4), np.float32)


def test_the_stride_widens_under_a_slow_encoder_and_narrows_when_it_is_fast_again():
    # The demo's walkers step into view one after another, so the load grows over the first
    # second or two (in 30 runs stride 3 came at 1.2-1.9 s): 3 s slow, then 3.5 s to come back
    # (calm intervals may have doubled under the slow encoder; it took 0.6-1.1 s in those runs).
    encoder, strides = PacedEncoder(0.04), []  # 3 people at stride 1: 90 windows/s, 3.6 s of work a second
    pipeline = Pipeline(DemoSource(), encoder, FakeMatcher(), stride=1, max_stride=4,
                        on_frame=lambda snap: strides.append((time.monotonic(), snap.stats.stride, snap.stats.lag)))
    pipeline.control.interval, pipeline.control.target = 0.1, 0.15  # quick turns, and room for a busy test machine
    start = time.monotonic()
    threading.Timer(3.0, setattr, (encoder, "per_window", 0.0)).start()
    stats = pipeline.run(duration=6.5)
    slow = [s for t, s, _ in strides if t - start < 3.0]
    assert max(slow) >= 3 and max(s for _, s, _ in strides) <= 4 and min(s for _, s, _ in strides) >= 1
    assert max(lag for _, _, lag in strides) > 0.15  # it measured the lag it widened for
    assert stats.stride == pipeline.current_stride == 1 and 1 < stats.stride_mean < 4  # back to the base
    assert stats.windows > 0 and stats.errors == 0
    assert {"stride": 1, "behind": 0}.items() <= summary(stats).items() and summary(stats)["lag_ms"] >= 0


class Live(Source):
    """A recording played in real time as a live sensor (not a file: the pipeline's live rules)."""

    name, is_file = "live", False

    def __init__(self, recording, speed=1.0):
        self.inner = ReplaySource(recording, speed=speed)
        self.layout, self.fps = self.inner.layout, self.inner.fps

    def open(self):
        self.inner.open()

    def read(self):
        return self.inner.read()


def _standing(people: int, seconds: float, fps: float, jitter: float = 0.0) -> tuple[Recording, np.ndarray]:
    """`people` bodies 2 m apart, one more every 0.1 s (each then one frame of every three later
    than the one before), each drifting 3 cm/s along x, timestamps off by up to `jitter` seconds:
    a window's newest frame says whose it is and when."""
    rng = np.random.default_rng(0)
    body = (rng.normal(size=(20, 3)) * 0.3).astype(np.float32)
    times = np.arange(int(seconds * fps)) / fps + rng.uniform(-jitter, jitter, int(seconds * fps))
    tracks = {}
    for p in range(people):
        t = times[round(0.1 * p * fps):]
        tracks[p] = SkeletonSequence((body + np.stack([2.0 * p + 0.03 * t, 0 * t, 0 * t], 1)[:, None]).astype(np.float32),
                                     t, CANONICAL)
    return Recording(RecordingMeta(sensor="test", layout=CANONICAL.name, fps=fps), tracks), body


class WindowsSeen:
    """The encoder, noting each window's person and the 30 fps grid frame of its newest frame."""

    def __init__(self, encoder, body):
        self.encoder, self.f, self.body, self.windows = encoder, encoder.f, body, []

    def encode(self, windows, level="window", mirror=False):
        for w in windows:
            dx = float(w[-1, 0, 0] - self.body[0, 0])
            person = round(dx / 2.0)
            self.windows.append((person, round((dx - 2.0 * person) / 0.03 * 30)))
        return self.encoder.encode(windows, level, mirror)


@pytest.mark.parametrize("fps, jitter", [(30.0, 0.0), (30.0, 0.001), (30.0, 0.004), (60.0, 0.002), (60.0, 0.004)])
def test_people_take_turns_and_none_is_starved(encoder, fps, jitter):
    """Six people stepping into view one frame of every three apart, a live source at stride 3:
    they take turns, at most 2 (6 / 3) completing a window in any frame once all are in, where the
    window rule alone would hand the encoder all six in one frame of every three. Each is moved
    once, earlier where it can, so nobody waits more than the stride for a window or loses one,
    however the source's timestamps jitter and at 60 fps. A file source keeps the recording's
    windows (`test_windows_are_those_of_the_recording`)."""
    seen = WindowsSeen(encoder, (rec := _standing(6, 4.0, fps, jitter))[1])
    stats = Pipeline(Live(rec[0], speed=0), seen, FakeMatcher(), stride=3, queue_size=100_000).run()
    assert stats.dropped == 0 and stats.tracks == 6
    for p in range(6):
        mine = sorted(k for q, k in seen.windows if q == p)
        assert len(mine) >= (4.0 * 30 - 3 * p - 6) // 3 - 1 and np.diff(mine).max() <= 3, (p, mine)
    frames = Counter(k for _, k in seen.windows)
    all_in = max(min(k for q, k in seen.windows if q == p) for p in range(6))  # the last one's first window
    assert max(n for k, n in frames.items() if k > all_in) <= 2, sorted(frames.items())


def _controlled(encoder, stride_at, demand: float, seed_jitter: float = 0.0):
    """The turns under a stride control held by hand: `stride_at(t)` the stride from frame time t,
    `demand` the encoder's demand it reports."""
    seen = WindowsSeen(encoder, (rec := _standing(6, 4.0, 30.0, seed_jitter))[1])
    pipeline = Pipeline(Live(rec[0], speed=0), seen, FakeMatcher(), stride=1, max_stride=6, queue_size=100_000,
                        on_frame=lambda snap: setattr(pipeline.control, "stride", stride_at(snap.time)))
    pipeline.control.update = lambda *args, **kwargs: False
    pipeline.control.demand, pipeline.control.stride = demand, stride_at(0.0)
    pipeline.run()
    return seen


def test_a_saturated_encoder_s_turns_only_put_windows_off():
    """While the stride control finds the encoder saturated (a demand of ROOM or more), taking turns
    never brings a window forward, which would add work it has no time for."""
    seen = _controlled(GaitEncoder(SGELA(SGELAConfig(hidden=HIDDEN)), "body", device="cpu"), lambda t: 3, demand=0.9)
    for p in range(6):
        gaps = np.diff(sorted(k for q, k in seen.windows if q == p))
        assert gaps.min() >= 3 and gaps.max() <= 5, (p, gaps)
    frames = Counter(k for _, k in seen.windows)
    all_in = max(min(k for q, k in seen.windows if q == p) for p in range(6))
    assert max(n for k, n in frames.items() if k > all_in) <= 2, sorted(frames.items())


def test_after_a_spell_at_stride_1_everyone_takes_turns_again():
    """At stride 1 everyone cuts a window every frame; back at stride 3 they are spread again."""
    seen = _controlled(GaitEncoder(SGELA(SGELAConfig(hidden=HIDDEN)), "body", device="cpu"),
                       lambda t: 1 if 50 / 30 <= t < 70 / 30 else 3, demand=0.3)
    frames = Counter(k for _, k in seen.windows)
    assert max(frames[k] for k in range(50, 71)) == 6  # stride 1: everyone, every frame
    assert max(n for k, n in frames.items() if k > 72) <= 2, sorted(frames.items())


def test_a_file_or_no_max_stride_keeps_the_stride_fixed(encoder):
    rec = Recording(RecordingMeta("demo", CANONICAL.name, 30.0), {1: demo_walk("Ada", 3, 1)})
    assert Pipeline(ReplaySource(rec), encoder, FakeMatcher(), stride=2, max_stride=6).control is None
    assert Pipeline(DemoSource(), encoder, FakeMatcher(), stride=2).control is None
    assert Pipeline(DemoSource(), encoder, FakeMatcher(), stride=6, max_stride=6).control is None
    stats = Pipeline(DemoSource(realtime=False, duration=1), encoder, FakeMatcher(), stride=2).run()
    assert (stats.stride, stats.stride_mean, stats.lag, stats.behind) == (2, 2.0, None, None)
    assert "lag_ms" not in summary(stats) and "behind" not in summary(stats)  # not measured: not a false 0


class Bursty(Source):
    """A live source that stalls at `at` seconds for `stall` seconds and then hands over every
    frame of the stall at once (a sensor's driver catching up), then runs on in real time."""

    def __init__(self, inner, at: float, stall: float):
        self.inner, self.at, self.stall = inner, at, stall
        self.name, self.layout, self.fps, self.is_file = "bursty", inner.layout, inner.fps, False
        self.held: list = []
        self.burst_at: float | None = None  # monotonic time the burst was handed over

    def open(self):
        self.inner.open()
        self.start = time.monotonic()

    def close(self):
        self.inner.close()

    def read(self):
        if self.burst_at is None and time.monotonic() - self.start >= self.at:
            end = time.monotonic() + self.stall
            while time.monotonic() < end:  # the frames of the stall pile up in the driver
                self.held.append(self.inner.read())
            self.burst_at = time.monotonic()
        if self.held:
            return self.held.pop(0)
        return self.inner.read()


def test_a_burst_of_frames_is_absorbed_dropped_frames_counted_and_the_lag_recovers(encoder):
    """2 s of frames at once into a small capture queue: the queue stays bounded (what does not
    fit is dropped and counted), and the lag is back under 100 ms within 5 s."""
    source = Bursty(DemoSource(), at=1.0, stall=2.0)
    lags = []
    pipeline = Pipeline(source, encoder, FakeMatcher(), stride=3, max_stride=6, queue_size=16,
                        on_frame=lambda snap: lags.append((time.monotonic(), snap.stats.lag, pipeline.queue_depth)))
    pipeline.control.interval = 0.2
    stats = pipeline.run(duration=9.0)
    assert source.burst_at is not None and len(source.held) == 0
    assert max(depth for _, _, depth in lags) <= 16  # never more than the queue holds
    assert stats.dropped > 0 and summary(stats)["dropped"] == stats.dropped  # the burst did not fit: counted, reported
    after = [lag for t, lag, _ in lags if t > source.burst_at + 5.0 and lag is not None]
    assert after and max(after) < 0.1, after
