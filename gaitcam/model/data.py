"""Training data for the encoder: skeleton sequences -> normalised windows, split by sequence."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gaitcam.skeleton.normalize import normalize_windows
from gaitcam.skeleton.sequence import SkeletonSequence
from gaitcam.skeleton.windows import WindowRule, WindowStats, track_windows


@dataclass
class WindowSet:
    """Windows [N, f, 20, 3] float32 (normalised) with the sequence each came from."""

    windows: np.ndarray
    sequence: np.ndarray  # [N] index into the list of sequences
    stats: WindowStats = field(default_factory=WindowStats)  # what the window rule dropped, and why

    def __len__(self) -> int:
        return len(self.windows)

    def subset(self, mask: np.ndarray) -> WindowSet:
        return WindowSet(self.windows[mask], self.sequence[mask])


def windows_from_sequences(
    sequences: list[SkeletonSequence],
    f: int,
    stride: int,
    normalization: str,
    trim: int = 0,
    rule: WindowRule | None = None,
) -> WindowSet:
    """Cut every sequence through the one window rule (`skeleton.windows`) and normalise.

    `trim` frames are dropped at both ends of each sequence first: the original preprocessing
    cut 10 (spec §1.5), where the sensor is still locking on. The rule derives or bridges what
    it can and drops the rest (joints missing too long, joints jumping faster than a person
    moves), counted in the result's stats: the model never trains on NaN, invented zeros or
    teleporting skeletons. `rule` overrides the default rule (f and stride still apply).
    """
    rule = WindowRule(f=f, stride=stride) if rule is None else rule
    parts, owners, stats = [], [], WindowStats()
    for i, seq in enumerate(sequences):
        end = len(seq) - trim
        if end <= trim:
            continue
        seq = SkeletonSequence(seq.joints[trim:end], seq.timestamps[trim:end], seq.layout,
                               seq.states[trim:end], seq.source)
        tw = track_windows(seq, rule)
        stats.add(tw.stats)
        parts.append(tw.joints)
        owners.append(np.full(len(tw), i, dtype=np.int64))
    if not parts or not sum(len(p) for p in parts):
        return WindowSet(np.zeros((0, rule.f, 20, 3), np.float32), np.zeros(0, np.int64), stats)
    windows = normalize_windows(np.concatenate(parts), normalization)
    return WindowSet(windows, np.concatenate(owners), stats)


def validation_split(data: WindowSet, fraction: float, seed: int) -> tuple[WindowSet, WindowSet]:
    """Hold out whole sequences (walks), never single windows.

    Windows at the training stride overlap their neighbours, so a random-window split would
    validate on near-copies of training data. With one sequence only, its last `fraction` of
    windows is held out instead, after a gap of one window length.
    """
    seqs = np.unique(data.sequence)
    if len(seqs) >= 2:
        is_val = np.isin(data.sequence, seqs[held_out(len(seqs), fraction, seed)])
        return data.subset(~is_val), data.subset(is_val)
    n = len(data)
    cut = int(n * (1 - fraction))
    f = data.windows.shape[1]
    index = np.arange(n)
    return data.subset(index < max(0, cut - f)), data.subset(index >= cut)


def held_out(n: int, fraction: float, seed: int) -> np.ndarray:
    """Which of n >= 2 sequences or recordings validate: about `fraction` of them, at least one,
    never all."""
    n_val = min(n - 1, max(1, round(fraction * n)))
    return np.random.default_rng(seed).choice(n, size=n_val, replace=False)
