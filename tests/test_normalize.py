"""Normalisation: the body frame removes position, camera height, tilt and heading."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gaitcam.skeleton.normalize import body_frames, normalize_windows


def _walker(n=4, f=6, seed=0):
    """Plausible windows: a standing skeleton shape plus small motion, in metres."""
    rng = np.random.default_rng(seed)
    base = np.array([
        [0, 0.9, 0], [0, 1.1, 0], [0, 1.4, 0], [0, 1.6, 0],
        [0.18, 1.38, 0], [0.25, 1.1, 0], [0.28, 0.85, 0], [0.29, 0.78, 0],
        [-0.18, 1.38, 0], [-0.25, 1.1, 0], [-0.28, 0.85, 0], [-0.29, 0.78, 0],
        [0.1, 0.85, 0], [0.1, 0.47, 0.02], [0.1, 0.08, 0], [0.1, 0.03, 0.1],
        [-0.1, 0.85, 0], [-0.1, 0.47, -0.02], [-0.1, 0.08, 0], [-0.1, 0.03, 0.1],
    ])
    motion = 0.03 * rng.standard_normal((n, f, 20, 3))
    return (base[None, None] + motion).astype(np.float32)


def test_raw_is_identity_and_centred_zeroes_the_hip():
    w = _walker()
    assert np.array_equal(normalize_windows(w, "raw"), w)
    c = normalize_windows(w + 5.0, "centred")
    assert np.allclose(c[..., 0, :], 0)


def test_body_frame_is_invariant_to_camera_pose():
    w = _walker()
    camera = Rotation.from_euler("xyz", [25, -70, 8], degrees=True)  # tilt, heading, roll
    moved = camera.apply(w.reshape(-1, 3)).reshape(w.shape) + [1.5, -0.7, 3.2]
    a, b = normalize_windows(w, "body"), normalize_windows(moved.astype(np.float32), "body")
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_body_frame_axes_are_lateral_up_forward():
    n = normalize_windows(_walker(), "body")
    assert np.allclose(n[..., 0, :].mean(axis=1), 0, atol=1e-5)  # window-mean hip centre at 0
    assert (n[..., 3, 1] > 0.5).all()  # head is up
    assert (n[..., 4, 0] > 0).all()  # left shoulder on +x


def test_missing_joint_stays_nan_and_spares_the_rest():
    w = _walker()
    w[0, 2, 7] = np.nan
    n = normalize_windows(w, "body")
    assert np.isnan(n[0, 2, 7]).all()
    assert np.isfinite(np.delete(n[0].reshape(-1, 3), 2 * 20 + 7, axis=0)).all()


def test_body_frame_coordinates_are_the_rotation_applied_as_einsum_would():
    """The encoder was trained on these coordinates: the faster products sum in einsum's order
    (to the bit on the development machine; a micrometre allowed for other SIMD paths)."""
    rng = np.random.default_rng(3)
    for shape in [(1, 6, 20, 3), (40, 6, 20, 3), (7, 32, 20, 3), (6, 20, 3)]:
        windows = (rng.normal(size=shape) * 2).astype(np.float32)
        windows[..., 3, :] += 0.5  # a spine of some length
        origin, rotation = body_frames(windows)
        expected = np.einsum("...ij,...tkj->...tki", rotation, windows - origin[..., None, None, :])
        np.testing.assert_allclose(normalize_windows(windows, "body"), expected, rtol=0, atol=1e-6)


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown normalisation"):
        normalize_windows(_walker(), "zscore")
