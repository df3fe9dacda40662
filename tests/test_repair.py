"""Deriving joints a sensor did not track: the rules, their order, their accuracy on a real
skeleton, and that nothing underivable is invented."""
import numpy as np
import pytest

from conftest import KGBD_ROOT
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.repair import DERIVABLE, RULES, derive_missing, mark_missing
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import JointState


def test_every_rule_is_affine_and_names_canonical_joints():
    for joint, rules in RULES.items():
        assert joint in CANONICAL.joints
        for rule in rules:
            assert sum(w for _, w in rule) == pytest.approx(1.0, abs=2e-3)  # moves and turns with the body
            assert all(j in CANONICAL.joints and j != joint for j, _ in rule)
    assert not DERIVABLE & {"KneeLeft", "ElbowRight", "WristLeft", "ShoulderRight", "AnkleLeft", "HipLeft"}


def test_non_finite_or_flagged_joints_become_missing():
    joints = np.ones((2, 20, 3), np.float32)
    joints[0, 4, 1] = np.inf
    states = np.full((2, 20), JointState.TRACKED, np.int8)
    states[1, 7] = JointState.MISSING
    j, s = mark_missing(joints, states)
    assert s[0, 4] == s[1, 7] == JointState.MISSING and np.isnan(j[0, 4]).all() and np.isnan(j[1, 7]).all()
    assert (s == JointState.MISSING).sum() == 2 and joints[0, 4, 1] == np.inf  # the input is untouched


def test_a_chain_of_missing_trunk_joints_is_derived_in_order():
    """HipCenter and Spine both missing: HipCenter from the hips alone, then Spine from it."""
    rng = np.random.default_rng(0)
    joints = rng.normal(size=(20, 3)).astype(np.float32)
    states = np.full(20, JointState.TRACKED, np.int8)
    for name in ("HipCenter", "Spine"):
        joints[CANONICAL.index(name)] = np.nan
        states[CANONICAL.index(name)] = JointState.MISSING
    j, s = derive_missing(joints, states)
    hip, spine = CANONICAL.index("HipCenter"), CANONICAL.index("Spine")
    assert s[hip] == s[spine] == JointState.DERIVED and np.isfinite(j).all()
    expected_hip = 0.489 * joints[CANONICAL.index("HipLeft")] + 0.511 * joints[CANONICAL.index("HipRight")]
    np.testing.assert_allclose(j[hip], expected_hip, rtol=1e-5)


def test_an_arm_without_a_wrist_keeps_its_hand_missing():
    joints = np.ones((3, 20, 3), np.float32)
    states = np.full((3, 20), JointState.TRACKED, np.int8)
    for name in ("WristLeft", "HandLeft"):
        states[:, CANONICAL.index(name)] = JointState.MISSING
    j, s = derive_missing(*mark_missing(joints, states))
    assert (s[:, CANONICAL.index("HandLeft")] == JointState.MISSING).all()
    assert np.isnan(j[:, CANONICAL.index("HandLeft")]).all()


@pytest.mark.skipif(not KGBD_ROOT.exists(), reason="KGBD data not available")
def test_derived_joints_land_near_the_measured_ones_on_a_real_walk():
    from gaitcam.recording.kgbd import read_kgbd

    seq = to_canonical(read_kgbd(KGBD_ROOT / "Data" / "Person010" / "2.txt.gz"))
    for name, limit in (("HandLeft", 0.06), ("ShoulderCenter", 0.09), ("HipCenter", 0.03), ("Head", 0.13)):
        i = CANONICAL.index(name)
        joints, states = mark_missing(seq.joints, seq.states)
        joints[:, i], states[:, i] = np.nan, JointState.MISSING
        j, s = derive_missing(joints, states)
        err = np.linalg.norm(j[:, i] - seq.joints[:, i], axis=-1)
        assert (s[:, i] == JointState.DERIVED).all() and np.median(err) < limit, (name, np.median(err))
