"""Replay: a recording's frames in order at its pace (or flat out), its layout, rate and floor;
an end like a file; loops that never reuse ids or go back in time; files read by any format."""
import threading
import time

import numpy as np
import pytest

from gaitcam.errors import GaitcamError
from gaitcam.recording.formats import write_recording
from gaitcam.recording.recording import Recording, RecordingMeta
from gaitcam.sensors.base import source_class
from gaitcam.sensors.demo import DEMO_FLOOR, demo_walk
from gaitcam.sensors.replay import ReplaySource
from gaitcam.skeleton.layouts import CANONICAL, KINECT_V2
from gaitcam.skeleton.sequence import SkeletonSequence


def _recording(seconds=4.0, calibration=None) -> Recording:
    a, b = demo_walk("Ada", 1, seconds), demo_walk("Ben", 2, seconds)
    meta = RecordingMeta(sensor="demo", layout=CANONICAL.name, fps=30.0, calibration=calibration)
    return Recording(meta, {3: a, 8: b})


def _read_all(source):
    with source:
        return list(iter(source.read, None))


def test_plays_every_frame_in_order_then_ends():
    rec = _recording(calibration={"floor": list(DEMO_FLOOR)})
    source = ReplaySource(rec, speed=0)
    assert source_class("replay") is ReplaySource and source.is_file
    assert source.layout == CANONICAL and source.fps == 30.0
    frames, expected = _read_all(source), list(rec.frames())
    assert len(frames) == len(expected) > 0
    for got, want in zip(frames, expected):
        assert got.time == want.time and [b.track for b in got.bodies] == [b.track for b in want.bodies]
        for g, w in zip(got.bodies, want.bodies):
            np.testing.assert_array_equal(g.joints, w.joints)
            np.testing.assert_array_equal(g.states, w.states)
        assert got.extras["floor"] == DEMO_FLOOR
    assert [f.index for f in frames] == list(range(len(frames)))


def test_paced_at_the_recorded_speed():
    seq = SkeletonSequence(np.zeros((16, 20, 3)), np.arange(16) / 30, CANONICAL)
    rec = Recording(RecordingMeta("demo", CANONICAL.name, 30.0), {0: seq})
    for speed, wall in ((1.0, 0.5), (2.5, 0.2)):
        start = time.monotonic()
        assert len(_read_all(ReplaySource(rec, speed=speed))) == 16
        assert wall - 0.01 <= time.monotonic() - start < wall + 0.25
    start = time.monotonic()
    _read_all(ReplaySource(rec, speed=float("inf")))
    assert time.monotonic() - start < 0.1


def test_loops_with_fresh_ids_and_later_times():
    rec = _recording(seconds=2.0)
    n = len(list(rec.frames()))
    source = ReplaySource(rec, speed=0, loop=True)
    with source:
        frames = [source.read() for _ in range(3 * n)]
    times = np.array([f.time for f in frames])
    assert (np.diff(times) > 0).all()
    assert times[n] - times[n - 1] == pytest.approx(1 / 30)
    ids = [{b.track for f in frames[k * n:(k + 1) * n] for b in f.bodies} for k in range(3)]
    assert ids[0] == {3, 8} and ids[1] == {12, 17} and ids[2] == {21, 26}
    np.testing.assert_array_equal(frames[n].bodies[0].joints, frames[0].bodies[0].joints)


def test_reads_a_file_in_its_own_layout(tmp_path):
    joints = np.random.default_rng(0).normal(size=(10, KINECT_V2.n_joints, 3)).astype(np.float32)
    seq = SkeletonSequence(joints, np.arange(10) / 15, KINECT_V2)
    path = tmp_path / "walk.gaitrec"
    write_recording(Recording(RecordingMeta("kinect", KINECT_V2.name, 15.0), {1: seq}), path)
    source = ReplaySource(path, speed=0)
    frames = _read_all(source)
    assert source.layout == KINECT_V2 and source.fps == 15.0 and len(frames) == 10
    np.testing.assert_allclose(frames[4].bodies[0].joints, joints[4])


def test_bad_input_is_a_one_line_error(tmp_path):
    with pytest.raises(GaitcamError, match="speed"):
        ReplaySource(_recording(), speed=-1)
    empty = Recording(RecordingMeta("demo", CANONICAL.name, 30.0), {})
    with pytest.raises(GaitcamError, match="holds no skeletons"):
        ReplaySource(empty)
    with pytest.raises(GaitcamError, match="missing.gaitrec"):
        ReplaySource(tmp_path / "missing.gaitrec")


def test_interrupt_ends_a_long_pacing_wait():
    seq = SkeletonSequence(np.zeros((2, 20, 3)), [0.0, 60.0], CANONICAL)  # a minute of nobody in view
    source = ReplaySource(Recording(RecordingMeta("demo", CANONICAL.name, 30.0), {1: seq}))
    source.open()
    assert source.read() is not None
    threading.Timer(0.2, source.interrupt).start()
    started = time.monotonic()
    assert source.read() is None and time.monotonic() - started < 5
