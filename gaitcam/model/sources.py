"""Training windows read when they are needed, so that a folder of any size trains.

A source is a list of *units* (a recording file, or a sequence of windows already in memory)
whose windows are read on demand through a bounded least-recently-used cache. Each training
process reads only the units it owns (`distributed.owned`); the windows per unit, counted once
by their owners and shared (`index`), are all the trainer needs to plan every epoch
(`batches.EpochPlan`). Windows already in memory (the tests, `--sgela-npy`, a single recording)
go through the same path with a cache of nothing, since slicing them copies nothing.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gaitcam.model import distributed
from gaitcam.model.data import WindowSet, windows_from_sequences
from gaitcam.skeleton.windows import WindowStats


class WindowSource:
    """Units of windows; subclasses say how many (`__len__`) and how one is read (`_read`)."""

    def __init__(self, f: int, cache_bytes: int) -> None:
        self.f = f  # frames per window
        self._cache: OrderedDict[int, WindowSet] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0
        self.counts: np.ndarray | None = None  # windows per unit, once indexed
        self.sequences = 0  # sequences that gave windows, once indexed
        self.stats = WindowStats()  # what the window rule dropped, once indexed

    def __len__(self) -> int:
        raise NotImplementedError

    def _read(self, unit: int) -> WindowSet:
        raise NotImplementedError

    @property
    def cached_bytes(self) -> int:
        return self._cached

    def load(self, unit: int) -> WindowSet:
        """The windows of one unit (sequence ids sorted), from the cache when it holds them."""
        data = self._cache.get(unit)
        if data is not None:
            self._cache.move_to_end(unit)
            return data
        data = self._read(unit)
        size = data.windows.nbytes
        if size <= self._cache_bytes:
            self._cache[unit] = data
            self._cached += size
            while self._cached > self._cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.windows.nbytes
        return data

    def index(self) -> np.ndarray:
        """Windows per unit: each process reads the units it owns once (they stay cached as far
        as the cache allows) and the counts are shared, so every process plans the same epochs."""
        if self.counts is None:
            mine = np.flatnonzero(distributed.owned(np.arange(len(self))))
            counts, sequences, stats = {}, 0, WindowStats()
            for unit in tqdm(mine, desc="reading", unit="unit", leave=False,
                             disable=None if distributed.rank() == 0 else True):
                data = self.load(int(unit))
                counts[int(unit)] = len(data)
                sequences += len(np.unique(data.sequence))
                stats.add(data.stats)
            self.counts = np.zeros(len(self), np.int64)
            for part_counts, part_sequences, part_stats in distributed.gather((counts, sequences, stats)):
                self.counts[list(part_counts)] = list(part_counts.values())
                self.sequences += part_sequences
                self.stats.add(part_stats)
        return self.counts

    def share(self, max_windows: int) -> WindowSet:
        """This process's part of up to `max_windows` windows spread evenly over all units (the
        validation windows): each is held by its unit's owner, and sequence ids stay distinct
        and sorted, as contrastive partners need."""
        counts = self.index()
        total = int(counts.sum())
        n = min(total, max_windows)
        pos = np.linspace(0, total - 1, n).astype(np.int64) if n else np.zeros(0, np.int64)
        unit = np.searchsorted(np.cumsum(counts), pos, side="right")
        local = pos - (np.cumsum(counts) - counts)[unit]
        windows, sequence, offset = [], [], 0
        for u in np.unique(unit[distributed.owned(unit)]):
            data = self.load(int(u))
            idx = local[unit == u]
            _, seq = np.unique(data.sequence[idx], return_inverse=True)
            windows.append(data.windows[idx])
            sequence.append(seq + offset)
            offset += int(seq.max()) + 1
        if not windows:
            return WindowSet(np.zeros((0, self.f, 20, 3), np.float32), np.zeros(0, np.int64))
        return WindowSet(np.concatenate(windows), np.concatenate(sequence))


class InMemorySource(WindowSource):
    """Windows already in memory; a unit is a run of windows of one sequence."""

    def __init__(self, data: WindowSet) -> None:
        super().__init__(data.windows.shape[1], cache_bytes=0)
        self.data = data
        change = np.flatnonzero(np.diff(data.sequence)) + 1
        self._bounds = np.concatenate([[0], change, [len(data)]]) if len(data) else np.zeros(1, np.int64)

    def __len__(self) -> int:
        return len(self._bounds) - 1

    def _read(self, unit: int) -> WindowSet:
        a, b = self._bounds[unit], self._bounds[unit + 1]
        return WindowSet(self.data.windows[a:b], self.data.sequence[a:b])


class RecordingSource(WindowSource):
    """Recording files (any supported format), one unit each, cut by the window rule when read."""

    def __init__(self, files: list[Path], f: int, stride: int, normalization: str, trim: int,
                 cache_bytes: int) -> None:
        super().__init__(f, cache_bytes)
        self.files = list(files)
        self._cut = dict(f=f, stride=stride, normalization=normalization, trim=trim)

    def __len__(self) -> int:
        return len(self.files)

    def _read(self, unit: int) -> WindowSet:
        from gaitcam.recording.formats import read_recording

        return windows_from_sequences(list(read_recording(self.files[unit]).tracks.values()), **self._cut)


def as_source(data: WindowSet | WindowSource) -> WindowSource:
    return InMemorySource(data) if isinstance(data, WindowSet) else data
