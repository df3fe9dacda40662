"""The view's replay: plays like ReplaySource, and pauses, seeks and changes speed without ever
sending the stream back in time or stitching a jump into one person's track."""
import threading
import time

import numpy as np
import pytest

from gaitcam.recording.recording import Recording, RecordingMeta
from gaitcam.sensors.base import SourceError
from gaitcam.sensors.demo import DEMO_FLOOR, demo_walk
from gaitcam.sensors.replay import ReplaySource
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.ui.transport import PlayableReplay


def _recording(seconds: float = 4.0) -> Recording:
    meta = RecordingMeta(sensor="demo", layout=CANONICAL.name, fps=30.0, calibration={"floor": list(DEMO_FLOOR)})
    return Recording(meta, {3: demo_walk("Ada", 1, seconds), 8: demo_walk("Ben", 2, seconds)})


def _read_later(source: PlayableReplay) -> tuple[threading.Thread, list]:
    got: list = []
    thread = threading.Thread(target=lambda: got.append(source.read()), daemon=True)
    thread.start()
    return thread, got


def test_plays_exactly_what_replay_source_plays():
    rec = _recording()
    with ReplaySource(rec, speed=0) as plain, PlayableReplay(rec, speed=0) as playable:
        want, got = list(iter(plain.read, None)), list(iter(playable.read, None))
    assert len(got) == len(want) > 0
    for g, w in zip(got, want):
        assert g.time == w.time and g.extras["floor"] == w.extras["floor"]
        assert [b.track for b in g.bodies] == [b.track for b in w.bodies]
        for gb, wb in zip(g.bodies, w.bodies):
            np.testing.assert_array_equal(gb.joints, wb.joints)
    assert playable.length == pytest.approx(want[-1].time - want[0].time)


def test_pause_blocks_reading_until_resumed_and_release_ends_it_for_good():
    source = PlayableReplay(_recording(), speed=0)
    source.open()
    source.set_paused(True)
    thread, got = _read_later(source)
    thread.join(0.3)
    assert thread.is_alive() and not got  # paused: nothing comes
    source.set_paused(False)
    thread.join(2)
    assert got and got[0] is not None

    source.set_paused(True)
    source.release()  # stopping the app must never hang on a paused replay
    thread, got = _read_later(source)
    thread.join(2)
    assert not thread.is_alive() and got[0] is not None


def test_seek_goes_on_in_time_with_fresh_ids():
    rec = _recording()
    frames = list(rec.frames())
    source = PlayableReplay(rec, speed=0)
    source.open()
    before = [source.read() for _ in range(10)]
    source.seek(2.0)
    assert source.position == pytest.approx(2.0, abs=1.5 / rec.meta.fps)
    after = source.read()
    # The frame 2 s into the recording, delivered one frame step after the last one.
    want = next(f for f in frames if f.time - frames[0].time >= 2.0 - 1e-9)
    np.testing.assert_array_equal(after.bodies[0].joints, want.bodies[0].joints)
    assert after.time == pytest.approx(before[-1].time + 1 / rec.meta.fps)
    assert not {b.track for b in after.bodies} & {b.track for f in before for b in f.bodies}
    assert after.index == before[-1].index + 1  # a seek is not a dropped frame
    # Seeking back still moves time forward.
    source.seek(0.0)
    again = source.read()
    assert again.time > after.time
    np.testing.assert_array_equal(again.bodies[0].joints, frames[0].bodies[0].joints)


def test_a_seek_while_paused_shows_one_frame():
    source = PlayableReplay(_recording(), speed=0)
    source.open()
    source.read()
    source.set_paused(True)
    source.seek(1.0)
    shown = source.read()  # the sought frame comes through ...
    assert shown is not None
    thread, got = _read_later(source)
    thread.join(0.3)
    assert thread.is_alive()  # ... and then it stays paused
    source.release()
    thread.join(2)


def test_paces_at_the_chosen_speed():
    source = PlayableReplay(_recording(), speed=4.0)
    source.open()
    first = source.read()
    start = time.monotonic()
    for _ in range(30):  # one second of recording at 4x: about 0.25 s
        last = source.read()
    took = time.monotonic() - start
    expected = (last.time - first.time) / 4.0
    assert expected * 0.9 <= took <= expected + 1.0
    source.set_speed(0)
    start = time.monotonic()
    for _ in range(30):
        source.read()
    assert time.monotonic() - start < expected
    with pytest.raises(SourceError):
        source.set_speed(-1)


def test_loops_with_time_going_on_and_new_ids():
    rec = _recording(seconds=2.0)
    n = len(list(rec.frames()))
    source = PlayableReplay(rec, speed=0, loop=True)
    source.open()
    frames = [source.read() for _ in range(n + 5)]
    times = np.array([f.time for f in frames])
    assert (np.diff(times) > 0).all()
    first_ids = {b.track for f in frames[:n] for b in f.bodies}
    assert not first_ids & {b.track for f in frames[n:] for b in f.bodies}
