"""Intel RealSense (D400 series, L515) through pyrealsense2: colour and aligned depth, live or recorded.

RealSense cameras track no bodies. People are found by MediaPipe on the colour image (`pose2d`)
and their landmarks lifted to 3-D with the depth aligned to that image (`pose3d.depth_body`):
measured positions in metres, Kinect axes, MISSING where the depth has no answer.

`--source FILE` plays a recording instead of a camera, as a file source that ends: `.bag` (ROS1:
the RealSense Viewer and older SDKs) or `.db3` (ROS2: what this SDK's recorder writes). Playback
is not real time by default, so every recorded frame is processed however long MediaPipe takes.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from gaitcam.sensors.base import Frame, Source, SourceError, SourceLost
from gaitcam.sensors.camera import Intrinsics
from gaitcam.sensors.device_clock import DeviceClock
from gaitcam.sensors.pose2d import PoseEstimator
from gaitcam.sensors.pose3d import depth_body, pose_frame
from gaitcam.skeleton.layouts import MEDIAPIPE_POSE

log = logging.getLogger(__name__)

RECORDING_SUFFIXES = (".bag", ".db3")
NO_CAMERA = "realsense: no RealSense camera connected (recordings play with --source FILE.bag)"
# Colour formats read, by pyrealsense2 name, with their OpenCV conversion to BGR (None: none needed).
_TO_BGR: dict[str, int | None] = {"bgr8": None, "rgb8": cv2.COLOR_RGB2BGR, "yuyv": cv2.COLOR_YUV2BGR_YUYV}
_WAIT_MS = 100  # one wait for frames; `timeout` is made of these
_STALLED_RECORDING = 30.0  # seconds without a frame from a recording that has not stopped


def _import_sdk():
    try:
        import pyrealsense2
    except ImportError as e:  # the wheel needs the system's libusb-1.0 (Debian: libusb-1.0-0)
        raise SourceError(f"realsense: pyrealsense2 cannot load ({e}); pip install pyrealsense2, and on Linux "
                          "apt-get install libusb-1.0-0") from None
    return pyrealsense2


def status() -> str | None:
    """None if pyrealsense2 loads and a camera is connected, else why not."""
    try:
        rs = _import_sdk()
    except SourceError as e:
        return str(e)
    if not rs.context().query_devices().size():
        return NO_CAMERA
    return None


class RealSenseSource(Source):
    """The first RealSense camera, or a recording (`source`).

    `width`, `height`, `fps` pick the live colour and depth streams (a recording has its own);
    `tiles`, `detect_every` are `pose2d.PoseEstimator`'s; `timeout` seconds without frames
    means the camera is lost.
    """

    name = "realsense"
    layout = MEDIAPIPE_POSE

    def __init__(
        self, source: str | Path | None = None, *, width: int = 640, height: int = 480, fps: int = 30,
        tiles: int = 2, detect_every: int = 10, timeout: float = 2.0, realtime: bool = False,
    ) -> None:
        self.path = None if source is None else Path(source)
        if self.path is not None and self.path.suffix.lower() not in RECORDING_SUFFIXES:
            raise SourceError(f"realsense: {self.path} is not a RealSense recording "
                              f"({', '.join(RECORDING_SUFFIXES)})")
        self.is_file = self.path is not None  # type: ignore[misc]  # a recording ends like a file
        self.width, self.height, self.fps = width, height, float(fps)
        self.tiles, self.detect_every = tiles, detect_every
        self.timeout = timeout
        self.realtime = realtime
        self._rs = None
        self._pipeline = None
        self._playback = None
        self._align = None
        self._depth_scale = 0.0
        self._estimator: PoseEstimator | None = None
        self._clock = DeviceClock(self.fps)
        self._index = 0

    def open(self) -> None:
        self._rs = rs = _import_sdk()
        config = rs.config()
        if self.path is not None:
            if not self.path.is_file():
                raise SourceError(f"realsense: no such recording {self.path}")
            config.enable_device_from_file(str(self.path), repeat_playback=False)
        else:
            if not rs.context().query_devices().size():  # else pipeline.start waits 15 s to say so
                raise SourceError(NO_CAMERA)
            config.enable_stream(rs.stream.color, self.width, self.height, rs.format.bgr8, int(self.fps))
            config.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, int(self.fps))
        if self._estimator is None:  # kept through close and reopen: person numbers stay unique
            self._estimator = PoseEstimator(self.tiles, self.detect_every)
        pipeline = rs.pipeline()
        try:
            if self.path is not None:
                # Playback pace is set on the device the config resolves to, before it starts:
                # set after start, the first frame sets already play in real time and can be dropped.
                config.resolve(rs.pipeline_wrapper(pipeline)).get_device().as_playback().set_real_time(self.realtime)
            profile = pipeline.start(config)
        except RuntimeError as e:  # a camera taken by another program, a corrupt recording
            what = f"play {self.path}" if self.path is not None else "the camera"
            raise SourceError(f"realsense: cannot {what} ({e})") from None
        try:
            self._configure(rs, profile)
        except SourceError:
            pipeline.stop()
            raise
        self._pipeline = pipeline

    def read(self) -> Frame | None:
        if self._pipeline is None or self._estimator is None:
            raise SourceError("realsense: read before open")
        grabbed = self._grab()
        if grabbed is None:
            return None
        image, depth, intrinsics, stamp = grabbed
        frame = pose_frame(self._estimator.process(image), lambda pose: depth_body(pose, depth, intrinsics),
                           self._clock(stamp), self._index, image)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = self._playback = self._align = None
        if self._estimator is not None:
            self._estimator.reset()  # whoever comes after a reopen is found afresh

    def _configure(self, rs, profile) -> None:
        """Check the started streams and keep what reading them needs."""
        what = self.path or "camera"
        device = profile.get_device()
        try:
            colour = profile.get_stream(rs.stream.color)
            self._depth_scale = device.first_depth_sensor().get_depth_scale()  # metres per depth unit
        except RuntimeError:
            raise SourceError(f"realsense: {what} needs a colour and a depth stream") from None
        if colour.format().name not in _TO_BGR:
            raise SourceError(f"realsense: {what}: colour format {colour.format().name} is not supported "
                              f"(use {', '.join(_TO_BGR)})")
        if self.path is not None:
            self._playback = device.as_playback()
        self.fps = float(colour.fps())
        self._align = rs.align(rs.stream.color)

    def _grab(self) -> tuple[np.ndarray, np.ndarray, Intrinsics, float] | None:
        """(BGR image, depth in metres aligned to it, colour intrinsics, device seconds), or None
        at the end of a recording."""
        rs = self._rs
        # A recording ends when its playback stops; a wall-clock limit could end it early while
        # this thread waits for the interpreter (another thread importing torch, say).
        deadline = time.monotonic() + (_STALLED_RECORDING if self.is_file else self.timeout)
        while True:
            ok, frames = self._pipeline.try_wait_for_frames(_WAIT_MS)
            if ok:
                aligned = self._align.process(frames)
                colour, depth = aligned.get_color_frame(), aligned.get_depth_frame()
                if colour and depth:
                    break
            elif self._playback is not None and self._playback.current_status() == rs.playback_status.stopped:
                return None
            if time.monotonic() > deadline:
                if self.is_file:
                    log.warning("realsense: %s gave no frame for %g s; taking it as ended", self.path,
                                _STALLED_RECORDING)
                    return None
                raise SourceLost(f"realsense: no frames for {self.timeout:g} s (camera unplugged?)")
        k = colour.profile.as_video_stream_profile().get_intrinsics()
        conversion = _TO_BGR[colour.profile.format().name]
        data = np.asanyarray(colour.get_data())
        image = data.copy() if conversion is None else cv2.cvtColor(data, conversion)  # the SDK reuses buffers
        metres = np.asanyarray(depth.get_data()).astype(np.float32) * self._depth_scale
        return image, metres, Intrinsics(k.fx, k.fy, k.ppx, k.ppy), colour.get_timestamp() / 1000.0

