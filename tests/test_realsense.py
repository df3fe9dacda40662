"""RealSense backend: recordings (real colour pixels, constant depth) written with pyrealsense2's
software device, as ROS2 `.db3` (the pinned SDK's recorder) and ROS1 `.bag` (written by
pyrealsense2 2.55, kept in tests/data: see tests/realsense_recording.py), played back through
the backend; a live camera through a fake pyrealsense2 (frames, then an unplugged camera);
missing SDK, camera and files."""
import lzma
import shutil
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from conftest import SHARED
from gaitcam.sensors.base import SourceError, SourceLost, source_class
from gaitcam.sensors.realsense import NO_CAMERA, RealSenseSource, status
from gaitcam.skeleton.layouts import MEDIAPIPE_POSE
from gaitcam.skeleton.sequence import JointState
from realsense_recording import DEPTH, FOOT_ROWS, FX, N_FRAMES, depth_image, intrinsics, write_recording

MESSI = SHARED / "data" / "media" / "messi5.jpg"
ROS1_BAG = Path(__file__).parent / "data" / "messi-2.5m.bag.xz"
needs_media = pytest.mark.skipif(not MESSI.is_file(), reason="needs ../shared/data/media")


def _sdk():
    return pytest.importorskip("pyrealsense2", reason="pyrealsense2 needs libusb-1.0 (apt-get install libusb-1.0-0)")


def _recording(kind: str, tmp_path: Path) -> Path:
    """The messi5.jpg recording as a `.db3` written here by the pinned SDK, or as the ROS1 `.bag`."""
    if kind == "db3":
        image = cv2.imread(str(MESSI))
        write_recording(_sdk(), tmp_path / "walk.db3", image, depth_image(image.shape))
        return tmp_path / "walk.db3"
    with lzma.open(ROS1_BAG) as packed, open(tmp_path / "walk.bag", "wb") as bag:
        shutil.copyfileobj(packed, bag)
    return tmp_path / "walk.bag"


@needs_media
@pytest.mark.parametrize("kind", ["db3", "bag"])
def test_recording_plays_back_as_bodies_in_metres(kind, tmp_path):
    rs = _sdk()
    image = cv2.imread(str(MESSI))
    source = RealSenseSource(_recording(kind, tmp_path), tiles=0)
    assert source_class("realsense") is RealSenseSource and source.is_file and source.layout == MEDIAPIPE_POSE
    frames = []
    with source:
        while (frame := source.read()) is not None:
            frames.append(frame)
    # Played at its own pace, a recording loses no frame set; the SDK's ROS1 reader never
    # yields a `.bag`'s first one (so in 150 of 150 runs of this file).
    assert len(frames) == (N_FRAMES if kind == "db3" else N_FRAMES - 1)
    times = np.array([f.time for f in frames])
    np.testing.assert_allclose(np.diff(times), 1 / 30, atol=1e-4)  # the recording's own clock
    k = intrinsics(rs, image.shape[1], image.shape[0])
    for frame in frames:
        (body,) = frame.bodies
        (points,) = frame.extras["image_points"]
        assert body.track == 1 and (frame.image == image).all()  # one person, followed throughout
        hole = points[:, 1] >= FOOT_ROWS + 3  # the depth window (5 px) lies wholly in the hole
        assert hole.any() and (body.states[hole] == JointState.MISSING).all() and np.isnan(body.joints[hole]).all()
        lifted = body.states != JointState.MISSING
        assert lifted.sum() >= 25
        # Each lifted joint is librealsense's deprojection of its pixel at the recorded depth,
        # turned into Kinect axes (x left, y up).
        expected = [rs.rs2_deproject_pixel_to_point(k, [float(u), float(v)], DEPTH) for u, v in points[lifted]]
        np.testing.assert_allclose(body.joints[lifted], np.array(expected) * [-1, -1, 1], atol=1e-4)
        nose, hips = body.joints[0], body.joints[[23, 24]].mean(axis=0)
        assert nose[1] > hips[1]  # head above hips: y up


class _Fmt:
    def __init__(self, name: str) -> None:
        self.name = name


@pytest.fixture
def fake_sdk(monkeypatch):
    """A fake pyrealsense2 with one live camera serving `sdk.frames` ((BGR image, depth mm, ms)), then nothing."""
    sdk = SimpleNamespace(frames=[], started=[])
    rs = types.ModuleType("pyrealsense2")
    rs.stream = SimpleNamespace(color="color", depth="depth")
    rs.format = SimpleNamespace(bgr8=_Fmt("bgr8"), z16=_Fmt("z16"))
    lens = SimpleNamespace(fx=FX, fy=FX, ppx=274.0, ppy=171.0)

    class Config:
        def __init__(self) -> None:
            self.streams = []

        def enable_stream(self, kind, width, height, fmt, fps) -> None:
            self.streams.append((kind, width, height, fmt.name, fps))

    class Pipeline:
        def start(self, config):
            sdk.started.append(config.streams)
            device = SimpleNamespace(first_depth_sensor=lambda: SimpleNamespace(get_depth_scale=lambda: 0.001))
            colour = SimpleNamespace(format=lambda: rs.format.bgr8, fps=lambda: 30)
            return SimpleNamespace(get_device=lambda: device, get_stream=lambda kind: colour)

        def try_wait_for_frames(self, timeout_ms: int):
            if not sdk.frames:
                return False, None
            image, depth_mm, ms = sdk.frames.pop(0)
            video = SimpleNamespace(get_intrinsics=lambda: lens)
            profile = SimpleNamespace(format=lambda: rs.format.bgr8, as_video_stream_profile=lambda: video)
            colour = SimpleNamespace(profile=profile, get_data=lambda: image, get_timestamp=lambda: ms)
            depth = SimpleNamespace(get_data=lambda: depth_mm)
            return True, SimpleNamespace(get_color_frame=lambda: colour, get_depth_frame=lambda: depth)

        def stop(self) -> None:
            sdk.stopped = True

    rs.config, rs.pipeline = Config, Pipeline
    rs.context = lambda: SimpleNamespace(query_devices=lambda: SimpleNamespace(size=lambda: 1))
    rs.align = lambda kind: SimpleNamespace(process=lambda frames: frames)  # the fake's streams are aligned
    monkeypatch.setitem(sys.modules, "pyrealsense2", rs)
    return sdk


@needs_media
def test_live_camera_then_unplugged(fake_sdk):
    image = cv2.imread(str(MESSI))
    depth = np.full(image.shape[:2], 3000, np.uint16)
    fake_sdk.frames = [(image, depth, 5000.0), (image, depth, 5033.3)]
    with RealSenseSource(width=848, height=480, fps=30, tiles=0, timeout=0.2) as source:
        first, second = source.read(), source.read()
        with pytest.raises(SourceLost, match="realsense: no frames for 0.2 s"):
            source.read()
    assert fake_sdk.started == [[("color", 848, 480, "bgr8", 30), ("depth", 848, 480, "z16", 30)]]
    assert fake_sdk.stopped and not source.is_file
    assert (first.time, second.time) == pytest.approx((5.0, 5.0333))  # device milliseconds -> seconds
    (body,) = first.bodies
    lifted = body.states != JointState.MISSING
    np.testing.assert_allclose(body.joints[lifted, 2], 3.0, rtol=1e-6)  # depth units * depth scale
    assert first.image is not image and (first.image == image).all()  # a copy: the SDK reuses its buffers


def test_files_that_are_not_recordings(tmp_path):
    with pytest.raises(SourceError, match=r"not a RealSense recording \(.bag, .db3\)"):
        RealSenseSource(tmp_path / "walk.avi")
    with pytest.raises(SourceError, match="realsense: no such recording .*gone.bag"):
        RealSenseSource(tmp_path / "gone.bag").open()


def test_no_camera_is_a_source_error():
    _sdk()
    if status() is None:
        pytest.skip("a RealSense camera is connected")
    assert status() == NO_CAMERA
    with pytest.raises(SourceError) as err:
        RealSenseSource().open()
    assert str(err.value) == NO_CAMERA


def test_missing_sdk_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)  # as when libusb-1.0 is missing
    with pytest.raises(SourceError, match="pyrealsense2 cannot load .*libusb-1.0-0") as err:
        RealSenseSource().open()
    assert "\n" not in str(err.value) and status() == str(err.value)
