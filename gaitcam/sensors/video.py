"""Video: a video file through the webcam's MediaPipe path, as a file source that ends.

Timestamps are the file's own (CAP_PROP_POS_MSEC), stepping 1 / frame rate where the
container gives none, so results do not depend on how fast this machine decodes. Frames are
paced at the file's rate times `speed` like a camera (0 or inf: as fast as possible, for batch
runs); when pose estimation is slower than that, no frame is skipped, the run just takes longer.

Recorded scenes (surveillance, a phone filming a square) show people smaller than a webcam
does, so a video looks harder than the webcam by default: a finer grid of tiles, lower
detector and presence thresholds, a second look beside everyone found, and people found again
after a short loss keeping their number (`pose2d.PoseEstimator`); the defaults below were
chosen on vtest.avi (docs/sensors.md has the figures). Distances scale with the focal length:
give the camera's (`focal_length`, pixels) or its field of view when known; with the default
guess of 60 degrees across, every distance comes out tan(FOV / 2) / tan(30 degrees) times the
true one (0.56 on vtest.avi, whose camera sees 36 degrees across: people 17-34 m away show at
8-19 m).
"""
from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import cv2

from gaitcam.sensors.base import Frame, SourceError
from gaitcam.sensors.pose2d import PoseEstimator, unavailable
from gaitcam.sensors.pose3d import BodyPlacer
from gaitcam.sensors.webcam import DEFAULT_FOV, WebcamSource

# Person finding for recorded scenes, where people are often small (vtest.avi: 60-150 px tall in
# 768x576); measured on vtest.avi, see docs/sensors.md.
TILES = 6
DETECT_EVERY = 10
MIN_DETECTION = 0.3
MIN_PRESENCE = 0.3
SECOND_LOOK = True
RELINK = 15
MAX_WALK = 2.5  # metres a second: no walker's distance from the camera changes faster


def status() -> str | None:
    """None if MediaPipe is installed (OpenCV, a requirement, decodes the files)."""
    missing = unavailable()
    return f"video: {missing}" if missing else None


class VideoSource(WebcamSource):
    """A video file (`--source PATH`); `read` returns None at its end.

    `focal_length` (pixels, square pixels and a centred principal point assumed) overrides
    `horizontal_fov`; `tiles`, `detect_every`, `min_detection`, `min_presence`, `second_look`
    and `relink` are `pose2d.PoseEstimator`'s. Each person's distance moves at most `MAX_WALK`
    metres a second (`pose3d.BodyPlacer`), so reading noise never looks like a jump.
    """

    name = "video"
    is_file = True

    def __init__(
        self, source: str | Path, *, speed: float = 1.0, horizontal_fov: float = DEFAULT_FOV,
        focal_length: float | None = None, tiles: int | Sequence[int] = TILES, detect_every: int = DETECT_EVERY,
        min_detection: float = MIN_DETECTION, min_presence: float = MIN_PRESENCE, second_look: bool = SECOND_LOOK,
        relink: int = RELINK,
    ) -> None:
        if not speed >= 0:
            raise SourceError(f"video: speed must be >= 0, got {speed}")
        if focal_length is not None and not focal_length > 0:
            raise SourceError(f"video: focal_length must be > 0 pixels, got {focal_length}")
        super().__init__(str(source), horizontal_fov=horizontal_fov, tiles=tiles, detect_every=detect_every)
        self.path = Path(source)
        self.speed = speed
        self.focal_length = focal_length
        self.min_detection, self.min_presence = min_detection, min_presence
        self.second_look, self.relink = second_look, relink
        self.fps = _file_fps(self.path) or self.fps  # known before `open`: the stream is set up by it
        self._placer = self._video_placer()
        self._last_time = 0.0
        self._paced_from: tuple[float, float] | None = None  # (monotonic time, video time) of the first frame

    def open(self) -> None:
        """Open the file and start from its first frame."""
        if not self.path.is_file():
            raise SourceError(f"video: no such file {self.path}")
        if self._estimator is None:  # the webcam's, with the video's detection settings
            self._estimator = PoseEstimator(self.tiles, self.detect_every, min_detection=self.min_detection,
                                            min_presence=self.min_presence, second_look=self.second_look,
                                            relink=self.relink)
        super().open()
        self._placer = self._video_placer()  # the file's frame rate is known now
        if self.focal_length is not None:  # the camera's known focal length, as the field of view it gives
            assert self._capture is not None
            width = self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)
            self.horizontal_fov = math.degrees(2 * math.atan(width / 2 / self.focal_length))
        self._index = 0
        self._last_time = -1.0 / self.fps  # so a file without a clock starts at 0
        self._paced_from = None

    def _video_placer(self) -> BodyPlacer:
        """Distances that move no faster than people walk, remembered while the estimator may
        find someone again (`relink`)."""
        return BodyPlacer(max_step=MAX_WALK / self.fps, keep=self.relink)

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
