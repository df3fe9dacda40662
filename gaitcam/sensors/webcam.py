"""Webcam: any camera OpenCV can open, through MediaPipe pose (several people, `pose2d`).

A plain camera measures no depth: bodies are MediaPipe's metric world landmarks, placed in the
room from where they appear in the image through a guessed field of view (`pose3d.BodyPlacer`
says what that position is worth). A body's id (`Body.track`) is the pose estimator's number
for the person it follows through the image. Each frame carries the camera image and, in
`extras["image_points"]`, every body's landmarks in image pixels.

Costs on 2 CPU cores: about 20-30 ms per person per frame for the landmark model, plus a
detection pass (whole frame and tiles, roughly 12 ms per window) every `detect_every` frames.
"""
from __future__ import annotations

import glob
import sys
import time

import cv2

from gaitcam.sensors.base import Frame, Source, SourceError, SourceLost
from gaitcam.sensors.camera import Intrinsics
from gaitcam.sensors.pose2d import PoseEstimator, unavailable
from gaitcam.sensors.pose3d import BodyPlacer, pose_frame
from gaitcam.skeleton.layouts import MEDIAPIPE_POSE

DEFAULT_FOV = 60.0  # degrees across: a typical webcam (most are 55-78)


def capture_target(source: int | str) -> int | str:
    """What cv2.VideoCapture opens: a camera index ("0" from the command line means camera 0),
    else a device path, file or stream URL as given."""
    if isinstance(source, str) and source.strip().isdigit():
        return int(source)
    return source


def status() -> str | None:
    """None if MediaPipe is installed and (on Linux, where cameras are /dev/video*) a camera exists."""
    missing = unavailable()
    if missing:
        return f"webcam: {missing}"
    if sys.platform.startswith("linux") and not glob.glob("/dev/video*"):
        return "webcam: no camera on this machine (/dev/video*); play a file with --sensor video --source PATH"
    return None


class WebcamSource(Source):
    """A live camera by index, device path or stream URL (`--source`, default camera 0).

    `horizontal_fov` (degrees) stands in for the unknown focal length; `tiles` and
    `detect_every` are `pose2d.PoseEstimator`'s (more tiles find smaller people, slower).
    """

    name = "webcam"
    layout = MEDIAPIPE_POSE

    def __init__(
        self, source: int | str = 0, *, horizontal_fov: float = DEFAULT_FOV, tiles: int = 4, detect_every: int = 10,
    ) -> None:
        if not 0 < horizontal_fov < 180:
            raise SourceError(f"{self.name}: horizontal_fov must be in (0, 180) degrees, got {horizontal_fov}")
        self.source = capture_target(source)
        self.horizontal_fov = horizontal_fov
        self.tiles, self.detect_every = tiles, detect_every
        self.fps = 30.0
        self._capture: cv2.VideoCapture | None = None
        self._estimator: PoseEstimator | None = None
        self._placer = BodyPlacer()
        self._index = 0
        self._clock_start: float | None = None

    def open(self) -> None:
        if self._estimator is None:  # kept through close and reopen: person numbers stay unique
            self._estimator = PoseEstimator(self.tiles, self.detect_every)
        capture = cv2.VideoCapture(self.source)
        if not capture.isOpened():
            raise SourceError(self._cannot_open())
        self.fps = capture.get(cv2.CAP_PROP_FPS) or self.fps  # some cameras report 0
        self._capture = capture
        if self._clock_start is None:  # a reopened camera carries on the same clock
            self._clock_start = time.monotonic()

    def read(self) -> Frame | None:
        if self._capture is None or self._estimator is None:
            raise SourceError(f"{self.name}: read before open")
        ok, image = self._capture.read()
        if not ok:
            return self._ended()
        t = self._time()
        intrinsics = Intrinsics.from_fov(image.shape[1], image.shape[0], self.horizontal_fov)
        poses = self._estimator.process(image)
        frame = pose_frame(poses, lambda pose: self._placer.place(pose, intrinsics), t, self._index, image)
        self._placer.keep_only({pose.person for pose in poses})
        self._index += 1
        return frame

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        if self._estimator is not None:
            self._estimator.reset()  # whoever comes after a reopen is found afresh

    def _cannot_open(self) -> str:
        return (f"webcam: cannot open camera {self.source!r} (no such camera, or in use by another program); "
                "pick another with --source INDEX|DEVICE|URL")

    def _ended(self) -> Frame | None:
        raise SourceLost(f"webcam: camera {self.source!r} stopped delivering frames")

    def _time(self) -> float:
        """Seconds since the camera was first opened, read when the frame arrived."""
        assert self._clock_start is not None
        return time.monotonic() - self._clock_start

