"""Video: a video file through the webcam's MediaPipe path, as a file source that ends.

Timestamps are the file's own (CAP_PROP_POS_MSEC), stepping 1 / frame rate where the
container gives none, so results do not depend on how fast this machine decodes. Frames are
paced at the file's rate times `speed` like a camera (0 or inf: as fast as possible, for batch
runs); when pose estimation is slower than that, no frame is skipped, the run just takes longer.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import cv2

from gaitcam.sensors.base import Frame, SourceError
from gaitcam.sensors.pose2d import unavailable
from gaitcam.sensors.webcam import DEFAULT_FOV, WebcamSource


def status() -> str | None:
    """None if MediaPipe is installed (OpenCV, a requirement, decodes the files)."""
    missing = unavailable()
    return f"video: {missing}" if missing else None


class VideoSource(WebcamSource):
    """A video file (`--source PATH`); `read` returns None at its end."""

    name = "video"
    is_file = True

    def __init__(
        self, source: str | Path, *, speed: float = 1.0, horizontal_fov: float = DEFAULT_FOV, tiles: int = 4,
        detect_every: int = 10,
    ) -> None:
        if not speed >= 0:
            raise SourceError(f"video: speed must be >= 0, got {speed}")
        super().__init__(str(source), horizontal_fov=horizontal_fov, tiles=tiles, detect_every=detect_every)
        self.path = Path(source)
        self.speed = speed
        self.fps = _file_fps(self.path) or self.fps  # known before `open`: the stream is set up by it
        self._last_time = 0.0
        self._paced_from: tuple[float, float] | None = None  # (monotonic time, video time) of the first frame

    def open(self) -> None:
        """Open the file and start from its first frame."""
        if not self.path.is_file():
            raise SourceError(f"video: no such file {self.path}")
        super().open()
        self._index = 0
        self._last_time = -1.0 / self.fps  # so a file without a clock starts at 0
        self._paced_from = None

    def read(self) -> Frame | None:
        frame = super().read()
        if frame is not None and 0 < self.speed < math.inf:
            now = time.monotonic()
            if self._paced_from is None:
                self._paced_from = (now, frame.time)
            wait = self._paced_from[0] + (frame.time - self._paced_from[1]) / self.speed - now
            if wait > 0:
                time.sleep(wait)
        return frame

    def _cannot_open(self) -> str:
        return f"video: OpenCV cannot decode {self.path} (not a video, or a codec this OpenCV build lacks)"

    def _ended(self) -> Frame | None:
        return None

    def _time(self) -> float:
        """The frame's time in the file; one frame step on where the container's clock does not advance."""
        assert self._capture is not None
        t = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
        if not t > self._last_time:
            t = self._last_time + 1.0 / self.fps
        self._last_time = t
        return t


def _file_fps(path: Path) -> float | None:
    """The frame rate a video file declares; None if it cannot be read (`open` says why)."""
    if not path.is_file():
        return None
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    return fps or None
