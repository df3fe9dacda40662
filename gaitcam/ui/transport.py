"""A replay the view can pause, seek and speed up or slow down while the pipeline runs.

`ReplaySource` plays a recording straight through from a generator; an operator reviewing a
recording wants transport controls. `PlayableReplay` keeps its constructor (the file is read
and checked at start-up) and replaces the playing with an index into the frames, guarded by
one condition variable that the GUI thread changes and the capture thread waits on.

What the stream behind it must never see, it never sees: time always moves forward (after a
seek, playback continues one frame step after the last frame given, as a loop does in
`ReplaySource`), and every seek or loop gives the bodies fresh ids, so the tracker ends the
old tracks instead of stitching a jump into someone's walk. While paused, `read` blocks;
`release` (called before stopping the pipeline) unblocks it for good, since the capture
thread cannot stop while it waits inside `read`.
"""
from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import numpy as np

from gaitcam.recording.recording import Recording
from gaitcam.sensors.base import Body, Frame, SourceError
from gaitcam.sensors.replay import ReplaySource


class PlayableReplay(ReplaySource):
    """`ReplaySource` with `set_paused`, `seek`, `set_speed` and `release` from any thread."""

    def __init__(self, recording: str | Path | Recording, speed: float = 1.0, loop: bool = False) -> None:
        super().__init__(recording, speed, loop)
        self._all = list(self.recording.frames())  # seeking needs random access
        self._times = np.array([f.time for f in self._all])
        self._id_step = max(self.recording.tracks) + 1
        floor = (self.recording.meta.calibration or {}).get("floor")
        self._extras = {} if floor is None else {"floor": tuple(floor)}
        self._cond = threading.Condition()
        self._paused = False
        self._released = False
        self._step = 0  # frames to let through while paused (one after a seek, to show it)
        self._rewind()

    @property
    def length(self) -> float:
        """Seconds from the first frame to the last."""
        return float(self._times[-1] - self._times[0])

    @property
    def position(self) -> float:
        """Seconds from the start to the next frame to play."""
        with self._cond:
            return float(self._times[min(self._next, len(self._all) - 1)] - self._times[0])

    @property
    def paused(self) -> bool:
        return self._paused

    def set_paused(self, paused: bool) -> None:
        with self._cond:
            self._paused = paused
            self._anchor = None  # resume paced from now, not with a burst to catch up
            self._cond.notify_all()

    def seek(self, seconds: float) -> None:
        """Play from `seconds` after the start next (clamped); while paused, show that frame."""
        with self._cond:
            target = self._times[0] + min(max(seconds, 0.0), self.length)
            self._jump(int(np.searchsorted(self._times, target - 1e-9)))
            if self._paused:
                self._step = 1
            self._cond.notify_all()

    def set_speed(self, speed: float) -> None:
        """Times the recording's pace; 0 or inf for as fast as possible."""
        if not speed >= 0:
            raise SourceError(f"replay: speed must be >= 0, got {speed}")
        with self._cond:
            self.speed = speed
            self._anchor = None
            self._cond.notify_all()

    def release(self) -> None:
        """Stop pausing and pacing for good, so a capture thread blocked in `read` can finish."""
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def interrupt(self) -> None:
        self.release()

    def open(self) -> None:
        """Start from the first frame."""
        with self._cond:
            self._rewind()

    def read(self) -> Frame | None:
        with self._cond:
            while True:
                if self._paused and not self._step and not self._released:
                    self._cond.wait()
                    continue
                if self._next >= len(self._all):
                    if not self.loop:
                        return None
                    self._jump(0)
                frame = self._all[self._next]
                if self._last is None:
                    self._shift = 0.0
                elif self._jumped:
                    self._shift = self._last + 1.0 / self.fps - frame.time
                t = frame.time + self._shift
                wait = self._due(t)
                if wait > 0:
                    self._cond.wait(wait)  # a pause, seek or new speed wakes it to start over
                    continue
                self._next += 1
                self._jumped = False
                self._last = t
                self._step = max(self._step - 1, 0)
                index, self._index = self._index, self._index + 1
                ids = self._epoch * self._id_step
                bodies = [Body(None if b.track is None else b.track + ids, b.joints, b.states) for b in frame.bodies]
                return Frame(t, bodies, frame.layout, frame.image, index, {**frame.extras, **self._extras})

    def _due(self, t: float) -> float:
        """Seconds to wait before giving the frame at stream time `t` (0: now)."""
        if self._released or self._paused or not 0 < self.speed < math.inf:
            return 0.0
        now = time.monotonic()
        if self._anchor is None:
            self._anchor = (now, t)
        return self._anchor[0] + (t - self._anchor[1]) / self.speed - now

    def _jump(self, position: int) -> None:
        """Continue from frame `position` with fresh body ids and unbroken time."""
        self._next = position
        self._epoch += 1
        self._jumped = True
        self._anchor = None

    def _rewind(self) -> None:
        self._next = 0
        self._index = 0
        self._epoch = 0
        self._jumped = False
        self._last: float | None = None  # stream time of the last frame given
        self._shift = 0.0  # stream time minus recording time
        self._anchor: tuple[float, float] | None = None  # (wall clock, stream time) pacing starts from
