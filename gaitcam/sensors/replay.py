"""Replay: a recording played back as if it were a live sensor.

Frames come at the recording's own pace (scaled by `speed`; 0 or inf for as fast as
possible) in its own layout, with the floor plane it was recorded with, so the whole live
pipeline can be tried, tested and debugged without a device. Like a file it ends, unless it
loops; each loop gets fresh body ids and later timestamps, so nothing downstream mistakes the
restart for the same people carrying on.
"""
from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from gaitcam.recording.formats import read_recording
from gaitcam.recording.recording import Recording
from gaitcam.sensors.base import Body, Frame, Source, SourceError


class ReplaySource(Source):
    """Plays `recording` (a Recording, or a file in any supported format, read at once so a bad
    file fails at start-up) at `speed` times its pace; `loop` starts it over at the end."""

    name = "replay"
    is_file = True

    def __init__(self, recording: str | Path | Recording, speed: float = 1.0, loop: bool = False) -> None:
        if not speed >= 0:
            raise SourceError(f"replay: speed must be >= 0, got {speed}")
        self.recording = recording if isinstance(recording, Recording) else read_recording(recording)
        if not any(len(seq) for seq in self.recording.tracks.values()):
            raise SourceError(f"replay: {self.recording.path or 'recording'} holds no skeletons")
        self.layout = self.recording.layout
        self.fps = float(self.recording.meta.fps)
        self.speed = speed
        self.loop = loop
        self._frames: Iterator[Frame] | None = None
        self._wake = threading.Event()  # set by interrupt(): pacing waits end at once

    def open(self) -> None:
        """Start from the first frame."""
        self._wake.clear()
        self._frames = self._play(self.recording)

    def interrupt(self) -> None:
        self._wake.set()

    def read(self) -> Frame | None:
        if self._frames is None:
            raise SourceError("replay: read before open")
        return next(self._frames, None)

    def close(self) -> None:
        self._frames = None

    def _play(self, recording: Recording) -> Iterator[Frame]:
        """The recording's frames, paced, with times and ids shifted on each loop."""
        meta = recording.meta
        floor = (meta.calibration or {}).get("floor")
        extras = {} if floor is None else {"floor": tuple(floor)}
        id_step = max(recording.tracks) + 1
        start = min(float(seq.timestamps[0]) for seq in recording.tracks.values() if len(seq))
        paced = 0 < self.speed < math.inf
        offset, index, loop = 0.0, 0, 0
        wall = time.monotonic()
        while True:
            for frame in recording.frames():
                t = frame.time + offset
                if paced:
                    wait = wall + (t - start) / self.speed - time.monotonic()
                    if wait > 0 and self._wake.wait(wait):
                        return  # interrupted: the run is stopping (a recording's pauses can be long)
                bodies = [Body(None if b.track is None else b.track + loop * id_step, b.joints, b.states)
                          for b in frame.bodies]
                yield Frame(t, bodies, frame.layout, frame.image, index, {**frame.extras, **extras})
                index += 1
            if not self.loop:
                return
            loop += 1
            offset = t + 1.0 / self.fps - start  # the next loop follows one frame step later
