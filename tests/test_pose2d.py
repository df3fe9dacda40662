"""Multi-person MediaPipe pose on real pixels (messi5.jpg, basketball1.png, vtest.avi), and the
ROI and person-merging rules it is built from."""
import math
from types import SimpleNamespace

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


def test_thresholds_are_set_in_mediapipes_own_graphs():
    from mediapipe.calculators.tensor.tensors_to_detections_calculator_pb2 import TensorsToDetectionsCalculatorOptions

    from gaitcam.sensors.base import SourceError
    from gaitcam.sensors.pose2d import _DETECTION_GRAPH, _expanded, _set_option

    config = _expanded(_DETECTION_GRAPH)
    assert "PoseDetectionCpu" not in {node.calculator for node in config.node}  # its calculators instead
    _set_option(config, "TensorsToDetectionsCalculator", TensorsToDetectionsCalculatorOptions, "min_score_thresh", 0.3)
    (node,) = [n for n in config.node if n.calculator == "TensorsToDetectionsCalculator"]
    assert node.options.Extensions[TensorsToDetectionsCalculatorOptions.ext].min_score_thresh == pytest.approx(0.3)
    with pytest.raises(SourceError, match="0 NoSuchCalculator nodes"):
        _set_option(config, "NoSuchCalculator", TensorsToDetectionsCalculatorOptions, "min_score_thresh", 0.3)
    with pytest.raises(ValueError):
        PoseEstimator(min_detection=1.5)


def test_grids_of_tiles_cover_the_frame_at_each_scale():
    grid = SimpleNamespace(tiles=(3, 6))
    windows = PoseEstimator._windows(grid, 768, 576)
    assert len(windows) == 1 + 9 + 36 and windows[0] == (0, 0, 768, 576)
    assert {(w, h) for _, _, w, h in windows[1:10]} == {(384, 288)}
    assert {(w, h) for _, _, w, h in windows[10:]} == {(219, 164)}
    for x, y, w, h in windows:
        assert x >= 0 and y >= 0 and x + w <= 768 and y + h <= 576


def test_a_second_look_finds_the_person_beside_someone_found():
    frame = _vtest_frames(21)[20]  # four people, two of them walking side by side on the right
    once = PoseEstimator(tiles=6, min_detection=0.3)
    first = once.process(frame)
    once.close()
    twice = PoseEstimator(tiles=6, min_detection=0.3, second_look=True)
    second = twice.process(frame)
    twice.close()
    assert len(first) == 3 and len(second) == 4
    (new,) = [p for p in second if not any(p.same_person(q) for q in first)]
    nearest = min(np.hypot(*(_hips(new) - _hips(p))) for p in first)
    assert nearest < 40  # beside someone already found, and not a copy of them (boxes apart)


def test_painting_people_over_hides_them_and_nothing_else():
    from gaitcam.sensors.pose2d import _box, _overlaps, _paint_over

    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 100:130] = 255  # a bright person
    person = _pose(100, 50, 100)  # landmarks over x 100-133, y 50-150
    x0, y0, x1, y1 = _box(person)
    assert (x0, y0, x1, y1) == pytest.approx((90, 40, 143.3, 160), abs=0.1)  # a tenth of the height round it
    hidden = _paint_over(image, [person])
    assert hidden[50:150, 100:130].max() < 255 and (hidden[:, :80] == 0).all() and (image[50:150, 100:130] == 255).all()
    assert _overlaps((0, 0, 100, 100), _box(person)) and not _overlaps((200, 0, 100, 100), _box(person))


def _numbering_only(relink: int) -> PoseEstimator:
    """An estimator's numbering state without its MediaPipe graphs (not needed to number poses)."""
    est = PoseEstimator.__new__(PoseEstimator)
    est.relink = relink
    est._followed, est._motion, est._lost, est._frame, est._people = [], {}, {}, 0, 0
    return est


def _frame(est: PoseEstimator, poses: list[Pose2D]) -> list[int]:
    """One frame's numbering: followed poses keep their number, newcomers get one."""
    kept = est._merge([], poses)
    est._remember(kept)
    est._frame += 1
    return [p.person for p in kept]


def test_someone_found_again_after_a_moment_keeps_their_number():
    est = _numbering_only(relink=15)
    walker, other = _pose(100, 100, 120), _pose(400, 100, 120)
    assert _frame(est, [walker, other]) == [1, 2]
    for x in (108, 116):  # walking right at 8 px a frame
        walker, other = _pose(x, 100, 120), _pose(400, 100, 120)
        walker.person, other.person = 1, 2
        _frame(est, [walker, other])
    for _ in range(4):  # the walker is lost for four frames
        other = _pose(400, 100, 120)
        other.person = 2
        _frame(est, [other])
    found, stranger = _pose(116 + 5 * 8, 100, 120), _pose(250, 100, 120)  # where they would be now; a newcomer
    other.person = 2
    assert _frame(est, [other, found, stranger]) == [2, 1, 3]
    late = _numbering_only(relink=2)
    _frame(late, [_pose(100, 100, 120)])
    for _ in range(3):
        _frame(late, [])
    assert _frame(late, [_pose(100, 100, 120)]) == [2]  # lost too long: a new number
