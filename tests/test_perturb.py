"""Sensor shifts: each perturbation does what its name says, and only that."""
import numpy as np
import pytest

from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.perturb import DESCRIPTIONS, PERTURBATIONS
from gaitcam.skeleton.sequence import JointState, SkeletonSequence


@pytest.fixture
def seq():
    rng = np.random.default_rng(0)
    joints = (rng.normal(size=(90, 20, 3)) * 0.2 + [0, 1, 3]).astype(np.float32)
    return SkeletonSequence(joints, np.arange(90) / 30, CANONICAL)


def _run(name, seq, seed=0):
    return PERTURBATIONS[name](seq, np.random.default_rng(seed))


def test_every_perturbation_is_described():
    assert list(PERTURBATIONS)[0] == "clean" and PERTURBATIONS["clean"] is None
    assert set(DESCRIPTIONS) == set(PERTURBATIONS) and len(PERTURBATIONS) == 11


def test_untracked_joints(seq):
    out = _run("hands_untracked", seq)
    gone = [CANONICAL.index(j) for j in ("HandLeft", "HandRight", "ShoulderCenter")]
    assert (out.states[:, gone] == JointState.MISSING).all() and np.isnan(out.joints[:, gone]).all()
    assert (out.states == JointState.MISSING).sum() == 3 * 90
    feet = _run("feet_missing", seq)
    assert (feet.states == JointState.MISSING).sum() == 2 * 90


def test_dropped_frames_and_frame_rates(seq):
    kept = [len(_run("frames_dropped_10", seq, s)) for s in range(20)]
    assert 75 < np.mean(kept) < 86
    fifteen = _run("fps_15", seq)
    assert np.allclose(np.diff(fifteen.timestamps), 1 / 15) and len(fifteen) == 45
    np.testing.assert_allclose(fifteen.joints[1], seq.joints[2], atol=1e-6)  # on a shared instant
    twenty_five = _run("fps_25", seq)
    np.testing.assert_allclose(twenty_five.joints[1], 0.8 * seq.joints[1] + 0.2 * seq.joints[2], atol=1e-5)


def test_jitter_has_the_named_size(seq):
    out = _run("jitter_3cm", seq)
    assert np.std(out.joints - seq.joints) == pytest.approx(0.03, rel=0.05)


def test_camera_keeps_the_body_rigid_and_mirror_swaps_sides(seq):
    out = _run("camera_higher_tilted", seq)
    bone = lambda j: np.linalg.norm(j[:, 0] - j[:, 5], axis=-1)  # noqa: E731
    np.testing.assert_allclose(bone(out.joints), bone(seq.joints), rtol=1e-5)
    assert np.mean(out.joints[:, :, 1]) < np.mean(seq.joints[:, :, 1])  # seen from higher up
    mirrored = _run("mirrored", seq)
    left, right = CANONICAL.index("HandLeft"), CANONICAL.index("HandRight")
    np.testing.assert_allclose(mirrored.joints[:, left], seq.joints[:, right] * [-1, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(_run("mirrored", mirrored).joints, seq.joints, rtol=1e-6)  # twice: unchanged


def test_random_shifts_cover_every_kind_and_keep_the_walk_usable(seq):
    from gaitcam.skeleton.perturb import random_shift

    kinds, mirrored = set(), []
    for s in range(80):
        out = random_shift(seq, np.random.default_rng(s))
        assert out.layout == CANONICAL and len(out) > 10
        if len(out) != len(seq) or not np.allclose(np.diff(out.timestamps), 1 / 30):
            kinds.add("time")
            continue
        kinds.add("untracked" if (out.states == JointState.MISSING).any() else "geometry")
        hip = out.joints[:, CANONICAL.index("HipLeft")]
        as_is = np.nanmean(np.abs(hip - seq.joints[:, CANONICAL.index("HipLeft")]))
        flipped = np.nanmean(np.abs(hip - seq.joints[:, CANONICAL.index("HipRight")] * [-1, 1, 1]))
        mirrored.append(flipped < as_is)
    assert kinds == {"time", "untracked", "geometry"}
    assert 0.25 < np.mean(mirrored) < 0.75  # mirrored about half of the time
