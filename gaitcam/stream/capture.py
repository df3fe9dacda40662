"""The capture thread: owns the source, reads it at its own pace, never waits for anyone.

Frames go into a small bounded queue. When the processing loop falls behind, a live source's
oldest frame is dropped (and counted), because a live view wants the newest; a file source
waits for room instead, as nothing is gained by dropping what can be read later.

A live source that vanishes mid-run (`SourceLost`: unplugged, driver reset; or any other
failure of its backend) is closed and reopened with growing pauses until it is back, and the
app keeps running meanwhile. A file source that fails to read ends instead: reopening would
replay it from the start into the same failure. Errors opening the source at start-up are
the user's to fix and raise from `start`, in the caller's thread.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gaitcam.sensors.base import Frame, Source, SourceError, SourceLost

log = logging.getLogger(__name__)


@dataclass
class CaptureStats:
    frames: int = 0  # read from the source
    dropped: int = 0  # thrown away unprocessed (queue full)
    errors: int = 0  # read failures and failed reopen attempts
    source_restarts: int = 0  # successful reopens after the source was lost
    ended: bool = False  # a file source reached its end


class Capture:
    """`start`, then `get` frames until `done`; `stop` from any thread."""

    def __init__(self, source: Source, queue_size: int = 64, backoff: tuple[float, float] = (0.1, 5.0),
                 on_status: Callable[[str, str], None] | None = None) -> None:
        """`on_status(status, detail)`, from the capture thread: "lost" when a live source fails,
        "restarted" when it is back."""
        self.source = source
        self.on_status = on_status
        self.stats = CaptureStats()
        self.backoff = backoff  # first and longest pause between reopen attempts, seconds
        self._frames: deque[tuple[Frame, float]] = deque()  # with when each was read (monotonic)
        self._size = queue_size
        self._ready = threading.Condition()
        self._stop = threading.Event()
        self._finished = False
        self._woken = False
        self._thread = threading.Thread(target=self._run, name="gaitcam-capture", daemon=True)

    def start(self) -> None:
        self.source.open()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.source.interrupt()
        if self._thread.is_alive():
            self._thread.join()

    @property
    def depth(self) -> int:
        """Frames queued now, waiting for the processing loop."""
        return len(self._frames)

    @property
    def done(self) -> bool:
        """The source ended or the thread stopped, and every queued frame has been taken."""
        with self._ready:
            return self._finished and not self._frames

    def wake(self) -> None:
        """Make a waiting `get` return now, with None if no frame is queued: the consumer has
        other work ready (encoded windows), which must not wait for the next frame."""
        with self._ready:
            self._woken = True
            self._ready.notify_all()

    def get(self, timeout: float) -> Frame | None:
        """The oldest queued frame, or None if none came within `timeout` seconds or `wake`."""
        stamped = self.get_stamped(timeout)
        return None if stamped is None else stamped[0]

    def get_stamped(self, timeout: float) -> tuple[Frame, float] | None:
        """`get`, with the monotonic time the frame was read: where its latency starts."""
        with self._ready:
            self._ready.wait_for(lambda: self._frames or self._finished or self._woken, timeout)
            self._woken = False
            if not self._frames:
                return None
            self._ready.notify_all()  # room for a file source waiting to put
            return self._frames.popleft()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    frame = self.source.read()
                except Exception as e:
                    self.stats.errors += 1
                    if self.source.is_file and not isinstance(e, SourceLost):
                        # Reopening would replay the file from its start into the same failure.
                        log.exception("%s: reading failed; stopping", self.source.name)
                        return
                    # A live backend's own failure gets the same remedy as a lost device.
                    log.warning("%s: source lost (%s); reopening", self.source.name, e)
                    self._status("lost", str(e))
                    if self._reopen():
                        self._status("restarted", f"{self.source.name} is back")
                    continue
                if frame is None:
                    self.stats.ended = True
                    return
                self._put(frame)
        finally:
            self.source.close()
            with self._ready:
                self._finished = True
                self._ready.notify_all()

    def _put(self, frame: Frame) -> None:
        with self._ready:
            if self.source.is_file:
                while len(self._frames) >= self._size and not self._stop.is_set():
                    self._ready.wait(0.05)
            if len(self._frames) >= self._size:
                self._frames.popleft()
                self.stats.dropped += 1
            self._frames.append((frame, time.monotonic()))
            self.stats.frames += 1
            self._ready.notify()

    def _status(self, status: str, detail: str) -> None:
        if self.on_status is not None:
            try:
                self.on_status(status, detail)
            except Exception:  # a listener's failure must not end the capture
                log.exception("%s: status listener failed", self.source.name)

    def _reopen(self) -> bool:
        """Close and reopen the source, pausing longer after each failure, until it opens (True)
        or stop (False)."""
        pause = self.backoff[0]
        while True:
            try:
                self.source.close()
            except Exception as e:
                log.debug("%s: close failed (%s)", self.source.name, e)
            if self._stop.wait(pause):
                return False
            try:
                self.source.open()
            except SourceError as e:
                self.stats.errors += 1
                pause = min(2 * pause, self.backoff[1])
                log.warning("%s: reopen failed (%s); next try in %.1f s", self.source.name, e, pause)
                continue
            self.stats.source_restarts += 1
            log.info("%s: source back", self.source.name)
            return True
