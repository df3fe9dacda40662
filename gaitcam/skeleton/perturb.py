"""What other sensors and sites do to a walk: joints never tracked, dropped frames, jitter,
another frame rate, another camera pose, a mirrored image.

`benchmark shift` applies them at fixed settings to probe walks; `random_shift` draws one at
random, over wider ranges, for the training copies `fit-matcher` learns to ignore them from.
Every function works on canonical sequences and returns a new one.
"""
from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import JointState, SkeletonSequence

Perturb = Callable[[SkeletonSequence, np.random.Generator], SkeletonSequence]


def untracked(*joints: str) -> Perturb:
    """These joints never tracked (MISSING in every frame), as many Kinect v2 sites report."""
    index = [CANONICAL.index(j) for j in joints]

    def perturb(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
        j, s = seq.joints.copy(), seq.states.copy()
        j[:, index], s[:, index] = np.nan, JointState.MISSING
        return SkeletonSequence(j, seq.timestamps, seq.layout, s)
    return perturb


def dropped(share: float) -> Perturb:
    """Whole frames lost at random (a busy USB bus, a slow host)."""
    def perturb(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
        keep = rng.random(len(seq)) >= share
        return SkeletonSequence(seq.joints[keep], seq.timestamps[keep], seq.layout, seq.states[keep])
    return perturb


def jitter(metres: float) -> Perturb:
    """Independent Gaussian noise of this standard deviation on every coordinate."""
    def perturb(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
        noise = rng.normal(scale=metres, size=seq.joints.shape).astype(np.float32)
        return SkeletonSequence(seq.joints + noise, seq.timestamps, seq.layout, seq.states)
    return perturb


def frame_rate(rate: float) -> Perturb:
    """The same walk sampled at another frame rate (linear interpolation between frames)."""
    def perturb(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
        t = np.arange(seq.timestamps[0], seq.timestamps[-1], 1.0 / rate)
        right = np.clip(np.searchsorted(seq.timestamps, t, side="right"), 1, len(seq) - 1)
        left = right - 1
        w = ((t - seq.timestamps[left]) / (seq.timestamps[right] - seq.timestamps[left]))[:, None, None]
        joints = (1 - w) * seq.joints[left] + w * seq.joints[right]
        states = np.minimum(seq.states[left], seq.states[right])
        return SkeletonSequence(joints.astype(np.float32), t, seq.layout, states)
    return perturb


def camera_moved(higher: float, tilt_degrees: float) -> Perturb:
    """The sensor mounted `higher` metres up and pitched down by `tilt_degrees`: every point moves
    down by `higher` in the old camera frame, then turns about the camera's x axis."""
    a = np.radians(tilt_degrees)
    rotation = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]], np.float32)

    def perturb(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
        moved = (seq.joints - np.array([0, higher, 0], np.float32)) @ rotation.T
        return SkeletonSequence(moved.astype(np.float32), seq.timestamps, seq.layout, seq.states)
    return perturb


def mirrored(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
    """A mirrored camera: x flips, and a pose estimator names the mirror image's limbs, so the
    person's left side is reported as their right."""
    return seq.mirrored()



_GROUPS = (("HandLeft", "HandRight"), ("HandLeft", "HandRight", "ShoulderCenter"), ("FootLeft", "FootRight"),
           ("Head",), ("ShoulderCenter",), ("HipCenter", "Spine"))


def random_shift(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
    """`seq` under a sensor shift drawn at random: mirrored half of the time, and one of 0.5-4 cm
    jitter, a joint group never tracked, the camera 0.5 m lower to 1 m higher and tilted -20 to 25
    degrees, 10-30 fps, or 2-20 % of frames dropped."""
    if rng.random() < 0.5:
        seq = seq.mirrored()
    kind = rng.integers(5)
    if kind == 0:
        return jitter(float(rng.uniform(0.005, 0.04)))(seq, rng)
    if kind == 1:
        return untracked(*_GROUPS[rng.integers(len(_GROUPS))])(seq, rng)
    if kind == 2:
        return camera_moved(float(rng.uniform(-0.5, 1.0)), float(rng.uniform(-20, 25)))(seq, rng)
    if kind == 3:
        return frame_rate(float(rng.uniform(10, 30)))(seq, rng)
    return dropped(float(rng.uniform(0.02, 0.2)))(seq, rng)


def shifted_copy(seq: SkeletonSequence, key: str, seed: int = 0) -> SkeletonSequence:
    """A matcher's training copy of a walk (any layout): `random_shift` of its canonical form,
    seeded by `key` (its file) and `seed`, so every run draws the same copy."""
    return random_shift(to_canonical(seq), np.random.default_rng([seed, zlib.crc32(key.encode())]))


# The sensor shifts of `benchmark shift`, by name (clean first).
PERTURBATIONS: dict[str, Perturb | None] = {
    "clean": None,
    "hands_untracked": untracked("HandLeft", "HandRight", "ShoulderCenter"),  # and the shoulder centre
    "feet_missing": untracked("FootLeft", "FootRight"),
    "frames_dropped_5": dropped(0.05),
    "frames_dropped_10": dropped(0.10),
    "jitter_1cm": jitter(0.01),
    "jitter_3cm": jitter(0.03),
    "fps_15": frame_rate(15.0),
    "fps_25": frame_rate(25.0),
    "camera_higher_tilted": camera_moved(0.5, 15.0),
    "mirrored": mirrored,
}
DESCRIPTIONS = {
    "clean": "probes as recorded", "hands_untracked": "hands and shoulder centre never tracked",
    "feet_missing": "feet never tracked", "frames_dropped_5": "5 % of frames dropped",
    "frames_dropped_10": "10 % of frames dropped", "jitter_1cm": "1 cm joint jitter", "jitter_3cm": "3 cm joint jitter",
    "fps_15": "15 fps", "fps_25": "25 fps", "camera_higher_tilted": "camera 0.5 m higher, tilted 15 degrees down",
    "mirrored": "left/right mirrored",
}
