"""Body shape: bone lengths, the part of a skeleton that does not change while a person walks.

A Kinect skeleton's bone lengths are noisy per frame (joint jitter, self-occlusion) but their
median over a walk is a stable biometric, and it fails differently from the gait encoding, so
the matcher uses both. Only bones whose two ends the sensor *tracked* count: a derived,
inferred or interpolated joint has a guessed position, and its bone a guessed length. The
median over frames ignores the frames where a bone was not measured and is robust to the few
where a limb was mis-tracked.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left, insort
from collections import deque

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


class RunningShape:
    """`body_shape(rows, mirror=True)[bones]` of the last `keep` bone-length rows, kept up to
    date as rows come: per bone, its measured values and its twin's in one sorted float32 array,
    so a row costs a few dozen insertions and removals and the shape a lookup per bone, however
    many rows are kept. A live track adds a row per window and the matcher takes its shape at
    every decision: re-sorting 2,048 rows took 1 ms a track, 30 ms a frame with 30 people in
    view. The median is the same to the bit as `body_shape`'s."""

    def __init__(self, keep: int, bones: np.ndarray = SHAPE_BONES) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1 row, got {keep}")
        self.keep = keep
        self.bones = np.asarray(bones)
        self._rows: deque[np.ndarray] = deque()
        self._values = [array("f") for _ in self.bones]  # per bone, sorted (4 bytes a value)
        self._pairs = list(zip(self._values, self.bones.tolist(), MIRROR_BONES[self.bones].tolist()))

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def rows(self) -> np.ndarray:
        """The rows kept [n, 19], oldest first (NaN: not measured)."""
        return np.array(self._rows, np.float32).reshape(-1, N_BONES)

    def extend(self, rows: np.ndarray) -> None:
        """Add bone-length rows [m, 19]; the oldest beyond `keep` are dropped."""
        rows = np.array(rows, np.float32).reshape(-1, N_BONES)  # a copy: the caller's array may change
        if len(rows) > 4 and 32 * len(rows) > len(self._rows) + len(rows):  # many at once (a whole
            # walk: enrolment, evaluation, a gallery's templates): one sort beats row by row
            kept = np.concatenate([self.rows, rows])[-self.keep:]
            self._rows = deque(kept)
            pooled = np.concatenate([kept[:, self.bones], kept[:, MIRROR_BONES[self.bones]]])
            for values, column in zip(self._values, pooled.T):
                values[:] = array("f", np.sort(column[np.isfinite(column)]).tobytes())
            return
        for row in rows:
            if len(self._rows) == self.keep:
                self._remove(self._rows.popleft().tolist())
            self._rows.append(row)
            self._add(row.tolist())

    # NaN and +-inf count as unmeasured, as in column_nanmedian: v - v == 0 only for finite v.
    # Values are float32 read back as Python floats, exactly, so a removal finds its insertion.
    def _add(self, lengths: list[float]) -> None:
        for values, bone, twin in self._pairs:
            if (v := lengths[bone]) - v == 0.0:
                insort(values, v)
            if (v := lengths[twin]) - v == 0.0:
                insort(values, v)

    def _remove(self, lengths: list[float]) -> None:
        for values, bone, twin in self._pairs:
            if (v := lengths[bone]) - v == 0.0:
                del values[bisect_left(values, v)]
            if (v := lengths[twin]) - v == 0.0:
                del values[bisect_left(values, v)]

    def shape(self) -> np.ndarray:
        """Per-bone median [len(bones)] (float32; NaN for a bone never measured)."""
        lo = np.array([v[(len(v) - 1) // 2] if v else np.nan for v in self._values], np.float32)
        hi = np.array([v[len(v) // 2] if v else np.nan for v in self._values], np.float32)
        return (lo + hi) / 2
