"""The view's hook on the pipeline thread: recordings, live enrolment captures, image points.

The pipeline hands every frame, with app track ids and in the source's own layout, to its
`recorder`. The view puts a `FrameTap` there (passing frames on to whatever recorder the
command line asked for), which gives it three things without touching the pipeline:

- the operator's recording: every frame into a `RecordingWriter`;
- a live enrolment: one track's frames into their own recording, to enrol from afterwards;
- where each track is in the camera image (`extras["image_points"]` of MediaPipe-based
  sources), keyed by app track id, for drawing skeletons over the image.

Writers are swapped under a lock by the GUI thread and written on the pipeline thread; they
are closed (flush and fsync) by the GUI thread after being detached, so the pipeline never
waits for a disk. A recording that fails to write is stopped and reported, not raised: a
full disk must not stop identification.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gaitcam.errors import GaitcamError
from gaitcam.recording.native import RecordingWriter
from gaitcam.sensors.base import Frame
from gaitcam.skeleton.layouts import JointLayout
from gaitcam.stream.pipeline import FrameRecorder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImagePoints:
    """Each track's joints in image pixels (x right, y down) [J, 2], in `layout`, at `time`."""

    time: float
    layout: JointLayout
    points: dict[int, np.ndarray]


def image_points(frame: Frame) -> ImagePoints | None:
    """The frame's per-body image points keyed by track, if the source gave them.

    The sources give one row per body they reported; the pipeline only ever drops bodies
    (unusable ones) before recording, so equal counts mean the rows still line up. When a
    body was dropped they cannot be matched up, and that frame gets no overlay.
    """
    points = frame.extras.get("image_points")
    if points is None or len(points) != len(frame.bodies):
        return None
    return ImagePoints(frame.time, frame.layout, {b.track: np.asarray(p) for b, p in zip(frame.bodies, points)})


class FrameTap:
    """The pipeline's `recorder`, widened for the view (see the module docstring)."""

    def __init__(self, downstream: FrameRecorder | None, on_error: Callable[[str], None]) -> None:
        self.downstream = downstream
        self.on_error = on_error  # called on the pipeline thread: must be thread-safe
        self.points: ImagePoints | None = None  # the latest frame's; read on the pipeline thread
        self.track_frames = 0  # frames written to the live enrolment capture
        self._lock = threading.Lock()
        self._recording: RecordingWriter | None = None
        self._capture: tuple[int, RecordingWriter] | None = None

    def write(self, frame: Frame) -> None:
        if self.downstream is not None:
            self.downstream.write(frame)
        self.points = image_points(frame)
        with self._lock:
            if self._recording is not None and not self._write(self._recording, frame):
                self._recording = None
            if self._capture is not None:
                track, writer = self._capture
                bodies = [b for b in frame.bodies if b.track == track]
                if bodies:
                    if self._write(writer, dataclasses.replace(frame, bodies=bodies)):
                        self.track_frames += 1
                    else:
                        self._capture = None

    def _write(self, writer: RecordingWriter, frame: Frame) -> bool:
        try:
            writer.write(frame)
            return True
        except GaitcamError as e:
            self.on_error(f"recording stopped: {e}")
            try:
                writer.close()
            except GaitcamError as close_error:
                log.warning("%s", close_error)
            return False

    # -- GUI thread ----------------------------------------------------------------------

    @property
    def recording(self) -> RecordingWriter | None:
        return self._recording

    @property
    def capturing(self) -> int | None:
        """The track being captured for enrolment, if any."""
        capture = self._capture
        return None if capture is None else capture[0]

    def start_recording(self, writer: RecordingWriter) -> None:
        with self._lock:
            self._recording = writer

    def stop_recording(self) -> RecordingWriter | None:
        """Detach the recording and close it; returns it (None if it had already failed)."""
        with self._lock:
            writer, self._recording = self._recording, None
        if writer is not None:
            writer.close()
        return writer

    def start_capture(self, track: int, writer: RecordingWriter) -> None:
        with self._lock:
            self._capture = (track, writer)
            self.track_frames = 0

    def stop_capture(self) -> RecordingWriter | None:
        """Detach the enrolment capture and close it; returns it (None if it had failed)."""
        with self._lock:
            capture, self._capture = self._capture, None
        if capture is None:
            return None
        capture[1].close()
        return capture[1]
