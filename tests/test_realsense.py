"""RealSense backend: a synthetic recording (real colour pixels, constant depth) written with
pyrealsense2's software device and played back through the backend; a live camera through a
fake pyrealsense2 (frames, then an unplugged camera); missing SDK, camera and files."""
import sys
import types
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from conftest import SHARED
from gaitcam.sensors.base import SourceError, SourceLost, source_class
from gaitcam.sensors.realsense import NO_CAMERA, RealSenseSource, status
from gaitcam.skeleton.layouts import MEDIAPIPE_POSE
from gaitcam.skeleton.sequence import JointState

MESSI = SHARED / "data" / "media" / "messi5.jpg"
DEPTH = 2.5  # metres: a person a few steps from the camera
FX = 400.0
FOOT_ROWS = 290  # no depth from this image row down (a hole, as on a dark floor)
needs_media = pytest.mark.skipif(not MESSI.is_file(), reason="needs ../shared/data/media")


def _sdk():
    return pytest.importorskip("pyrealsense2", reason="pyrealsense2 needs libusb-1.0 (apt-get install libusb-1.0-0)")


def _intrinsics(rs, w: int, h: int):
    """The recording's pinhole camera: focal length FX, centred, no distortion."""
    k = rs.intrinsics()
    k.width, k.height, k.fx, k.fy, k.ppx, k.ppy = w, h, FX, FX, w / 2, h / 2
    k.model, k.coeffs = rs.distortion.none, [0.0] * 5
    return k


def write_recording(path, image: np.ndarray, depth_m: np.ndarray, n_frames: int, fps: int = 30) -> None:
    """A colour + depth recording from a pyrealsense2 software device: two identical, aligned
    pinhole streams (`_intrinsics`), depth in millimetre units."""
    rs = _sdk()
    h, w = image.shape[:2]
    device = rs.software_device()
    streams = {rs.stream.depth: (rs.format.z16, np.round(depth_m * 1000).astype(np.uint16)),
               rs.stream.color: (rs.format.bgr8, np.ascontiguousarray(image))}
    sensors, profiles, bpp = {}, {}, {}
    for uid, (kind, (fmt, pixels)) in enumerate(streams.items()):
        bpp[kind] = pixels.itemsize * (pixels.shape[2] if pixels.ndim == 3 else 1)
        stream = rs.video_stream()
        stream.type, stream.index, stream.uid, stream.fmt = kind, 0, uid, fmt
        stream.width, stream.height, stream.fps, stream.bpp = w, h, fps, bpp[kind]
        stream.intrinsics = _intrinsics(rs, w, h)
        sensors[kind] = device.add_sensor(str(kind))
        profiles[kind] = sensors[kind].add_video_stream(stream)
    sensors[rs.stream.depth].add_read_only_option(rs.option.depth_units, 0.001)
    same_place = rs.extrinsics()
    same_place.rotation, same_place.translation = [1, 0, 0, 0, 1, 0, 0, 0, 1], [0, 0, 0]
    profiles[rs.stream.depth].register_extrinsics_to(profiles[rs.stream.color], same_place)
    recorder = rs.recorder(str(path), device)
    queue = rs.frame_queue(16)
    for kind, sensor in sensors.items():
        sensor.open(profiles[kind])
        sensor.start(queue)
    for n in range(n_frames):
        for kind, (_, pixels) in streams.items():
            frame = rs.software_video_frame()
            frame.pixels, frame.bpp, frame.stride = pixels, bpp[kind], w * bpp[kind]
            frame.timestamp, frame.domain, frame.frame_number = 1000.0 * n / fps, rs.timestamp_domain.hardware_clock, n
            frame.profile = profiles[kind].as_video_stream_profile()
            sensors[kind].on_video_frame(frame)
        while queue.poll_for_frame():
            pass
    for sensor in sensors.values():
        sensor.stop()
        sensor.close()
    del recorder  # finishes the file


@needs_media
def test_recording_plays_back_as_bodies_in_metres(tmp_path):
    rs = _sdk()
    image = cv2.imread(str(MESSI))
    depth = np.full(image.shape[:2], DEPTH)
    depth[FOOT_ROWS:] = 0.0
    path = tmp_path / "walk.db3"
    write_recording(path, image, depth, n_frames=4)
    source = RealSenseSource(path, tiles=0)
    assert source_class("realsense") is RealSenseSource and source.is_file and source.layout == MEDIAPIPE_POSE
    frames = []
    with source:
        while (frame := source.read()) is not None:
            frames.append(frame)
    assert len(frames) >= 3  # of 4: playback may drop the first frame set while it synchronises
    times = np.array([f.time for f in frames])
    np.testing.assert_allclose(np.diff(times), 1 / 30, atol=1e-4)  # the recording's own clock
    k = _intrinsics(rs, image.shape[1], image.shape[0])
    for frame in frames:
        (body,) = frame.bodies
        (points,) = frame.extras["image_points"]
        assert body.track == 1 and frame.image.shape == image.shape  # one person, followed throughout
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
    intrinsics = SimpleNamespace(fx=FX, fy=FX, ppx=274.0, ppy=171.0)

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
            video = SimpleNamespace(get_intrinsics=lambda: intrinsics)
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
