"""MediaPipe poses as 3-D bodies: world landmarks placed through a pinhole camera, image
landmarks lifted with depth, joint states, and the frames the RGB sources build from them."""
import numpy as np
import pytest

from gaitcam.sensors.camera import Intrinsics, optical_to_kinect
from gaitcam.sensors.pose2d import Pose2D, Roi
from gaitcam.sensors.pose3d import MAX_DEPTH_OFFSET, BodyPlacer, depth_body, joint_states, pose_frame
from gaitcam.skeleton.layouts import MEDIAPIPE_POSE
from gaitcam.skeleton.sequence import JointState

K = Intrinsics(500.0, 500.0, 320.0, 240.0)
NOSE, LEFT_WRIST, RIGHT_ANKLE = (MEDIAPIPE_POSE.index(j) for j in ("nose", "left_wrist", "right_ankle"))


def _world() -> np.ndarray:
    """33 landmarks of a standing person, metres around the hip centre, optical axes (y down)."""
    rng = np.random.default_rng(3)
    world = np.column_stack([rng.uniform(-0.25, 0.25, 33), np.linspace(-0.8, 0.9, 33), rng.uniform(-0.1, 0.1, 33)])
    world[[23, 24]] = [[-0.1, 0.0, 0.0], [0.1, 0.0, 0.0]]  # the hips, round the origin
    return world


def _project(points: np.ndarray) -> np.ndarray:
    return np.column_stack([K.fx * points[:, 0] / points[:, 2] + K.cx, K.fy * points[:, 1] / points[:, 2] + K.cy])


def _pose(world: np.ndarray, pixels: np.ndarray, visibility=None, presence=None, person: int = 0) -> Pose2D:
    ones = np.full(33, 0.95)
    return Pose2D(pixels, ones if visibility is None else visibility, ones if presence is None else presence,
                  world, Roi(0.0, 0.0, 1.0, 0.0), person)


def test_states_follow_visibility_and_presence():
    visibility, presence = np.full(33, 0.9), np.full(33, 0.9)
    visibility[5], presence[6] = 0.2, 0.1
    states = joint_states(_pose(_world(), np.zeros((33, 2)), visibility, presence))
    assert states[5] == JointState.INFERRED  # in the image, occluded: MediaPipe's guess
    assert states[6] == JointState.MISSING  # outside the image
    assert (np.delete(states, [5, 6]) == JointState.TRACKED).all()


def test_world_landmarks_are_placed_where_the_image_shows_them():
    world, shift = _world(), np.array([0.6, -0.3, 4.0])
    pose = _pose(world, _project(world + shift), person=5)
    body = BodyPlacer(weight=1.0).place(pose, K)
    assert body.track == 5 and body.joints.dtype == np.float32
    np.testing.assert_allclose(body.joints, optical_to_kinect(world + shift), atol=1e-4)
    assert body.joints[NOSE, 1] > body.joints[RIGHT_ANKLE, 1]  # Kinect axes: y up
    # Too few seen landmarks to place a body: none rather than a guess.
    assert BodyPlacer().place(_pose(world, pose.pixels, np.where(np.arange(33) < 4, 0.9, 0.1)), K) is None


def test_each_persons_distance_is_smoothed_along_their_viewing_ray():
    world = _world()
    placer = BodyPlacer(weight=0.25)

    def hips(distance: float, person: int = 1) -> np.ndarray:
        truth = world + [0.5, 0.2, distance]
        body = placer.place(_pose(world, _project(truth), person=person), K)
        return body.joints[[23, 24]].mean(axis=0)

    assert hips(10.0)[2] == pytest.approx(10.0, abs=1e-3)  # the first reading is taken whole
    jumped = hips(12.0)
    assert jumped[2] == pytest.approx(10.5, abs=1e-3)  # a quarter of the way to the new reading
    # Slid along the ray: the hip centre still projects where the image shows it.
    np.testing.assert_allclose(jumped[:2] / jumped[2], [-0.5 / 12.0, -0.2 / 12.0], atol=1e-5)
    assert hips(12.0, person=2)[2] == pytest.approx(12.0, abs=1e-3)  # someone else: their own distance
    assert hips(12.0, person=0)[2] == pytest.approx(12.0, abs=1e-3)  # no person number: not smoothed
    placer.keep_only({2})
    assert hips(14.0)[2] == pytest.approx(14.0, abs=1e-3)  # person 1 was forgotten


def test_distances_move_no_faster_than_people_walk_and_outlast_a_short_loss():
    world = _world()
    placer = BodyPlacer(weight=0.5, max_step=0.25, keep=3)

    def distance(reading: float) -> float:
        body = placer.place(_pose(world, _project(world + [0.5, 0.2, reading]), person=1), K)
        placer.keep_only({1})
        return float(body.joints[[23, 24], 2].mean())

    assert distance(20.0) == pytest.approx(20.0, abs=1e-3)
    assert distance(22.0) == pytest.approx(20.25, abs=1e-3)  # half way would be 21: held to 0.25 m a frame
    assert distance(20.3) == pytest.approx(20.275, abs=1e-3)  # small steps are smoothed as before
    assert placer.distance(1) == pytest.approx(20.275)
    for _ in range(2):  # not followed for two frames: remembered
        placer.keep_only(set())
    assert distance(24.0) == pytest.approx(20.275 + 3 * 0.25, abs=1e-3)  # the limit grows with the frames missed
    for _ in range(4):  # longer than `keep`: forgotten
        placer.keep_only(set())
    assert placer.distance(1) is None and distance(24.0) == pytest.approx(24.0, abs=1e-3)
    with pytest.raises(ValueError):
        BodyPlacer(max_step=0.0)


def test_image_landmarks_are_lifted_with_depth():
    world = _world()
    truth = world + [0.0, 0.0, 3.0]
    pixels = _project(truth)
    depth = np.full((480, 640), 3.0, dtype=np.float32)  # a flat person at 3 m
    x, y = np.round(pixels[LEFT_WRIST]).astype(int)
    depth[y - 3:y + 4, x - 3:x + 4] = 3.0 + MAX_DEPTH_OFFSET + 1.0  # the wall behind a thin wrist
    x, y = np.round(pixels[NOSE]).astype(int)
    depth[y - 3:y + 4, x - 3:x + 4] = 0.0  # a hole: no depth
    pixels[RIGHT_ANKLE] = [700.0, 300.0]  # outside the image
    body = depth_body(_pose(world, pixels), depth, K)
    gone = [LEFT_WRIST, NOSE, RIGHT_ANKLE]
    assert (body.states[gone] == JointState.MISSING).all() and np.isnan(body.joints[gone]).all()
    kept = np.delete(np.arange(33), gone)
    assert (body.states[kept] == JointState.TRACKED).all()
    expected = optical_to_kinect(np.column_stack([(pixels[:, 0] - K.cx) / K.fx * 3, (pixels[:, 1] - K.cy) / K.fy * 3,
                                                  np.full(33, 3.0)]))
    np.testing.assert_allclose(body.joints[kept], expected[kept], atol=1e-5)
    assert depth_body(_pose(world, pixels), np.zeros((480, 640), np.float32), K) is None  # no depth at all


def test_frames_keep_the_bodies_and_their_image_points_together():
    world = _world()
    placed = _pose(world, _project(world + [0.0, 0.0, 3.0]))
    unplaceable = _pose(world, placed.pixels + 1, np.full(33, 0.1))
    image = np.zeros((480, 640, 3), np.uint8)
    frame = pose_frame([unplaceable, placed], lambda p: BodyPlacer().place(p, K), 1.5, 7, image)
    assert frame.layout == MEDIAPIPE_POSE and (frame.time, frame.index) == (1.5, 7) and frame.image is image
    assert len(frame.bodies) == 1 and frame.extras["image_points"].shape == (1, 33, 2)
    np.testing.assert_allclose(frame.extras["image_points"][0], placed.pixels, rtol=1e-6)
    empty = pose_frame([], lambda p: None, 0.0, 0, image)
    assert empty.bodies == [] and empty.extras["image_points"].shape == (0, 33, 2)
