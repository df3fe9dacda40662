"""Orbbec backend through a fake pyorbbecsdk (pyorbbecsdk2 is optional and needs a camera):
colour and aligned depth to bodies in metres, device timestamps, an unplugged camera, and the
one-line error without the SDK."""
import sys
import types
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from conftest import SHARED
from gaitcam.sensors.base import SourceError, SourceLost, source_class
from gaitcam.sensors.orbbec import OrbbecSource, status
from gaitcam.skeleton.layouts import MEDIAPIPE_POSE
from gaitcam.skeleton.sequence import JointState

MESSI = SHARED / "data" / "media" / "messi5.jpg"


@pytest.fixture
def fake_sdk(monkeypatch):
    """A fake pyorbbecsdk with one camera serving `sdk.frames` ((RGB image, depth units, µs)), then nothing."""
    sdk = SimpleNamespace(frames=[], enabled=[], opened=[], stopped=False, cameras=1, busy=False)
    ob = types.ModuleType("pyorbbecsdk")
    ob.OBSensorType = SimpleNamespace(COLOR_SENSOR="colour sensor", DEPTH_SENSOR="depth sensor")
    ob.OBFormat = SimpleNamespace(RGB="RGB")
    ob.OBStreamType = SimpleNamespace(COLOR_STREAM="colour stream")
    ob.OBFrameAggregateOutputMode = SimpleNamespace(FULL_FRAME_REQUIRE="full frames")
    intrinsic = SimpleNamespace(fx=400.0, fy=400.0, cx=274.0, cy=171.0)
    colour_profile = SimpleNamespace(get_fps=lambda: 30, name="colour",
                                     as_video_stream_profile=lambda: SimpleNamespace(get_intrinsic=lambda: intrinsic))

    class Profiles:
        def __init__(self, sensor: str) -> None:
            self.sensor = sensor

        def get_video_stream_profile(self, width, height, fmt, fps):
            assert (self.sensor, fmt) == ("colour sensor", "RGB")
            return colour_profile

        def get_default_video_stream_profile(self):
            return SimpleNamespace(name="depth")

    class Pipeline:
        def __init__(self, device: str) -> None:
            if sdk.busy:
                raise RuntimeError("uvc_open failed: device busy")
            sdk.opened.append(device)

        def get_stream_profile_list(self, sensor: str) -> Profiles:
            return Profiles(sensor)

        def start(self, config) -> None:
            assert config.mode == "full frames"

        def wait_for_frames(self, timeout_ms: int):
            if not sdk.frames:
                return None
            rgb, depth_units, usec = sdk.frames.pop(0)
            h, w = rgb.shape[:2]
            colour = SimpleNamespace(get_width=lambda: w, get_height=lambda: h, get_data=lambda: rgb.ravel(),
                                     get_stream_profile=lambda: colour_profile, get_timestamp_us=lambda: usec)
            depth = SimpleNamespace(get_data=lambda: depth_units.tobytes(), get_depth_scale=lambda: 0.5)  # mm per unit
            frames = SimpleNamespace(get_color_frame=lambda: colour, get_depth_frame=lambda: depth)
            return SimpleNamespace(as_frame_set=lambda: frames)

        def stop(self) -> None:
            sdk.stopped = True

    class Config:
        def enable_stream(self, profile) -> None:
            sdk.enabled.append(profile.name)

        def set_frame_aggregate_output_mode(self, mode) -> None:
            self.mode = mode

    class AlignFilter:
        def __init__(self, align_to_stream: str) -> None:
            assert align_to_stream == "colour stream"

        def process(self, frames):
            return frames  # the fake's depth is already in the colour camera's view

    ob.Pipeline, ob.Config, ob.AlignFilter = Pipeline, Config, AlignFilter
    devices = SimpleNamespace(get_count=lambda: sdk.cameras, get_device_by_index=lambda i: f"camera {i}")
    ob.Context = lambda: SimpleNamespace(query_devices=lambda: devices)
    monkeypatch.setitem(sys.modules, "pyorbbecsdk", ob)
    return sdk


@pytest.mark.skipif(not MESSI.is_file(), reason="needs ../shared/data/media")
def test_colour_and_depth_become_bodies_then_the_camera_is_lost(fake_sdk):
    rgb = cv2.cvtColor(cv2.imread(str(MESSI)), cv2.COLOR_BGR2RGB)
    depth = np.full(rgb.shape[:2], 6000, np.uint16)  # 6000 units of 0.5 mm: 3 m
    fake_sdk.frames = [(rgb, depth, 7_000_000), (rgb, depth, 7_033_333)]
    assert source_class("orbbec") is OrbbecSource and status() is None
    with OrbbecSource(tiles=0, timeout=0.2) as source:
        first, second = source.read(), source.read()
        with pytest.raises(SourceLost, match="orbbec: no frames for 0.2 s"):
            source.read()
    assert fake_sdk.opened == ["camera 0"] and fake_sdk.enabled == ["colour", "depth"] and fake_sdk.stopped
    assert first.layout == MEDIAPIPE_POSE and (first.time, second.time) == pytest.approx((7.0, 7.033333))
    assert (first.image == rgb[:, :, ::-1]).all()  # BGR, like every other source's image
    (body,) = first.bodies
    lifted = body.states != JointState.MISSING
    assert lifted.sum() >= 25 and body.track == 1
    np.testing.assert_allclose(body.joints[lifted, 2], 3.0, rtol=1e-6)
    (points,) = first.extras["image_points"]
    np.testing.assert_allclose(body.joints[lifted, 0], -(points[lifted, 0] - 274.0) / 400.0 * 3.0, rtol=1e-4)  # x left


def test_no_camera_a_busy_camera_and_no_sdk(fake_sdk, monkeypatch):
    fake_sdk.cameras = 0
    assert status() == "orbbec: no Orbbec camera connected"
    with pytest.raises(SourceError, match=r"orbbec: no camera 0 \(0 connected\)"):
        OrbbecSource().open()
    fake_sdk.cameras, fake_sdk.busy = 2, True
    with pytest.raises(SourceError, match="orbbec: cannot start camera 1 .*device busy"):
        OrbbecSource("1").open()
    with pytest.raises(SourceError, match="orbbec: --source must be a camera index"):
        OrbbecSource("front")
    monkeypatch.setitem(sys.modules, "pyorbbecsdk", None)
    with pytest.raises(SourceError, match="orbbec: pyorbbecsdk2 is not installed") as err:
        OrbbecSource().open()
    assert "\n" not in str(err.value) and status() == str(err.value)
