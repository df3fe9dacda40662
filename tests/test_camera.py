"""Shared camera geometry: the optical -> Kinect axis change and pinhole deprojection."""
import numpy as np
import pytest

from gaitcam.sensors.camera import Intrinsics, deproject, optical_to_kinect


def test_optical_axes_become_kinect_axes_by_a_half_turn():
    # A point right of, below and in front of an optical camera is, for a Kinect, to its
    # right (-x: Kinect's +x is the sensor's left), below (-y) and in front (+z).
    np.testing.assert_array_equal(optical_to_kinect(np.array([0.5, 0.2, 3.0])), [-0.5, -0.2, 3.0])
    points = np.random.default_rng(0).normal(size=(4, 7, 3)).astype(np.float32)
    turned = optical_to_kinect(points)
    assert turned.dtype == np.float32 and turned.shape == points.shape
    np.testing.assert_array_equal(optical_to_kinect(turned), points)  # its own inverse
    # A rotation, not a mirror: handedness (the sign of a triple product) is kept.
    a, b, c = points[0, :3]
    ta, tb, tc = turned[0, :3]
    assert np.sign(np.dot(np.cross(a, b), c)) == np.sign(np.dot(np.cross(ta, tb), tc))


def test_intrinsics_from_a_field_of_view():
    k = Intrinsics.from_fov(640, 480, 90.0)
    assert (k.fx, k.fy, k.cx, k.cy) == pytest.approx((320.0, 320.0, 320.0, 240.0))


def test_deproject_matches_librealsense():
    rs = pytest.importorskip("pyrealsense2", reason="pyrealsense2 needs libusb-1.0 (apt-get install libusb-1.0-0)")
    k = rs.intrinsics()
    k.width, k.height, k.fx, k.fy, k.ppx, k.ppy = 640, 480, 610.0, 605.0, 318.5, 243.0
    k.model, k.coeffs = rs.distortion.none, [0.0] * 5
    pixels = np.array([[0.0, 0.0], [318.5, 243.0], [600.2, 401.7], [-40.0, 500.0]])
    depth = np.array([1.0, 2.5, 3.25, 4.0])
    ours = deproject(pixels, depth, Intrinsics(k.fx, k.fy, k.ppx, k.ppy))
    theirs = [rs.rs2_deproject_pixel_to_point(k, list(p), float(z)) for p, z in zip(pixels, depth)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    assert np.isnan(deproject(pixels[:1], np.array([np.nan]), Intrinsics(1, 1, 0, 0))).all()
