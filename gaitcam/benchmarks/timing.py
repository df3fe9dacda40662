"""Timing that holds up on a busy machine.

Other jobs share the cores, so an absolute time means little; what does mean something is a
ratio of two paths measured over the same seconds. `interleaved` therefore alternates the
compared calls round by round (rotating which goes first), and callers compare medians.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a wall-clock interval covers the computation itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of `fn` takes, device work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def _turn(names: list[str], r: int) -> list[str]:
    """Round r's order: starting one further along each round."""
    return names[r % len(names):] + names[: r % len(names)]


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, device: torch.device) -> dict[str, list[float]]:
    """Per name, the seconds of `rounds` calls, taken in turns: each round calls every function
    once, starting one further along each time, so slow spells hit all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name in _turn(list(fns), r):
            times[name].append(timed(fns[name], device))
    return times


def in_blocks(fns: dict[str, Callable[[], object]], rounds: int, block: int,
              device: torch.device) -> dict[str, list[float]]:
    """Per name, `rounds` per-call times, each the mean of `block` calls in a row (after one call
    that is not counted): how fast a path runs when it is called over and over, as the live
    encoder is, rather than right after the others. Names take turns block by block, rotating
    as in `interleaved`."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for r in range(rounds):
        for name in _turn(list(fns), r):
            fns[name]()
            times[name].append(timed(lambda fn=fns[name]: [fn() for _ in range(block)], device) / block)
    return times


def peak_gflops(device: torch.device, size: int = 4096, runs: int = 5) -> float:
    """The float32 matrix-multiply peak: best of `runs` size x size `torch.mm`, in GFLOP/s, at
    the thread count currently set."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    timed(lambda: torch.mm(a, b), device)  # warm-up: allocation, kernel choice
    best = min(timed(lambda: torch.mm(a, b), device) for _ in range(runs))
    return 2 * size**3 / best / 1e9


class Histogram:
    """Latencies in fixed 0.1 ms bins up to `limit` seconds (beyond it: one overflow bin), so a
    ten-minute soak keeps percentiles exact to 0.1 ms in constant memory."""

    BIN = 1e-4

    def __init__(self, limit: float = 10.0) -> None:
        self.counts = np.zeros(int(round(limit / self.BIN)) + 1, dtype=np.int64)
        self.max = 0.0

    def add(self, seconds: float | list[float] | np.ndarray) -> None:
        values = np.atleast_1d(np.asarray(seconds, dtype=np.float64))
        if not len(values):
            return
        bins = np.minimum(np.maximum(values, 0.0) / self.BIN, len(self.counts) - 1).astype(np.int64)
        np.add.at(self.counts, bins, 1)
        self.max = max(self.max, float(values.max()))

    def merge(self, other: Histogram) -> None:
        self.counts += other.counts
        self.max = max(self.max, other.max)

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> float | None:
        """The q-th percentile in seconds (upper edge of its bin; in the overflow bin, the
        largest value seen), None when empty."""
        n = self.count
        if not n:
            return None
        rank = max(int(np.ceil(q / 100 * n)), 1)
        k = int(np.searchsorted(np.cumsum(self.counts), rank))
        return self.max if k == len(self.counts) - 1 else min((k + 1) * self.BIN, self.max)


def ms(seconds: float | None, digits: int = 2) -> float | None:
    return None if seconds is None else round(1e3 * seconds, digits)
