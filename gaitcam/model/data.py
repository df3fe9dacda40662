"""Training data for the encoder: skeleton sequences -> normalised windows, split by sequence."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from gaitcam.skeleton.normalize import normalize_windows
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import SkeletonSequence
from gaitcam.skeleton.windows import cut_windows, gather_windows

log = logging.getLogger(__name__)


@dataclass
class WindowSet:
    """Windows [N, f, 20, 3] float32 (normalised) with the sequence each came from."""

    windows: np.ndarray
    sequence: np.ndarray  # [N] index into the list of sequences
    skipped: int = 0  # windows dropped for missing joints

    def __len__(self) -> int:
        return len(self.windows)

    def subset(self, mask: np.ndarray) -> WindowSet:
        return WindowSet(self.windows[mask], self.sequence[mask])


def windows_from_sequences(
    sequences: list[SkeletonSequence], f: int, stride: int, normalization: str, trim: int = 0
) -> WindowSet:
    """Cut every sequence (retargeted to canonical) into gap-free windows and normalise them.

    `trim` frames are dropped at both ends of each sequence first: the original preprocessing
    cut 10 (spec §1.5), where the sensor is still locking on (KGBD walks often start with a
    few glitched frames). Windows with a missing joint are dropped and counted: the model
    never trains on NaN or on invented zeros.
    """
    parts, owners, skipped = [], [], 0
    for i, seq in enumerate(sequences):
        seq = to_canonical(seq)
        joints, times = seq.joints[trim : len(seq) - trim], seq.timestamps[trim : len(seq) - trim]
        starts = cut_windows(joints, times, f=f, stride=stride)
        if len(starts) == 0:
            continue
        w = gather_windows(joints, starts, f)
        complete = ~np.isnan(w).any(axis=(1, 2, 3))
        skipped += int((~complete).sum())
        parts.append(w[complete])
        owners.append(np.full(int(complete.sum()), i, dtype=np.int64))
    if skipped:
        log.warning("dropped %d windows with missing joints", skipped)
    if not parts:
        return WindowSet(np.zeros((0, f, 20, 3), np.float32), np.zeros(0, np.int64), skipped)
    windows = normalize_windows(np.concatenate(parts), normalization)
    return WindowSet(windows, np.concatenate(owners), skipped)


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
