"""Training data for the encoder: skeleton sequences -> normalised windows, split by sequence."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gaitcam.skeleton.normalize import normalize_windows
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import SkeletonSequence
from gaitcam.skeleton.windows import cut_windows, gather_windows


@dataclass
class WindowSet:
    """Windows [N, f, 20, 3] float32 (normalised) with the sequence each came from."""

    windows: np.ndarray
    sequence: np.ndarray  # [N] index into the list of sequences
    skipped: int = 0  # windows dropped for missing joints
    jumps: int = 0  # windows dropped for a physically impossible joint jump

    def __len__(self) -> int:
        return len(self.windows)

    def subset(self, mask: np.ndarray) -> WindowSet:
        return WindowSet(self.windows[mask], self.sequence[mask])


# Faster than any joint of a walking (or running) person moves: above it the sensor has
# jumped to a wrong pose. On KGBD, 2 % of windows exceed 15 m/s (some jump 2.9 m in one frame)
# and, left in, the top 1 % of windows carried 37 % of the reconstruction loss.
MAX_JOINT_SPEED = 15.0  # m/s


def windows_from_sequences(
    sequences: list[SkeletonSequence],
    f: int,
    stride: int,
    normalization: str,
    trim: int = 0,
    max_speed: float | None = MAX_JOINT_SPEED,
) -> WindowSet:
    """Cut every sequence (retargeted to canonical) into gap-free windows and normalise them.

    `trim` frames are dropped at both ends of each sequence first: the original preprocessing
    cut 10 (spec §1.5), where the sensor is still locking on. Windows with a missing joint, or
    with a joint moving faster than `max_speed` (a tracking glitch), are dropped and counted:
    the model never trains on NaN, invented zeros or teleporting skeletons. The counts are in
    the result; the caller says what they mean for its task.
    """
    parts, owners, skipped, jumps = [], [], 0, 0
    for i, seq in enumerate(sequences):
        seq = to_canonical(seq)
        joints, times = seq.joints[trim : len(seq) - trim], seq.timestamps[trim : len(seq) - trim]
        starts = cut_windows(joints, times, f=f, stride=stride)
        if len(starts) == 0:
            continue
        w = gather_windows(joints, starts, f)
        complete = ~np.isnan(w).any(axis=(1, 2, 3))
        keep = complete
        if max_speed is not None:
            step = np.linalg.norm(np.diff(w, axis=1), axis=-1).max(axis=2)  # [N, f-1] metres
            dt = np.diff(gather_windows(times[:, None, None], starts, f)[..., 0, 0], axis=1)
            plausible = (step <= max_speed * dt).all(axis=1)
            jumps += int((complete & ~plausible).sum())
            keep = complete & plausible
        skipped += int((~complete).sum())
        parts.append(w[keep])
        owners.append(np.full(int(keep.sum()), i, dtype=np.int64))
    if not parts:
        return WindowSet(np.zeros((0, f, 20, 3), np.float32), np.zeros(0, np.int64), skipped, jumps)
    windows = normalize_windows(np.concatenate(parts), normalization)
    return WindowSet(windows, np.concatenate(owners), skipped, jumps)


def validation_split(data: WindowSet, fraction: float, seed: int) -> tuple[WindowSet, WindowSet]:
    """Hold out whole sequences (walks), never single windows.

    Windows at the training stride overlap their neighbours, so a random-window split would
    validate on near-copies of training data. With one sequence only, its last `fraction` of
    windows is held out instead, after a gap of one window length.
    """
    seqs = np.unique(data.sequence)
    if len(seqs) >= 2:
        n_val = min(len(seqs) - 1, max(1, round(fraction * len(seqs))))
        val_seqs = np.random.default_rng(seed).choice(seqs, size=n_val, replace=False)
        is_val = np.isin(data.sequence, val_seqs)
        return data.subset(~is_val), data.subset(is_val)
    n = len(data)
    cut = int(n * (1 - fraction))
    f = data.windows.shape[1]
    index = np.arange(n)
    return data.subset(index < max(0, cut - f)), data.subset(index >= cut)
