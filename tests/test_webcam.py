"""Webcam backend: a fake OpenCV camera serving real pixels, through multi-person MediaPipe to
placed 3-D bodies; an unplugged camera; a camera that will not open; --source parsing."""

import cv2
import pytest

from conftest import SHARED
from gaitcam.sensors import webcam
from gaitcam.sensors.base import SourceError, SourceLost, source_class
from gaitcam.sensors.webcam import WebcamSource, capture_target, status
from gaitcam.skeleton.layouts import MEDIAPIPE_POSE
from gaitcam.skeleton.sequence import JointState

MESSI = SHARED / "data" / "media" / "messi5.jpg"


class FakeCamera:
    """cv2.VideoCapture stand-in: `images` in turn, then no more frames (unplugged)."""

    images: list = []
    opens = True

    def __init__(self, target) -> None:
        self.target, self.released = target, False
        self.queue = list(FakeCamera.images)

    def isOpened(self) -> bool:
        return FakeCamera.opens

    def read(self):
        return (True, self.queue.pop(0)) if self.queue else (False, None)

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: 25.0, cv2.CAP_PROP_POS_MSEC: 0.0}.get(prop, 0.0)

    def release(self) -> None:
        self.released = True


@pytest.fixture
def camera(monkeypatch):
    monkeypatch.setattr(FakeCamera, "images", [])
    monkeypatch.setattr(FakeCamera, "opens", True)
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    return FakeCamera


@pytest.mark.skipif(not MESSI.is_file(), reason="needs ../shared/data/media")
def test_camera_frames_become_placed_bodies_until_unplugged(camera):
    image = cv2.imread(str(MESSI))
    camera.images = [image, image]
    source = WebcamSource("0", tiles=0)
    assert source_class("webcam") is WebcamSource and not source.is_file and source.source == 0
    with source:
        assert source.fps == 25.0
        first, second = source.read(), source.read()
        with pytest.raises(SourceLost, match="webcam: camera 0 stopped delivering frames"):
            source.read()
        capture = source._capture
    assert capture.released
    assert first.layout == MEDIAPIPE_POSE and first.image is image and (first.index, second.index) == (0, 1)
    assert 0 <= first.time < second.time < 5.0  # seconds since the camera opened
    (body,) = first.bodies
    assert body.track == 1 and (body.states != JointState.MISSING).sum() >= 30  # the estimator's first person
    assert first.extras["image_points"].shape == (1, 33, 2)
    hips, nose = body.joints[[23, 24]].mean(axis=0), body.joints[0]
    assert 1.0 < hips[2] < 6.0  # placed a few metres in front of the camera, not at its origin
    assert nose[1] > hips[1] + 0.3  # Kinect axes: y up


@pytest.mark.skipif(not MESSI.is_file(), reason="needs ../shared/data/media")
def test_a_reopened_camera_numbers_people_afresh(camera):
    camera.images = [cv2.imread(str(MESSI))]
    source = WebcamSource(0, tiles=0)
    tracks = []
    for _ in range(2):  # as the capture thread does after losing the camera
        with source:
            tracks.append([b.track for b in source.read().bodies])
    assert tracks == [[1], [2]]  # never a sensor id the app could take for the person before


def test_a_camera_that_does_not_open(camera):
    camera.opens = False
    with pytest.raises(SourceError) as err:
        WebcamSource(3).open()
    assert str(err.value).startswith("webcam: cannot open camera 3") and "\n" not in str(err.value)
    with pytest.raises(SourceError, match="horizontal_fov"):
        WebcamSource(horizontal_fov=190)


def test_source_parsing_and_status(monkeypatch):
    assert capture_target("0") == 0 and capture_target(2) == 2
    assert capture_target("/dev/video2") == "/dev/video2" and capture_target("rtsp://cam/1") == "rtsp://cam/1"
    monkeypatch.setattr(webcam.sys, "platform", "linux")
    monkeypatch.setattr(webcam.glob, "glob", lambda pattern: [])
    assert status().startswith("webcam: no camera on this machine")
    monkeypatch.setattr(webcam.glob, "glob", lambda pattern: ["/dev/video0"])
    assert status() is None
