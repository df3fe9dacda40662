"""Body shape: bone lengths, the part of a skeleton that does not change while a person walks.

A Kinect skeleton's bone lengths are noisy per frame (joint jitter, self-occlusion) but their
median over a walk is a stable biometric, and it fails differently from the gait encoding, so
the matcher uses both. Only bones whose two ends the sensor *tracked* count: a derived,
inferred or interpolated joint has a guessed position, and its bone a guessed length. The
median over frames ignores the frames where a bone was not measured and is robust to the few
where a limb was mis-tracked.
"""
from __future__ import annotations

import numpy as np

from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.sequence import mirror_index

BONES = CANONICAL.bone_indices()  # [19, 2] (parent, child)
N_BONES = len(BONES)
# Bones the matcher's shape uses: not those ending in a hand or a foot, the joints Kinect
# tracks worst and many installations never track.
SHAPE_BONES = np.array([b for b, (_, child) in enumerate(BONES)
                        if not CANONICAL.joints[child].startswith(("Hand", "Foot"))])


_TWIN = mirror_index(CANONICAL)
# Each bone's other-side twin: the bone between the twins of its two ends.
MIRROR_BONES = np.array([[tuple(b) for b in BONES].index((_TWIN[p], _TWIN[c])) for p, c in BONES])


def bone_lengths(joints: np.ndarray, tracked: np.ndarray | None = None) -> np.ndarray:
    """Lengths [..., 19] of the canonical bones of joints [..., 20, 3]; NaN where a joint is
    missing or, given `tracked` [..., 20], where either end was not tracked."""
    joints = np.asarray(joints, dtype=np.float32)
    lengths = np.linalg.norm(joints[..., BONES[:, 1], :] - joints[..., BONES[:, 0], :], axis=-1)
    if tracked is not None:
        tracked = np.asarray(tracked, dtype=bool)
        lengths = np.where(tracked[..., BONES[:, 0]] & tracked[..., BONES[:, 1]], lengths, np.nan)
    return lengths


def body_shape(lengths: np.ndarray, mirror: bool = False) -> np.ndarray:
    """Per-bone median [19] over frames of bone lengths [T, 19], ignoring unmeasured (NaN)
    values; a bone never measured is NaN. `mirror`: over the frames and their mirror images
    (each bone pooled with its other-side twin), as the matcher's shape is, so a sensor that
    mirrors gives the same shape."""
    lengths = np.asarray(lengths, dtype=np.float32).reshape(-1, N_BONES)
    if mirror:
        lengths = np.concatenate([lengths, lengths[:, MIRROR_BONES]])
    return column_nanmedian(lengths)


def column_nanmedian(x: np.ndarray) -> np.ndarray:
    """np.nanmedian(x, axis=0) of x [T, C] (NaN for a column with no finite value, without
    numpy's warning), by one sort: NaN sorts last, so each column's finite values come first.
    The matcher takes a body shape at every decision, and np.nanmedian's masked-array path for
    small arrays took 0.33 ms a call, most of the decision's time with 30 people in view."""
    if not len(x):
        return np.full(x.shape[1], np.nan, dtype=x.dtype)
    finite = np.isfinite(x)
    n = finite.sum(axis=0)
    s = np.sort(np.where(finite, x, np.nan), axis=0)  # +-inf counts as unmeasured too
    cols = np.arange(x.shape[1])
    lo, hi = s[np.maximum(n - 1, 0) // 2, cols], s[n // 2, cols]  # the middle one or two (n = 0: NaN)
    return np.where(n > 0, (lo + hi) / 2, np.nan).astype(x.dtype)
