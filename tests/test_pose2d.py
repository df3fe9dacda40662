"""Multi-person MediaPipe pose on real pixels (messi5.jpg, basketball1.png, vtest.avi), and the
ROI and person-merging rules it is built from."""
import math

import cv2
import numpy as np
import pytest

from conftest import SHARED
from gaitcam.sensors.pose2d import Pose2D, PoseEstimator, Roi, unavailable

MEDIA = SHARED / "data" / "media"
# vtest.avi frame 0: the three people's hip centres in pixels, checked by eye against the frame.
VTEST_PEOPLE = [(266, 264), (515, 195), (667, 283)]

pytestmark = pytest.mark.skipif(not MEDIA.is_dir(), reason="needs ../shared/data/media")


@pytest.fixture(scope="module")
def estimator():
    est = PoseEstimator(tiles=3)
    yield est
    est.close()


def _hips(pose: Pose2D) -> np.ndarray:
    """The hip centre in pixels."""
    return pose.pixels[[23, 24]].mean(axis=0)


def _vtest_frames(n: int) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(MEDIA / "vtest.avi"))
    frames = [capture.read()[1] for _ in range(n)]
    capture.release()
    return frames


def test_one_person_photos_give_full_skeletons(estimator):
    assert unavailable() is None
    estimator.reset()
    (messi,) = estimator.process(cv2.imread(str(MEDIA / "messi5.jpg")))  # nothing else passes as a person
    estimator.reset()
    players = estimator.process(cv2.imread(str(MEDIA / "basketball1.png")))
    thrower = players[0]  # the most visible first; the second player is cut off by the image edge
    assert _hips(thrower)[0] < 320 and all(p.seen.sum() < thrower.seen.sum() for p in players[1:])
    for pose, (h, w) in ((messi, (342, 548)), (thrower, (480, 640))):
        assert pose.seen.sum() >= 30  # of 33 landmarks
        assert ((pose.pixels >= 0) & (pose.pixels < (w, h))).all()
        nose, ankles = pose.pixels[0], pose.pixels[[27, 28]]
        assert (nose[1] < ankles[:, 1]).all()  # head above feet in the image
        # World landmarks: metres around the hip centre, y down.
        np.testing.assert_allclose(pose.world[[23, 24]].mean(axis=0), 0.0, atol=0.05)
        assert 0.9 < np.linalg.norm(pose.world[0] - pose.world[[27, 28]].mean(axis=0)) < 2.0
        assert pose.world[0, 1] < 0 < pose.world[27, 1]


def test_small_people_are_found_in_tiles():
    frame = _vtest_frames(1)[0]
    whole = PoseEstimator(tiles=0)
    assert whole.process(frame) == []  # people 60-110 px tall: the whole frame shows nobody
    whole.close()
    tiled = PoseEstimator(tiles=4)
    centres = [_hips(p) for p in tiled.process(frame)]
    tiled.close()
    for person in VTEST_PEOPLE:
        assert min(np.hypot(*(c - person)) for c in centres) < 15
    assert len(centres) == len(VTEST_PEOPLE)


def test_people_are_followed_between_detections(monkeypatch):
    frames = _vtest_frames(6)
    est = PoseEstimator(tiles=4, detect_every=100)
    first = est.process(frames[0])
    before = {p.person: _hips(p) for p in first}
    assert sorted(before) == [1, 2, 3]

    def no_detection(rgb):
        raise AssertionError("followed people need no detection")

    monkeypatch.setattr(est, "detect", no_detection)
    for frame in frames[1:]:
        now = {p.person: _hips(p) for p in est.process(frame)}
        assert sorted(now) == [1, 2, 3]  # the same three people, by the same numbers
        for person, centre in now.items():  # a few pixels on from the last frame (walking at 10 fps)
            assert np.hypot(*(centre - before[person])) < 25
        before = now
    est.close()


def test_roi_is_mediapipes_body_square():
    upright = Roi.from_points((100.0, 200.0), (100.0, 100.0))  # body circle edge straight above the hips
    assert (upright.x, upright.y, upright.size) == (100.0, 200.0, 250.0) and upright.rotation == pytest.approx(0)
    lying = Roi.from_points((100.0, 200.0), (180.0, 200.0))
    assert lying.rotation == pytest.approx(math.pi / 2) and lying.size == pytest.approx(200.0)
    assert Roi(500.0, 500.0, 250.0, 0.0).share_inside(0, 0, 1000, 1000) == 1.0
    assert Roi(0.0, 0.0, 100.0, 0.0).share_inside(0, 0, 640, 480) == 0.25  # centred on the image corner
    assert upright.same_person(Roi(110.0, 205.0, 240.0, 0.0))
    assert not upright.same_person(Roi(160.0, 200.0, 250.0, 0.0))  # someone walking beside


def _pose(x0: float, y0: float, height: float, seen: int = 33, rotation: float = 0.0) -> Pose2D:
    """A synthetic pose: landmarks spread over a box `height` tall and height/3 wide at (x0, y0)."""
    t = np.linspace(0, 1, 33)
    pixels = np.stack([x0 + height / 3 * t, y0 + height * t[::-1]], axis=1)
    visibility = np.where(np.arange(33) < seen, 0.9, 0.1)
    return Pose2D(pixels, visibility, np.full(33, 0.99), np.zeros((33, 3)), Roi(x0, y0, height * 1.25, rotation))


def test_implausible_bodies_and_duplicates_are_told_apart():
    assert _pose(0, 0, 100).plausible
    assert not _pose(0, 0, 100, seen=8).plausible  # mostly invisible
    assert not _pose(0, 0, 100, rotation=math.radians(80)).plausible  # lying down
    person = _pose(100, 100, 120)
    assert person.same_person(_pose(105, 110, 60))  # a torso-only pose inside the same person
    assert not person.same_person(_pose(150, 100, 120))  # the next person along
