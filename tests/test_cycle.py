"""Gait-cycle spectra: invariant to where and which way a person walks, sensitive to how."""
import numpy as np

from gaitcam.skeleton.cycle import BANDS, CYCLE_DIM, CYCLE_JOINTS, cycle_descriptor, segment_spectra
from gaitcam.skeleton.layouts import CANONICAL


def _walker(swing: float, cadence: float = 1.0, offset=(0.0, 0.0, 2.0), turn: float = 0.0) -> np.ndarray:
    """One 32-frame segment: a T-shaped body whose knees and wrists swing at `cadence` Hz."""
    t = np.arange(32) / 30.0
    base = np.zeros((20, 3), np.float32)
    for name, (x, y) in {"HipCenter": (0, 1.0), "Spine": (0, 1.1), "ShoulderCenter": (0, 1.5), "Head": (0, 1.7),
                         "HipLeft": (0.1, 1.0), "HipRight": (-0.1, 1.0), "ShoulderLeft": (0.2, 1.45),
                         "ShoulderRight": (-0.2, 1.45), "KneeLeft": (0.1, 0.5), "KneeRight": (-0.1, 0.5),
                         "WristLeft": (0.25, 0.8), "WristRight": (-0.25, 0.8)}.items():
        base[CANONICAL.index(name)] = (x, y, 0)
    seg = np.repeat(base[None], 32, axis=0)
    phase = 2 * np.pi * cadence * t
    for name, sign in (("KneeLeft", 1), ("KneeRight", -1), ("WristLeft", -1), ("WristRight", 1)):
        seg[:, CANONICAL.index(name), 2] += sign * swing * np.sin(phase)
    c, s = np.cos(turn), np.sin(turn)
    seg = seg @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32).T
    return seg + np.array(offset, np.float32)


def test_shape_and_no_hands_or_feet():
    assert CYCLE_DIM == len(CYCLE_JOINTS) * 3 * BANDS == 16 * 18
    assert not {CANONICAL.joints[i] for i in CYCLE_JOINTS} & {"HandLeft", "HandRight", "FootLeft", "FootRight"}
    assert segment_spectra(np.zeros((0, 32, 20, 3))).shape == (0, CYCLE_DIM)


def test_where_and_which_way_do_not_matter_how_does():
    a = segment_spectra(_walker(0.2)[None])[0]
    moved = segment_spectra(_walker(0.2, offset=(1.0, 0.0, 3.5), turn=1.2)[None])[0]
    np.testing.assert_allclose(moved, a, atol=1e-4)
    wider = segment_spectra(_walker(0.3)[None])[0]
    faster = segment_spectra(_walker(0.2, cadence=2.0)[None])[0]
    assert np.abs(wider - a).max() > 0.05 and np.abs(faster - a).max() > 0.05


def test_descriptor_is_the_log_mean_spectrum():
    spectra = segment_spectra(np.stack([_walker(0.2), _walker(0.3)]))
    np.testing.assert_allclose(cycle_descriptor(spectra.sum(0), 2), np.log(spectra.mean(0) + 1e-4), rtol=1e-5)
