"""Calibration: sensor floor planes, floor fits that recover a tilted, shifted camera, refusals of
recordings that cannot fix a floor, and the JSON file round trip."""
import json

import numpy as np
import pytest

from gaitcam.errors import GaitcamError
from gaitcam.sensors.demo import DEMO_CAMERA_HEIGHT, DEMO_FLOOR, demo_walk
from gaitcam.skeleton.layouts import CANONICAL, KINECT_V2
from gaitcam.skeleton.sequence import SkeletonSequence
from gaitcam.stream.calibration import (
    Calibration, CalibrationError, calibration_path, estimate_floor, lowest_feet,
)

ANKLE_L, FOOT_L, ANKLE_R, FOOT_R = (CANONICAL.index(j) for j in ("AnkleLeft", "FootLeft", "AnkleRight", "FootRight"))


def _rotation(pitch: float, roll: float, yaw: float) -> np.ndarray:
    """Floor -> camera rotation for a camera pitched, rolled and turned by these angles (rad)."""
    cx, sx, cz, sz, cy, sy = np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll), np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return rx @ rz @ ry


def _walks_seen_by(rotation: np.ndarray, camera: np.ndarray, n: int = 600, seed: int = 0) -> SkeletonSequence:
    """People walking over the floor (y = 0) in floor coordinates, as a camera at `camera` sees them.

    Per frame one foot stands on the floor anywhere in the room; the other swings up to 25 cm
    above it; the rest of the body is above; 3 mm sensor noise; a few glitches below the floor.
    """
    rng = np.random.default_rng(seed)
    stance = np.stack([rng.uniform(-2, 2, n), np.zeros(n), rng.uniform(1.5, 5, n)], axis=1)
    swing = stance + np.stack([np.zeros(n), rng.uniform(0.03, 0.25, n), rng.uniform(-0.4, 0.4, n)], axis=1)
    ankle = np.array([0.0, 0.07, 0.0])
    joints = stance[:, None] + np.array([0.0, 1.0, 0.0]) * rng.uniform(0.3, 1.7, (n, 20, 1))
    joints[:, FOOT_L], joints[:, ANKLE_L] = stance, stance + ankle
    joints[:, FOOT_R], joints[:, ANKLE_R] = swing, swing + ankle
    joints += rng.normal(0, 0.003, joints.shape)
    joints[rng.choice(n, 10, replace=False), FOOT_L, 1] -= rng.uniform(0.1, 0.4, 10)  # glitches
    camera_joints = (joints - camera) @ rotation.T
    return SkeletonSequence(camera_joints, np.arange(n) / 15.0, CANONICAL)


@pytest.mark.parametrize("pitch, roll, yaw, height", [(0.25, 0.0, 0.0, 1.1), (-0.1, 0.12, 0.5, 2.4)])
def test_floor_fit_recovers_a_tilted_shifted_camera(pitch, roll, yaw, height):
    rotation = _rotation(pitch, roll, yaw)
    camera = np.array([0.3, height, -0.2])
    seq = _walks_seen_by(rotation, camera)
    cal = estimate_floor([seq], sensor="kinect")
    true_up = rotation @ [0.0, 1.0, 0.0]  # floor "up" in camera coordinates
    angle = np.degrees(np.arccos(np.clip(cal.rotation[1] @ true_up, -1, 1)))
    assert angle < 0.5
    assert cal.translation[1] == pytest.approx(height, abs=0.005)  # the camera's height
    floor_points = (np.array([[1.0, 0, 2], [-1.5, 0, 4.5], [0, 0, 3]]) - camera) @ rotation.T
    assert np.abs(cal.apply(floor_points)[:, 1]).max() < 0.005
    assert cal.sensor == "kinect" and cal.fps == pytest.approx(15.0) and "floor fit" in cal.source


def test_floor_fit_on_demo_walks_finds_the_demo_floor():
    cal = estimate_floor([demo_walk("Ada", 1, 30), demo_walk("Ben", 2, 30)])
    angle = np.degrees(np.arccos(cal.rotation[1] @ np.array(DEMO_FLOOR[:3])))
    assert angle < 1.0
    # The demo's Foot joint stands a few centimetres above the floor, like Kinect's.
    assert 0.0 < DEMO_CAMERA_HEIGHT - cal.translation[1] < 0.06


def test_a_single_straight_walk_or_too_few_frames_cannot_fix_a_floor():
    seq = _walks_seen_by(np.eye(3), np.array([0.0, 1.0, 0.0]))
    line = seq.joints.copy()
    line[..., 0] = np.random.default_rng(1).normal(0, 0.02, line.shape[:2])  # everyone on one line
    with pytest.raises(CalibrationError, match="walk in several directions"):
        estimate_floor([SkeletonSequence(line, seq.timestamps, CANONICAL)])
    with pytest.raises(GaitcamError, match="only 10 frames"):
        estimate_floor([SkeletonSequence(seq.joints[:10], seq.timestamps[:10], CANONICAL)])


def test_lowest_feet_use_each_layouts_foot_joints_and_skip_frames_without_feet():
    joints = np.random.default_rng(0).uniform(0, 1, (3, KINECT_V2.n_joints, 3)).astype(np.float32)
    foot = KINECT_V2.index("FootRight")
    joints[:, foot, 1] = -1.0
    joints[2, [KINECT_V2.index(j) for j in ("AnkleLeft", "FootLeft", "AnkleRight", "FootRight")]] = np.nan
    points = lowest_feet(SkeletonSequence(joints, np.arange(3), KINECT_V2))
    np.testing.assert_array_equal(points, joints[:2, foot])


def test_sensor_floor_plane():
    cal = Calibration.from_floor_plane(DEMO_FLOOR, sensor="demo")
    np.testing.assert_allclose(cal.apply(np.zeros(3)), [0, DEMO_CAMERA_HEIGHT, 0], atol=1e-6)
    np.testing.assert_allclose(cal.floor_plane, DEMO_FLOOR, atol=1e-12)
    assert np.linalg.det(cal.rotation) == pytest.approx(1.0)
    np.testing.assert_allclose(cal.rotation[0], [1, 0, 0])  # the camera's x stays x
    scaled = Calibration.from_floor_plane(2 * np.array(DEMO_FLOOR))  # any scale of the plane
    np.testing.assert_allclose(scaled.rotation, cal.rotation)
    np.testing.assert_allclose(scaled.translation, cal.translation)
    assert np.isnan(cal.apply(np.full((2, 3), np.nan))).all()
    with pytest.raises(CalibrationError):
        Calibration.from_floor_plane((0, 0, 0, 1))


def test_identity_by_default():
    points = np.random.default_rng(0).normal(size=(4, 20, 3)).astype(np.float32)
    np.testing.assert_array_equal(Calibration().apply(points), points)


def test_save_and_load(tmp_path):
    cal = Calibration.from_floor_plane(DEMO_FLOOR, sensor="kinect", source="test")
    cal.fps = 29.9
    path = cal.save(calibration_path("kinect", tmp_path / "calibration"))
    assert path == tmp_path / "calibration" / "kinect.json"
    data = json.loads(path.read_text())
    assert data["format"] == "gaitcam-calibration" and data["fps"] == 29.9 and data["sensor"] == "kinect"
    assert data == cal.to_dict() and np.allclose(data["floor"], DEMO_FLOOR)  # what replay reads from a recording
    back = Calibration.load(path)
    np.testing.assert_allclose(back.rotation, cal.rotation)
    np.testing.assert_allclose(back.translation, cal.translation)
    assert (back.sensor, back.fps, back.source) == ("kinect", 29.9, "test")


@pytest.mark.parametrize("content", ["{not json", '{"format": "other"}', '{"format": "gaitcam-calibration", "version": 1}',
                                     '{"format": "gaitcam-calibration", "version": 1, "rotation": [[2,0,0],[0,1,0],[0,0,1]], "translation": [0,0,0]}'])
def test_bad_files_name_themselves_in_one_line(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(CalibrationError, match="bad.json: cannot read calibration") as e:
        Calibration.load(path)
    assert "\n" not in str(e.value)
    with pytest.raises(CalibrationError, match="missing.json"):
        Calibration.load(tmp_path / "missing.json")
