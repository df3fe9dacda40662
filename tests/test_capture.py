"""Capture thread: every frame of a file source then its end, the oldest dropped (and counted)
when nobody reads, a lost source reopened with backoff and counted, start-up errors raised."""
import threading
import time

import pytest

from gaitcam.sensors.base import Frame, Source, SourceError, SourceLost
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.stream.capture import Capture


class ScriptedSource(Source):
    """Frames 0..n-1 (None after, or forever if n is None); scripted failures.

    `lose_at`: read indices that raise SourceLost; `refuse`: how many reopens fail first."""

    name = "scripted"

    def __init__(self, n=None, lose_at=(), refuse=0, fail_first_open=False):
        self.layout, self.fps = CANONICAL, 30.0
        self.n, self.lose_at, self.refuse, self.fail_first_open = n, set(lose_at), refuse, fail_first_open
        self.index = 0
        self.opens = self.closes = 0

    def open(self):
        self.opens += 1
        if self.fail_first_open and self.opens == 1:
            raise SourceError("scripted: no device")
        if self.opens > 1 and self.refuse:
            self.refuse -= 1
            raise SourceError("scripted: still gone")

    def read(self):
        if self.index in self.lose_at:
            self.lose_at.discard(self.index)
            raise SourceLost("scripted: unplugged")
        if self.n is not None and self.index >= self.n:
            return None
        self.index += 1
        return Frame(self.index / 30, [], self.layout, index=self.index - 1)

    def close(self):
        self.closes += 1


def _drain(capture, limit=5.0):
    frames, deadline = [], time.monotonic() + limit
    while not capture.done and time.monotonic() < deadline:
        frame = capture.get(timeout=0.05)
        if frame is not None:
            frames.append(frame)
    return frames


def test_file_source_every_frame_then_its_end():
    source = ScriptedSource(n=50)
    capture = Capture(source, queue_size=64)
    capture.start()
    frames = _drain(capture)
    assert [f.index for f in frames] == list(range(50))
    assert capture.stats.ended and capture.stats.frames == 50 and capture.stats.dropped == 0
    assert capture.done and capture.get(timeout=0.01) is None
    capture.stop()
    assert source.closes == 1


def test_a_full_queue_drops_the_oldest():
    source = ScriptedSource(n=100)
    capture = Capture(source, queue_size=5)
    capture.start()
    deadline = time.monotonic() + 5
    while not capture.stats.ended and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [f.index for f in _drain(capture)] == [95, 96, 97, 98, 99]  # the newest kept
    assert capture.stats.dropped == 95 and capture.stats.frames == 100


def test_a_lost_source_is_reopened_with_backoff_and_counted():
    source = ScriptedSource(n=40, lose_at=[10, 25], refuse=2)
    capture = Capture(source, backoff=(0.01, 0.02))
    capture.start()
    frames = _drain(capture)
    assert [f.index for f in frames] == list(range(40))  # the loop went on
    stats = capture.stats
    assert stats.source_restarts == 2 and stats.errors == 2 + 2  # two losses, two refused reopens
    assert source.opens == 1 + 2 + 2 and stats.ended


def test_losses_and_returns_are_told_to_the_listener():
    said = []
    capture = Capture(ScriptedSource(n=30, lose_at=[10], refuse=1), backoff=(0.01, 0.02),
                      on_status=lambda status, detail: said.append((status, detail)))
    capture.start()
    assert len(_drain(capture)) == 30
    assert said == [("lost", "scripted: unplugged"), ("restarted", "scripted is back")]


def test_start_up_errors_raise_in_the_caller():
    capture = Capture(ScriptedSource(fail_first_open=True))
    with pytest.raises(SourceError, match="no device"):
        capture.start()


def test_stop_ends_a_live_source_and_closes_it():
    source = ScriptedSource()
    capture = Capture(source, queue_size=4)
    capture.start()
    assert capture.get(timeout=1.0) is not None
    stopper = threading.Timer(0.05, capture.stop)
    stopper.start()
    _drain(capture)
    stopper.join()
    assert capture.done and not capture.stats.ended and source.closes == 1


def test_stop_interrupts_the_backoff():
    source = ScriptedSource(lose_at=[0], refuse=1000)
    capture = Capture(source, backoff=(10.0, 10.0))
    capture.start()
    time.sleep(0.05)
    start = time.monotonic()
    capture.stop()
    assert time.monotonic() - start < 1.0 and capture.done


def test_a_file_source_waits_for_room_instead_of_dropping():
    source = ScriptedSource(n=30)
    source.is_file = True
    capture = Capture(source, queue_size=4)
    capture.start()
    time.sleep(0.05)  # nobody reads: the source waits
    assert capture.stats.frames == 4 and not capture.stats.ended
    assert [f.index for f in _drain(capture)] == list(range(30)) and capture.stats.dropped == 0


def test_a_file_that_fails_to_read_ends_the_capture():
    class Broken(ScriptedSource):
        is_file = True

        def read(self):
            if self.index == 5:
                raise OSError("disk gone")
            return super().read()

    source = Broken(n=30)
    capture = Capture(source)
    capture.start()
    assert len(_drain(capture)) == 5 and capture.stats.errors == 1 and source.opens == 1


def test_wake_ends_a_wait_for_frames_at_once():
    """Encoded windows must not wait for the next frame: `wake` returns a waiting `get`, once."""
    capture = Capture(ScriptedSource(n=0), queue_size=4)  # never started: no frame ever comes
    threading.Timer(0.1, capture.wake).start()
    start = time.monotonic()
    assert capture.get(timeout=30.0) is None
    assert time.monotonic() - start < 10.0  # woken, not timed out
    start = time.monotonic()
    assert capture.get(timeout=0.2) is None and time.monotonic() - start >= 0.19  # the wake was used up
