"""The live stride under load: wider when the encoder falls behind, back to the base stride
when it has room again.

A window every frame per person (stride 1) is the most evidence, and the most encoder work: a
small machine with six people in view cannot encode 180 windows a second, falls further
behind every second, decides later and later, and at last drops frames. A wider stride cuts
the encoder's work in proportion and costs only how often a person's evidence grows, never
what a window holds (the same f consecutive frames). So the pipeline measures its own lag and
`StrideControl` turns the stride, every `interval` seconds, from:

- the lag: for each window encoded in the interval, from when its newest frame was read to
  when its AGE was back in the pipeline's loop (p95 over the interval);
- the backlog: frames waiting in the capture queue plus frames' windows waiting for the
  encoder, at the end of the interval;
- the encoder's busy share: how much of the interval it spent encoding.

Overloaded (lag p95 over `target` with the encoder busy at least `BUSY` of the interval, or backlog
over `max_backlog`): one step wider at once, because a backlog compounds. A lag over target while
the encoder is idle most of the time is not the encoder's: a machine whose scheduler or other
processes hold every thread back has a latency floor that a wider stride cannot lower, only thin
each person's evidence (measured with the bench sharing one core with four busy loops: the lag
alone widened to stride 5, at a higher p99 than stride 2 kept). Calm (lag p95 under target / 2,
backlog at most 1) for `calm` intervals in a row: one step narrower (the lag does not count against
calm when the encoder would stay under `BUSY` at the narrower stride: the floor is not its doing).
A narrower step that overloads again within `calm` intervals doubles the calm intervals the next
narrowing needs (up to `MAX_CALM`), so a load between two strides settles on the wider one instead
of flapping. Overloaded at the widest stride with the backlog still growing or windows dropped is
`behind`: warned once per episode, which ends at the first interval that is not overloaded.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np

log = logging.getLogger(__name__)

TARGET_LAG = 0.05  # seconds, frame read -> AGE, p95: well inside the 0.1 s a decision may take
INTERVAL = 0.5  # seconds between decisions: 15 frames at 30 fps, enough windows for a p95
CALM = 3  # calm intervals before a step narrower
MAX_CALM = 32  # the most calm intervals a narrower step can come to need (16 s)
MAX_BACKLOG = 3  # frames waiting: more than one batch gathering behind the one being encoded
BUSY = 0.5  # the encoder's share of an interval under which a lag is not its doing
DEFAULT_MAX_STRIDE = 6  # one window per person per 0.2 s at 30 fps, windows still overlapping (f = 6)


class StrideControl:
    """The pipeline-wide stride between `base` and `maximum` (module docstring). Not
    thread-safe: the pipeline's loop feeds it (`add`, `update`) and reads `stride`."""

    def __init__(self, base: int, maximum: int, *, target: float = TARGET_LAG, interval: float = INTERVAL,
                 calm: int = CALM, max_backlog: int = MAX_BACKLOG) -> None:
        if not 1 <= base <= maximum:
            raise ValueError(f"strides must satisfy 1 <= base <= maximum, got {base} and {maximum}")
        self.base, self.maximum = base, maximum
        self.target, self.interval, self.calm, self.max_backlog = target, interval, calm, max_backlog
        self.stride = base
        self.lag = 0.0  # seconds: p95 over the last interval
        self.behind = False  # overloaded at `maximum` and still falling behind, now
        self.episodes = 0  # times it started falling behind at `maximum`
        self._lags: list[float] = []
        self._start: float | None = None  # when the current interval began
        self._calm_run = 0  # calm intervals in a row
        self._calm_needed = calm
        self._probation = 0  # intervals left in which an overload undoes the last narrowing's trust
        self._backlog = 0  # at the end of the last interval
        self._dropped = 0
        self._busy: float | None = None  # the encoder's seconds so far, at the interval's start

    def add(self, lags: Iterable[float]) -> None:
        """Lags (seconds) of windows just encoded."""
        self._lags.extend(lags)

    def update(self, now: float, backlog: int, dropped: int, busy: float | None = None) -> bool:
        """Once an interval has passed since the last decision, decide on it (True when the
        stride changed). `backlog`: frames waiting now; `dropped`: frames and windows dropped
        by full queues so far; `busy`: the encoder's seconds spent encoding so far (None: unknown,
        the lag alone decides)."""
        if self._start is None:
            self._start, self._dropped, self._busy = now, dropped, busy
        if now - self._start < self.interval:
            return False
        share = 1.0 if busy is None or self._busy is None else (busy - self._busy) / (now - self._start)
        lags, self._lags, self._start, self._busy = self._lags, [], now, busy
        # No window back in a whole interval: idle when nothing waits, stuck when something does.
        self.lag = float(np.percentile(lags, 95)) if lags else self.interval if backlog else 0.0
        overloaded = (self.lag > self.target and share >= BUSY) or backlog > self.max_backlog
        # Room for a narrower step: the lag well under target, or the encoder so idle that the
        # narrower stride's extra work (stride / (stride - 1)) would still leave it under BUSY.
        room = self.lag < self.target / 2 or (self.stride > 1 and share * self.stride / (self.stride - 1) < BUSY)
        growing = backlog > self._backlog or dropped > self._dropped
        self._backlog, self._dropped = backlog, dropped
        before = self.stride
        if overloaded:
            self._overloaded(growing)
        else:
            self._relieved(calm=room and backlog <= 1)
        return self.stride != before

    def _overloaded(self, growing: bool) -> None:
        self._calm_run = 0
        if self._probation:  # the last narrower step did not hold: wait longer before the next
            self._calm_needed = min(2 * self._calm_needed, MAX_CALM)
            self._probation = 0
        if self.stride < self.maximum:
            self.stride += 1
            log.debug("encoder behind (lag p95 %.0f ms): stride %d", 1e3 * self.lag, self.stride)
        elif growing and not self.behind:
            self.behind = True
            self.episodes += 1
            log.warning("falling behind even at the widest stride (%d, config max_stride): lag p95 %.0f ms; "
                        "frames and windows will be dropped (counted in dropped)", self.maximum, 1e3 * self.lag)

    def _relieved(self, calm: bool) -> None:
        if self.behind:
            self.behind = False
            log.info("keeping up again at stride %d", self.stride)
        if self._probation:
            self._probation -= 1
            if not self._probation:
                self._calm_needed = self.calm  # the narrower stride held
        self._calm_run = self._calm_run + 1 if calm else 0
        if self._calm_run >= self._calm_needed and self.stride > self.base:
            self.stride -= 1
            self._calm_run, self._probation = 0, self.calm
            log.debug("encoder has room (lag p95 %.0f ms): stride %d", 1e3 * self.lag, self.stride)
