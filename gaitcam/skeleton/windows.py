"""Cutting skeleton sequences into the model's fixed-length windows (spec §1.6).

A window is f consecutive frames. It must not span a gap (dropped frames, a sensor restart,
timestamps going backwards), because the model reads a window as smooth motion; after a gap,
windowing restarts at the next segment's first frame.

Strides: training uses f // 2 (overlapping windows), testing f (disjoint windows, one query
each). The original preprocessing enumerated every start offset s = 0..f-1, each with
stride f/2, so its training set held every start position, most of them twice; gaitcam cuts
each start once at the chosen stride.
"""
from __future__ import annotations

import numpy as np

DEFAULT_F = 6  # SGE-LA's window length (spec §1.6)
# Frames between live windows (and enrolment's, so templates match what live sees): a fresh AGE
# every 0.1 s per person at 30 fps.
LIVE_STRIDE = 3


def train_stride(f: int) -> int:
    """Half-overlapping training windows, as the original."""
    return max(1, f // 2)


def test_stride(f: int) -> int:
    """Disjoint test windows, as the original."""
    return f


def cut_windows(
    joints: np.ndarray,
    timestamps: np.ndarray,
    f: int = DEFAULT_F,
    stride: int | None = None,
    max_gap: float | None = None,
) -> np.ndarray:
    """Start indices (int64) of the gap-free windows [s, s+f) of a sequence [T, J, 3].

    A gap is a timestamp step that is not positive or exceeds `max_gap` (default 1.5 × the
    median positive step, so one dropped frame already breaks a window). Each segment between
    gaps is windowed from its own first frame every `stride` frames (default: test_stride).
    """
    stride = test_stride(f) if stride is None else stride
    if f < 1 or stride < 1:
        raise ValueError(f"window length and stride must be >= 1, got f={f}, stride={stride}")
    t = np.asarray(timestamps, dtype=np.float64)
    n = len(joints)
    if t.shape != (n,):
        raise ValueError(f"timestamps must be [{n}] like the joints, got {t.shape}")
    if n < f:
        return np.zeros(0, dtype=np.int64)
    steps = np.diff(t)
    if max_gap is None:
        positive = steps[steps > 0]
        max_gap = 1.5 * float(np.median(positive)) if len(positive) else np.inf
    breaks = ~((steps > 0) & (steps <= max_gap))  # NaN steps count as gaps too
    segment = np.concatenate([[0], np.cumsum(breaks)])  # segment id of every frame
    segment_first = np.flatnonzero(np.concatenate([[True], breaks]))  # first frame of each segment
    starts = np.arange(n - f + 1)
    inside = segment[starts + f - 1] == segment[starts]
    on_stride = (starts - segment_first[segment[starts]]) % stride == 0
    return starts[inside & on_stride].astype(np.int64)


def gather_windows(joints: np.ndarray, starts: np.ndarray, f: int) -> np.ndarray:
    """Windows [N, f, J, 3] at the given starts, in one fancy-indexing copy."""
    joints = np.asarray(joints)
    starts = np.asarray(starts, dtype=np.intp)
    if starts.size and (starts.min() < 0 or starts.max() + f > len(joints)):
        raise ValueError(f"window starts must lie in [0, {len(joints) - f}]")
    return joints[starts[:, None] + np.arange(f)]
