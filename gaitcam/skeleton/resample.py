"""Resampling each track to the encoder's frame rate.

SGE-LA learned motion from KGBD at 30 fps: a window is f frames 1/30 s apart, so a source at
15 or 60 fps, or one whose frames arrive irregularly, is brought onto a regular 30 fps grid
by linear interpolation between the two frames around each grid time. Interpolation never
bridges a gap (a step longer than `max_gap`, or time going backwards): the grid restarts at
the first frame after it, and the caller restarts its windows there too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODEL_FPS = 30.0  # KGBD's rate, which the shipped weights were trained at
_EPS = 1e-3  # share of a grid step by which a frame may miss a grid time and still land on it


def default_max_gap(source_fps: float) -> float:
    """The longest step interpolated over: 2.5 source frames, so one dropped frame is bridged
    (as a real sensor drops the odd frame) but two are not."""
    return 2.5 / source_fps


@dataclass
class Resampled:
    """Grid frames produced by one input frame: times [k], joints [k, J, 3]."""

    times: np.ndarray
    joints: np.ndarray
    restart: bool  # the first of them starts a new segment: never join it to earlier frames


class Resampler:
    """One track's streaming resampler: push source frames, get grid frames.

    Joints must be complete (the pipeline resets a track at a frame with missing joints).
    """

    def __init__(self, rate: float = MODEL_FPS, max_gap: float | None = None) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self.max_gap = default_max_gap(rate) if max_gap is None else max_gap
        self.reset()

    def reset(self) -> None:
        """Forget the track's past: the next frame starts a new segment."""
        self._anchor = 0.0  # time of grid point 0 of the current segment
        self._next = 0  # index of the next grid point to produce
        self._last: tuple[float, np.ndarray] | None = None

    def push(self, time: float, joints: np.ndarray) -> Resampled:
        joints = np.asarray(joints, dtype=np.float32)
        if self._last is None or not 0 < time - self._last[0] <= self.max_gap:
            self._anchor, self._next, self._last = time, 1, (time, joints)
            return Resampled(np.array([time]), joints[None].copy(), restart=True)
        t0, j0 = self._last
        k = np.arange(self._next, int(np.floor((time - self._anchor) * self.rate + _EPS)) + 1)
        grid = self._anchor + k / self.rate
        w = np.clip((grid - t0) / (time - t0), 0.0, 1.0).astype(np.float32)[:, None, None]
        self._next += len(k)
        self._last = (time, joints)
        return Resampled(grid, j0 + w * (joints - j0), restart=False)


def resample(
    times: np.ndarray, joints: np.ndarray, rate: float = MODEL_FPS, max_gap: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A whole track at once: (grid times [N], joints [N, J, 3], segment starts [N] bool).

    The same frames `Resampler` produces one push at a time; for recordings, where a track
    is at hand in full.
    """
    times = np.asarray(times, dtype=np.float64)
    joints = np.asarray(joints, dtype=np.float32)
    max_gap = default_max_gap(rate) if max_gap is None else max_gap
    if not len(times):
        return times, joints, np.zeros(0, dtype=bool)
    steps = np.diff(times)
    breaks = np.flatnonzero(~((steps > 0) & (steps <= max_gap))) + 1
    out_t, out_j, out_s = [], [], []
    for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(times)]):
        t, j = times[lo:hi], joints[lo:hi]
        grid = t[0] + np.arange(int(np.floor((t[-1] - t[0]) * rate + _EPS)) + 1) / rate
        if len(t) == 1:
            left = right = np.zeros(1, dtype=np.intp)
        else:  # the frames either side of each grid time; one within _EPS of it counts as after
            right = np.clip(np.searchsorted(t, grid - _EPS / rate, side="left"), 1, len(t) - 1)
            left = right - 1
        span = np.where(right > left, t[right] - t[left], 1.0)
        w = np.clip((grid - t[left]) / span, 0.0, 1.0).astype(np.float32)[:, None, None]
        out_t.append(grid)
        out_j.append(j[left] + w * (j[right] - j[left]))
        out_s.append(np.arange(len(grid)) == 0)
    return np.concatenate(out_t), np.concatenate(out_j), np.concatenate(out_s)
