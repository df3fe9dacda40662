"""Orbbec depth cameras (Femto, Astra, Gemini) through pyorbbecsdk2: the RealSense route.

Like RealSense, Orbbec cameras track no bodies: MediaPipe finds people on the colour image
(`pose2d`) and the depth the SDK's AlignFilter maps onto that image lifts their landmarks to
3-D (`pose3d.depth_body`). pyorbbecsdk2 is optional (pip install --no-deps pyorbbecsdk2); without
it `open` says so in one line.
"""
from __future__ import annotations

import time

import numpy as np

from gaitcam.sensors.base import Frame, Source, SourceError, SourceLost
from gaitcam.sensors.camera import Intrinsics
from gaitcam.sensors.device_clock import DeviceClock
from gaitcam.sensors.pose2d import PoseEstimator
from gaitcam.sensors.pose3d import depth_body, pose_frame
from gaitcam.skeleton.layouts import MEDIAPIPE_POSE

_WAIT_MS = 100  # one wait for frames; `timeout` is made of these


def _import_sdk():
    try:
        import pyorbbecsdk
    except ImportError as e:
        raise SourceError(f"orbbec: pyorbbecsdk2 is not installed ({e}); pip install --no-deps pyorbbecsdk2, "
                          "or use azure, realsense, webcam, video, replay or demo") from None
    return pyorbbecsdk


def status() -> str | None:
    """None if pyorbbecsdk2 loads and a camera is connected, else why not."""
    try:
        ob = _import_sdk()
    except SourceError as e:
        return str(e)
    if not ob.Context().query_devices().get_count():
        return "orbbec: no Orbbec camera connected"
    return None


class OrbbecSource(Source):
    """An Orbbec camera by index (`--source`, default 0): its default depth stream and an RGB
    colour stream `width` pixels wide (0: the camera's default).

    `tiles`, `detect_every` are `pose2d.PoseEstimator`'s; `timeout` seconds without frames
    means the camera is lost.
    """

    name = "orbbec"
    layout = MEDIAPIPE_POSE
    fps = 30.0

    def __init__(
        self, source: int | str = 0, *, width: int = 0, tiles: int = 2, detect_every: int = 10, timeout: float = 2.0,
    ) -> None:
        try:
            self.device_index = int(source)
        except ValueError:
            raise SourceError(f"orbbec: --source must be a camera index (0, 1, ...), got {source!r}") from None
        self.width = width
        self.tiles, self.detect_every = tiles, detect_every
        self.timeout = timeout
        self._pipeline = None
        self._align = None
        self._estimator: PoseEstimator | None = None
        self._clock = DeviceClock(self.fps)
        self._index = 0

    def open(self) -> None:
        ob = _import_sdk()
        devices = ob.Context().query_devices()
        if self.device_index >= devices.get_count():
            raise SourceError(f"orbbec: no camera {self.device_index} ({devices.get_count()} connected)")
        if self._estimator is None:  # kept through close and reopen: person numbers stay unique
            self._estimator = PoseEstimator(self.tiles, self.detect_every)
        try:
            pipeline = ob.Pipeline(devices.get_device_by_index(self.device_index))
            config = ob.Config()
            colour = pipeline.get_stream_profile_list(ob.OBSensorType.COLOR_SENSOR).get_video_stream_profile(
                self.width, 0, ob.OBFormat.RGB, 0)
            config.enable_stream(colour)
            config.enable_stream(pipeline.get_stream_profile_list(ob.OBSensorType.DEPTH_SENSOR)
                                 .get_default_video_stream_profile())
            config.set_frame_aggregate_output_mode(ob.OBFrameAggregateOutputMode.FULL_FRAME_REQUIRE)
            pipeline.start(config)
        except Exception as e:  # OBError: the camera is busy or gone, or has no RGB colour profile
            raise SourceError(f"orbbec: cannot start camera {self.device_index} ({type(e).__name__}: {e})") from None
        self.fps = float(colour.get_fps())
        self._align = ob.AlignFilter(align_to_stream=ob.OBStreamType.COLOR_STREAM)
        self._pipeline = pipeline

    def read(self) -> Frame:
        if self._pipeline is None or self._estimator is None:
            raise SourceError("orbbec: read before open")
        image, depth, intrinsics, stamp = self._grab()
        frame = pose_frame(self._estimator.process(image), lambda pose: depth_body(pose, depth, intrinsics),
                           self._clock(stamp), self._index, image)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = self._align = None
        if self._estimator is not None:
            self._estimator.reset()  # whoever comes after a reopen is found afresh

    def _grab(self) -> tuple[np.ndarray, np.ndarray, Intrinsics, float]:
        """(BGR image, depth in metres aligned to it, colour intrinsics, device seconds)."""
        deadline = time.monotonic() + self.timeout
        while True:
            frames = self._pipeline.wait_for_frames(_WAIT_MS)
            if frames is not None:
                aligned = self._align.process(frames)
                if aligned is not None:
                    aligned = aligned.as_frame_set()
                    colour, depth = aligned.get_color_frame(), aligned.get_depth_frame()
                    if colour is not None and depth is not None:
                        break
            if time.monotonic() > deadline:
                raise SourceLost(f"orbbec: no frames for {self.timeout:g} s (camera unplugged?)")
        w, h = colour.get_width(), colour.get_height()
        rgb = np.frombuffer(colour.get_data(), dtype=np.uint8).reshape(h, w, 3)
        # get_depth_scale() is millimetres per depth unit.
        metres = np.frombuffer(depth.get_data(), dtype=np.uint16).reshape(h, w).astype(np.float32) \
            * (depth.get_depth_scale() / 1000.0)
        k = colour.get_stream_profile().as_video_stream_profile().get_intrinsic()
        return np.ascontiguousarray(rgb[:, :, ::-1]), metres, Intrinsics(k.fx, k.fy, k.cx, k.cy), \
            colour.get_timestamp_us() / 1e6
