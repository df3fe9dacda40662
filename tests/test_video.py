"""Video backend: a short clip of vtest.avi (people 60-110 px tall) through the tiled MediaPipe
path, the file's own clock, pacing, the end of the file, and files it cannot play."""
import time

import cv2
import numpy as np
import pytest

from conftest import SHARED
from gaitcam.sensors.base import SourceError, source_class
from gaitcam.sensors.video import VideoSource, status

VTEST = SHARED / "data" / "media" / "vtest.avi"
FRAMES = 6
# vtest.avi is view 1 of PETS 2009 S2.L1 (the same lawn, road and lamp post; the published
# calibration reprojects its walkers' heights to within a few pixels). That calibration's focal
# length, and its depths (metres along the optical axis) of frame 0's three people, from where
# their feet touch the ground, keyed by their hip centres in pixels.
VTEST_FOCAL = 1190.0
VTEST_DEPTHS = {(515, 195): 28.3, (266, 264): 23.4, (667, 283): 21.5}

pytestmark = pytest.mark.skipif(not VTEST.is_file(), reason="needs ../shared/data/media")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The first FRAMES frames of vtest.avi (10 fps) as a clip of its own."""
    capture = cv2.VideoCapture(str(VTEST))
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (768, 576))
    for _ in range(FRAMES):
        writer.write(capture.read()[1])
    writer.release()
    capture.release()
    return path


def _read_all(source: VideoSource) -> list:
    with source:
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
    return frames


def test_small_people_in_a_video_become_bodies(clip):
    source = VideoSource(clip, speed=0)
    assert source_class("video") is VideoSource and source.is_file and status() is None
    assert source.fps == 10.0  # before open: the stream reads it when it is set up
    frames = _read_all(source)
    assert len(frames) == FRAMES  # then None: the run ends
    np.testing.assert_allclose([f.time for f in frames], np.arange(FRAMES) / 10.0, atol=1e-6)  # the file's clock
    assert [f.index for f in frames] == list(range(FRAMES))
    counts = [len(f.bodies) for f in frames]
    assert counts[0] == 3 and min(counts) >= 2  # found through the tiles, then followed
    for frame in frames:
        centres = frame.extras["image_points"][:, [23, 24]].mean(axis=1)
        assert (centres[:, 1] > 150).all() and (centres[:, 1] < 350).all()  # on the road, not on the lawn
        for body in frame.bodies:
            assert np.nanmin(body.joints[:, 2]) > 0  # in front of the camera
    # Each person keeps their number and moves smoothly in metres, as the app's tracker needs.
    tracks = [{b.track: np.nanmean(b.joints[[23, 24]], axis=0) for b in f.bodies} for f in frames]
    assert sorted(tracks[0]) == [1, 2, 3]
    for before, after in zip(tracks, tracks[1:]):
        for person in before.keys() & after.keys():
            assert np.linalg.norm(after[person] - before[person]) < 0.5


def test_the_cameras_focal_length_gives_the_scenes_depths(clip):
    source = VideoSource(clip, speed=0, focal_length=VTEST_FOCAL)
    with source:
        frame = source.read()
    assert source.horizontal_fov == pytest.approx(np.degrees(2 * np.arctan(384 / VTEST_FOCAL)))  # 35.8
    hips = frame.extras["image_points"][:, [23, 24]].mean(axis=1)
    assert len(frame.bodies) == len(VTEST_DEPTHS)
    for body, (x, y) in zip(frame.bodies, hips):
        expected = min(VTEST_DEPTHS.items(), key=lambda item: np.hypot(item[0][0] - x, item[0][1] - y))[1]
        assert 0.85 < np.nanmean(body.joints[[23, 24], 2]) / expected < 1.1  # MediaPipe's body scale: 5 % short
    with pytest.raises(SourceError, match="focal_length must be > 0"):
        VideoSource(clip, focal_length=0)


def test_frames_are_paced_at_the_files_rate(clip):
    start = time.monotonic()
    frames = _read_all(VideoSource(clip, tiles=0))  # speed 1: like a camera
    assert len(frames) == FRAMES and time.monotonic() - start >= (FRAMES - 1) / 10.0


def test_a_file_without_a_clock_steps_by_its_frame_rate(clip, monkeypatch):
    real = cv2.VideoCapture

    class NoClock:
        """The real capture, but its clock stays at 0 (as for some containers and streams)."""

        def __init__(self, target) -> None:
            self.capture = real(target)

        def get(self, prop: int) -> float:
            return 0.0 if prop == cv2.CAP_PROP_POS_MSEC else self.capture.get(prop)

        def __getattr__(self, name: str):
            return getattr(self.capture, name)

    monkeypatch.setattr(cv2, "VideoCapture", NoClock)
    frames = _read_all(VideoSource(clip, speed=0, tiles=0))
    np.testing.assert_allclose([f.time for f in frames], np.arange(FRAMES) / 10.0, atol=1e-6)


def test_files_it_cannot_play(tmp_path):
    with pytest.raises(SourceError, match="video: no such file .*gone.avi"):
        VideoSource(tmp_path / "gone.avi").open()
    text = tmp_path / "notes.avi"
    text.write_text("not a video")
    with pytest.raises(SourceError, match="video: OpenCV cannot decode .*notes.avi") as err:
        VideoSource(text).open()
    assert "\n" not in str(err.value)
    with pytest.raises(SourceError, match="speed must be >= 0"):
        VideoSource(text, speed=-1)
