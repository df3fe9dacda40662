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
- the encoder's demand: the share of the interval it would have needed to encode every window
  offered to it, at the cost per window it had (busy share x windows offered / windows done;
  with none done, the busy share). A busy share stops at 1 however far behind the
  encoder is; the demand says how far, so one decision can go as wide as the load needs. Sources
  that share one encoder (`EncodeWorker.client`) each read the shared demand and scale their own
  stride by it (from `OVERLOAD` on; under it each widens a step): every source widening by the
  same factor cuts the shared demand by that factor, whichever source brought the load.

Overloaded (the backlog over `max_backlog`; or the lag p95 over `target` from an encoder with a
demand of at least `OVERLOAD`; or over `target` plus a frame from one with a demand of at least
`SATURATED`, two intervals in a row): wider at once, because a backlog compounds. From a demand
of `OVERLOAD` on, to the stride at which the demand would come to `ROOM` (the demand falls as
1 / stride), at least one step and at most double; under it, one step (the encoder barely keeps
up, or does not quite; aiming at `ROOM` from a demand of 1.06 at stride 2 went to 4, where 3 held
at 0.7). An encoder that keeps up (a demand under 1) has
a stable queue, and one interval over target from it is as likely a busy machine's noise as its
queue; so is a demand a little over 1 (under `OVERLOAD`), whose queue grows by a small part of an
interval's work in an interval (less, as the worker merges what waits into larger, cheaper
calls). And a step wider adds a frame (1 / 30 s) to each frame's wait for its window, so from
such an encoder it pays only for a lag over target by more than that: at the `--slowdown 5`
emulation, stride 2 at a demand of 0.85-0.9 runs with a lag p95 of 35-60 ms, and widening on two
intervals over 50 ms left stride 2 once or twice a run for 1.5-3 s at stride 3. The interval
right after a widening does not count (its lag is the windows cut at the narrower stride
draining), unless its demand is 1 or more: then the widening was not enough. A quarter into an
interval, when the load stepped up (the last interval's demand under `QUIET`; not in the interval
right after a widening, nor at the widest stride), windows back over target from a saturated
encoder already count, and so does a demand of `OVERLOAD` or more before any window is back over
target; the demand then counts from the call before the interval's first windows, not diluted by
the quiet before them (once that spans two frames): six people stepping into view at once
otherwise pile up half a second of windows that take a second to drain. From an encoder that was already busy, a quarter interval's
demand (a few calls, one of them stalled by the machine) is noise, not a step: it waits for the
interval's end (with `ROOM` as the mark, an interval at 0.69 followed by a quarter at 1.01 took a
run at the emulation from stride 2 to 3 for 2 s).

A lag over target while the encoder has time to spare is not cut by a wider stride, which only
lengthens each frame's wait for its window to fill (1 / fps a step): below saturation the
encoder's queue is stable and the lag is mostly the encode time itself, and a machine whose
scheduler or other processes hold every thread back has a latency floor no stride lowers
(measured with the bench's pipeline runs, `run_pipeline(..., slowdown=K)`: an encoder 5 and 6
times slower kept up at stride 2, p99 83 and 87 ms, while widening at half busy went on to mean
strides 2.5 and 3.8 and p99 115 and 217 ms; sharing one core with four busy loops, the lag alone
widened to stride 5).

Calm (backlog at most 1, and a demand that would stay under `ROOM` one step narrower, or under
`NARROW` with the lag too staying under target there) for `calm` intervals in a row: one step
narrower. From s to s - 1 each person's windows come s / (s - 1) times as often; the pipeline
spreads people's windows over a stride's frames (`stream.pipeline`), so the encoder's calls stay
one a frame, each batch s / (s - 1) times the size. A batch's fixed cost (the call,
normalisation, the weights read once for several windows) does not grow with it: measured with
the bench's `--slowdown 5` emulation, the demand at strides 2, 3 and 4 was about 0.8, 0.65 and
0.55, where windows alone would have made it 0.8, 0.53 and 0.4. So the demand and the lag are
taken to grow by the part of a call that is not fixed, read from the encoder's call-cost line
(`EncoderLoad.call_cost`, fitted over the batch sizes it has run), the fixed part taken as at
most `MAX_FIXED` (the small-batch kernel's calls, mirrored windows included, are about half
fixed at two windows a call); by s / (s - 1), an upper bound, where calls have a window each (a
narrower stride may bring more calls as well) or there is no line yet. For the lag it is an
estimate, which holds while the encoder keeps up (its queue grows faster near a demand of 1; a
narrowing that overloads is undone, see below). With the bound alone, from stride 3 at a demand
of 0.6-0.75 the narrower step looked like 0.9-1.1, and a run that one busy spell had widened to
stride 3 stayed there. A narrower step that overloads again within `calm` intervals (there one
interval over target plus a frame from a saturated encoder is enough) doubles the calm intervals
the next narrowing needs (up to `MAX_CALM`), so a load between two strides settles on the wider
one instead of flapping. Overloaded at the widest stride with the backlog still growing or
windows dropped is `behind`: warned once per episode, which ends at the first interval that is
not overloaded.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import numpy as np

from gaitcam.skeleton.resample import MODEL_FPS
from gaitcam.stream.encode import EncoderLoad

log = logging.getLogger(__name__)

TARGET_LAG = 0.05  # seconds, frame read -> AGE, p95: well inside the 0.1 s a decision may take
INTERVAL = 0.5  # seconds between decisions: 15 frames at 30 fps, enough windows for a p95
CALM = 3  # calm intervals before a step narrower
MAX_CALM = 32  # the most calm intervals a narrower step can come to need (16 s)
MAX_BACKLOG = 3  # frames waiting: more than one batch gathering behind the one being encoded
SATURATED = 0.85  # the encoder's demand from which a lag over target is its queue's
OVERLOAD = 1.25  # the demand from which one interval over target widens: its queue grows a quarter interval each
QUIET = 0.35  # the demand under which a saturated one a quarter into the next interval is a step, not noise
ROOM = 0.7  # the demand a widening aims at, and under which a narrower stride has room whatever the lag
NARROW = 1.0  # the demand one step narrower under which it keeps up (while the lag stays under target)
MAX_FIXED = 0.6  # the most of a call's cost taken as fixed when narrowing (module docstring)
DEFAULT_MAX_STRIDE = 6  # one window per person per 0.2 s at 30 fps, windows still overlapping (f = 6)


class StrideControl:
    """The pipeline-wide stride between `base` and `maximum` (module docstring). Not
    thread-safe: the pipeline's loop feeds it (`add`, `update`) and reads `stride`."""

    def __init__(self, base: int, maximum: int, *, target: float = TARGET_LAG, interval: float = INTERVAL,
                 calm: int = CALM, max_backlog: int = MAX_BACKLOG, frame: float = 1 / MODEL_FPS) -> None:
        """`frame`: seconds between the window rule's frames, what one step wider adds to a frame's
        wait for the frames completing its window."""
        if not 1 <= base <= maximum:
            raise ValueError(f"strides must satisfy 1 <= base <= maximum, got {base} and {maximum}")
        self.base, self.maximum, self.frame = base, maximum, frame
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
        self._load: EncoderLoad | None = None  # the encoder's counters at the interval's start
        # (time, counters) at the call before the interval's first windows were offered, and at the last call
        self._onset: tuple[float, EncoderLoad | None] | None = None
        self._last: tuple[float, EncoderLoad | None] | None = None
        self.demand = 0.0  # over the last interval (module docstring); 0 while unknown
        self._settling = False  # widened at the last decision: no early decision in this interval
        self._over = False  # the last interval's lag was its queue's (over target + frame, saturated)

    def add(self, lags: Iterable[float]) -> None:
        """Lags (seconds) of windows just encoded."""
        self._lags.extend(lags)

    def update(self, now: float, backlog: int, dropped: int, load: EncoderLoad | None = None) -> bool:
        """Once an interval has passed since the last decision, decide on it (True when the
        stride changed). `backlog`: frames waiting now; `dropped`: frames and windows dropped
        by full queues so far; `load`: the encoder's counters so far (None: unknown, the lag and
        the backlog alone decide, one step at a time)."""
        if self._start is None:
            self._start, self._dropped, self._load = now, dropped, load
        if self._onset is None and load is not None and self._load is not None and load.offered > self._load.offered:
            self._onset = self._last or (self._start, self._load)
        self._last = (now, load)
        if now - self._start < self.interval / 4:  # the loop calls this after every frame: nothing to do yet
            return False
        early = now - self._start < self.interval
        # (early: since the interval's first windows came, undiluted by the quiet before them, once
        # that spans two frames: a frame's windows still queued behind the first call, or frames
        # handled back to back after a stall, make offered / done over a shorter span no measure)
        since = self._onset if early and self._onset and now - self._onset[0] >= 2 * self.frame else None
        demand = self._demand(load, *(since or (self._start, self._load)), now)
        if early and not self._urgent(demand):
            return False
        growth = self._growth(load) if self.stride > self.base else 1.0  # (read before the interval restarts)
        lags, self._lags, self._start, self._load, self._onset = self._lags, [], now, load, None
        settling, self._settling = self._settling, False
        # No window back in a whole interval: idle when nothing waits, stuck when something does.
        self.lag = float(np.percentile(lags, 95)) if lags else self.interval if backlog else 0.0
        self.demand = 0.0 if demand is None else demand
        # Over target from a saturated encoder (SATURATED <= demand < OVERLOAD): its queue's when the
        # load stepped up (early), or when over target by more than the frame a wider stride would
        # add to each frame's wait, two intervals in a row (the one right after a widening, the
        # narrower stride's windows draining, counts only with a demand of 1 or more: not enough).
        over = self.lag > self.target
        queued = (self.lag > self.target + self.frame and demand is not None and demand >= SATURATED
                  and (not settling or demand >= 1))
        # (after a narrowing, one such interval undoes it: the narrower stride did not hold)
        lagging = early or over and (demand is None or demand >= OVERLOAD
                                     or (queued and (self._over or self._probation > 0)))
        self._over = queued
        overloaded = lagging or backlog > self.max_backlog
        # Room for a narrower step: a demand that would stay under ROOM at the narrower stride, or
        # under NARROW with the lag under target there (both taken to grow by `growth`).
        if self.stride == self.base:
            room = False  # nothing narrower to go to
        elif demand is None:
            room = self.lag < self.target / 2
        else:
            room = demand * growth < ROOM or (demand * growth < NARROW and self.lag * growth < self.target)
        growing = backlog > self._backlog or dropped > self._dropped
        self._backlog, self._dropped = backlog, dropped
        before = self.stride
        if overloaded:
            self._overloaded(growing, demand)
        else:
            self._relieved(calm=room and backlog <= 1)
        return self.stride != before

    def _urgent(self, demand: float | None) -> bool:
        """(Past a quarter of the interval) after a step in the load (the last interval's demand
        under QUIET), an encoder that cannot keep up (a demand of OVERLOAD or more since the
        first windows came), or windows back over the target lag from a saturated one: an
        overload that would compound until the interval is out. Not while the last widening's
        first interval drains what came before it, nor at the widest stride."""
        if self._settling or self.stride >= self.maximum or demand is None or self.demand >= QUIET:
            return False
        return demand >= OVERLOAD or (demand >= SATURATED and len(self._lags) > 0
                                      and float(np.percentile(self._lags, 95)) > self.target)

    def _growth(self, load: EncoderLoad | None) -> float:
        """How much the demand and the lag grow one step narrower, from s to s - 1. With several
        windows a call, the calls stay one a frame and each takes s / (s - 1) times the windows:
        1 + (s / (s - 1) - 1) x the part of a call that is not fixed, from the encoder's
        `call_cost` line (the fixed part at most MAX_FIXED, so a noisy line never makes a narrower
        stride free). Where calls have one window each, a narrower stride may bring more calls as
        well: between one and two windows a call the fixed part counts in proportion, at one not
        at all (s / (s - 1), as without a line)."""
        bound = self.stride / (self.stride - 1)
        if load is None or self._load is None or load.call_cost is None:
            return bound
        calls, done = load.calls - self._load.calls, load.done - self._load.done
        fixed, per_window = load.call_cost
        windows = done / calls if calls > 0 else 1.0
        cost = fixed + per_window * windows
        if windows <= 1 or cost <= 0:
            return bound
        fixed_part = min(fixed / cost, MAX_FIXED) * min(windows - 1, 1.0)
        return 1 + (bound - 1) * (1 - fixed_part)

    @staticmethod
    def _demand(load: EncoderLoad | None, since: float, then: EncoderLoad | None, now: float) -> float | None:
        """The encoder's busy share from `since` (its counters `then`) to `now`, the batch in
        progress included, times windows offered / windows done; with none done, the busy share
        alone."""
        if load is None or then is None or now <= since:
            return None
        share = (load.busy - then.busy) / (now - since)
        done = load.done - then.done
        return share * (load.offered - then.offered) / done if done > 0 else share

    def _overloaded(self, growing: bool, demand: float | None) -> None:
        self._calm_run = 0
        if self._probation:  # the last narrower step did not hold: wait longer before the next
            self._calm_needed = min(2 * self._calm_needed, MAX_CALM)
            self._probation = 0
        if self.stride < self.maximum:
            # (less a hair: 1 x 2.1 / 0.7 is 3.0000000000000004 in floats)
            wanted = (math.ceil(min(self.stride * demand / ROOM, 2 * self.stride) - 1e-9)
                      if demand is not None and demand >= OVERLOAD else self.stride + 1)
            self.stride = min(max(wanted, self.stride + 1), self.maximum)
            self._settling, self._over = True, False
            log.debug("encoder behind (lag p95 %.0f ms, demand %.2f): stride %d", 1e3 * self.lag,
                      self.demand, self.stride)
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
