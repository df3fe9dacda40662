"""The order an epoch visits the training windows, the same whatever the number of processes.

Units are shuffled, taken in blocks of about `shuffle_windows` windows, and the windows of a
block shuffled together; batches are consecutive runs of that stream (they may straddle two
blocks). Only the windows per unit go in, so every process computes the same global batches
without reading a file, and trains on the part of each batch whose units it owns: one process
or several, the same windows make each step, which is what lets their loss curves agree. A
process holds at most about two blocks of its own units in memory; data smaller than one block
is shuffled as a whole.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EpochPlan:
    counts: np.ndarray  # windows per unit
    batch_size: int  # global: all processes together
    seed: int
    shuffle_windows: int

    @property
    def steps(self) -> int:
        """Batches per epoch (the last one may be short)."""
        return math.ceil(int(self.counts.sum()) / self.batch_size)

    def _blocks(self, epoch: int) -> list[np.ndarray]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.counts))
        sizes = self.counts[order]
        block = (np.cumsum(sizes) - sizes) // self.shuffle_windows
        return np.split(order, np.flatnonzero(np.diff(block)) + 1)

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(unit, window within the unit) of each global batch of `epoch`, from batch `start`."""
        skip = start * self.batch_size
        units, windows = np.zeros(0, np.int64), np.zeros(0, np.int64)  # carried into the next block
        for k, block in enumerate(self._blocks(epoch)):
            sizes = self.counts[block]
            n = int(sizes.sum())
            if skip >= n:
                skip -= n
                continue
            order = np.random.default_rng([self.seed, epoch, k]).permutation(n)[skip:]
            skip = 0
            within = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes)
            units = np.concatenate([units, np.repeat(block, sizes)[order]])
            windows = np.concatenate([windows, within[order]])
            full = len(units) - len(units) % self.batch_size
            for i in range(0, full, self.batch_size):
                yield units[i : i + self.batch_size], windows[i : i + self.batch_size]
            units, windows = units[full:], windows[full:]
        if len(units):
            yield units, windows
