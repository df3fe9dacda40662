"""One person across cameras: a site-wide id for tracks that end on one camera and start on another.

When a person leaves one camera's view and walks into another's within the site's transit
window, the two tracks are one person: the later track takes the earlier one's site id. The
evidence is the one the matcher already computes for a track (`Evidence.descriptor`: gait,
gait cycle, body shape), so strangers are linked as well as enrolled people ("unknown #17, seen
at A, then at B"). Where the matcher named both tracks, the names decide: the same name links,
two different names never do.

Why a joint assignment: in a busy corridor several people are in transit at once, and a track
that starts may resemble more than one of them. Each track links to at most one other; the
pairs are chosen together (Hungarian, maximising the summed margin over the threshold) among
all tracks waiting for a decision, so a newcomer who resembles somebody in transit does not take
that person's track from the person themself when both are waiting. A started track is decided
`wait` seconds after it was reported, and the decision is final: returned, and published as a
`link` event (`gaitcam.events`), linked or not, with its score and the threshold. On KGBD's lab
people, deciding at once (no wait) or each pair on its own (no assignment) made 2.8 and 4.5
times as many wrong links (docs/accuracy.md).

The score compares two tracks in the matcher's whitened space: their cosine distance over the
nearer one's cohort level (how close the matcher's cohort, people never enrolled, comes to it),
mapped to 1 for identical tracks, 0.5 at the cohort level and 0 at twice it or beyond. The
cohort level puts a distance on the scale of how close unrelated people come to this track, as
the open-set ratio does (docs/matching.md, section 4). The threshold is chosen on labelled
people who are never scored with it (`benchmark handoff` chooses it on KGBD's lab persons 1-82:
`DEFAULT_THRESHOLD`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from gaitcam.identity.matcher import MatcherParams

DEFAULT_THRESHOLD = 0.475  # chosen by `benchmark handoff` on KGBD's lab people (it prints its own)
DEFAULT_WINDOW = (0.0, 30.0)  # seconds from one track's end to the next track's start
DEFAULT_WAIT = 20.0  # seconds a started track waits for competitors before its decision
COHORT_QUANTILE = 0.05  # a track's cohort level: this quantile of its distances to the cohort's walks
KEEP = 120.0  # seconds an ended track is kept for tracks that started in time but are reported late


class PairScorer:
    """Scores pairs of tracks from their matcher descriptors (`MatcherParams` with a cohort)."""

    def __init__(self, params: MatcherParams) -> None:
        self.params = params
        k = params.projection.shape[1]
        self.cohort = params.cohort if len(params.cohort) and params.cohort.shape[1] == k else np.zeros((0, k))

    def embed(self, descriptor: np.ndarray) -> tuple[np.ndarray, float]:
        """(whitened unit vector, cohort level) of one track: the level is how close the cohort
        comes to it (the `COHORT_QUANTILE` quantile of its cosine distances to the cohort's walks;
        1 for a matcher fitted without a cohort, whose scores are then plain cosine distances)."""
        z = self.params.project(np.asarray(descriptor)[None])[0]
        if not len(self.cohort):
            return z, 1.0
        return z, float(np.quantile(np.clip(1.0 - self.cohort @ z, 0.0, 2.0), COHORT_QUANTILE))

    @staticmethod
    def score(a: tuple[np.ndarray, float], b: tuple[np.ndarray, float]) -> float:
        """1 for identical tracks, 0.5 at the nearer one's cohort level, 0 at twice it or beyond."""
        d = float(np.clip(1.0 - a[0] @ b[0], 0.0, 2.0))
        level = min(a[1], b[1])
        return float(1.0 - min(d / level, 2.0) / 2.0) if level > 0 else 0.0


@dataclass
class _Track:
    camera: str
    track: int
    start: float
    end: float | None
    embedding: tuple[np.ndarray, float]
    identity: str | None
    reported: float  # when the linker heard of it


@dataclass(frozen=True)
class Link:
    """The decision on one started track: linked to an ended one (its site id inherited) or not
    (a new site id). `from_*` and `score` name the best candidate, linked or not; None when no
    track ended within the transit window."""

    to_camera: str
    to_track: int
    site_id: int
    linked: bool
    threshold: float
    from_camera: str | None = None
    from_track: int | None = None
    score: float | None = None
    basis: str | None = None  # "gait": descriptors compared; "identity": both tracks named by the matcher
    transit: float | None = None  # seconds from the candidate's end to this track's start

    def fields(self) -> dict[str, Any]:
        """The `link` event's fields (`gaitcam.events`)."""
        return {k: getattr(self, k) for k in ("from_camera", "from_track", "to_camera", "to_track", "site_id",
                                              "score", "threshold", "linked", "basis", "transit")}


class Linker:
    """Site-wide person ids across cameras from tracks that end and start (see the module's doc).

    Feed it `track_started` (once the track has a descriptor: when the matcher is ready for it,
    or at its end) and `track_ended`, and call `decide(now)` as time passes; every decision is
    returned (and published, with `publish`, e.g. `EventBus("site").publish`). Times are
    seconds on one clock shared by the cameras. `one_to_one=False` (for comparison only: the
    design the joint assignment replaced) links each started track to its best candidate over
    the threshold on its own, whether or not another track takes that candidate too; an ended
    track then stays linkable after a link.
    """

    def __init__(self, params: MatcherParams, threshold: float = DEFAULT_THRESHOLD,
                 window: tuple[float, float] = DEFAULT_WINDOW, wait: float = DEFAULT_WAIT, keep: float = KEEP,
                 publish: Callable[..., Any] | None = None, one_to_one: bool = True) -> None:
        if not window[0] <= window[1]:
            raise ValueError(f"transit window {window}: its start lies after its end")
        self.scorer = PairScorer(params)
        self.threshold, self.window, self.wait, self.keep = threshold, window, wait, keep
        self.publish, self.one_to_one = publish, one_to_one
        self._started: dict[tuple[str, int], _Track] = {}  # waiting for their decision
        self._ended: dict[tuple[str, int], _Track] = {}  # linkable: not yet taken, not expired
        self._site: dict[tuple[str, int], int] = {}  # decided, until ended `keep` seconds ago
        self._next_id = 1
        self._now = -np.inf  # the latest time seen

    def site_id(self, camera: str, track: int) -> int | None:
        """The site id of a track once decided (forgotten `keep` seconds after it ended)."""
        return self._site.get((camera, track))

    def track_started(self, camera: str, track: int, start: float, descriptor: np.ndarray,
                      identity: str | None = None, now: float | None = None) -> None:
        """A track that started at `start` on `camera`, with its descriptor so far and the
        matcher's name for it (None: unknown). `now`: when it is reported (default `start`)."""
        key = (camera, track)
        if key in self._site or key in self._started:
            raise ValueError(f"track {track} of camera {camera!r} was already reported")
        now = start if now is None else now
        self._started[key] = _Track(camera, track, start, None, self.scorer.embed(descriptor), identity, now)
        self._now = max(self._now, now)

    def track_ended(self, camera: str, track: int, end: float, descriptor: np.ndarray,
                    identity: str | None = None) -> None:
        """A track that ended at `end`, with its whole descriptor: it becomes linkable. (A track
        never reported as started is a person of its own: it gets a new site id now.)"""
        key = (camera, track)
        if key not in self._site and key not in self._started:
            self._site[key] = self._new_id()
        self._ended[key] = _Track(camera, track, end, end, self.scorer.embed(descriptor), identity, end)
        self._now = max(self._now, end)

    def decide(self, now: float) -> list[Link]:
        """Decide every started track whose wait is over, jointly with all tracks still
        waiting; ended tracks older than `keep` are no longer linkable."""
        self._now = max(self._now, now)
        return self._decide(lambda a: now >= a.reported + self.wait)

    def flush(self) -> list[Link]:
        """Decide every started track still waiting (at the end of a run)."""
        return self._decide(lambda a: True)

    def _decide(self, is_due: Callable[[_Track], bool]) -> list[Link]:
        for key in [k for k, t in self._ended.items() if self._now - t.end > self.keep]:
            del self._ended[key]
            self._site.pop(key, None)
        arrivals, departures = list(self._started.values()), list(self._ended.values())
        due = {i for i, a in enumerate(arrivals) if is_due(a)}
        if not due:
            return []
        score, basis, eligible = self._pairs(arrivals, departures)
        margin = np.where(eligible, score - self.threshold, 0.0)
        if self.one_to_one:
            rows, cols = linear_sum_assignment(-margin) if margin.size else ([], [])
            chosen = {int(i): int(j) for i, j in zip(rows, cols) if eligible[i, j]}
        else:  # each its best candidate over the threshold, on its own
            best = np.where(eligible, score, -np.inf)
            chosen = {i: int(best[i].argmax()) for i in range(len(arrivals)) if eligible[i].any()}
        # A track taken by a due one passes on its site id: if its own decision still waits, it goes first.
        waiting = {(a.camera, a.track): i for i, a in enumerate(arrivals)}
        stack = list(due)
        while stack:
            j = chosen.get(stack.pop())
            k = None if j is None else waiting.get((departures[j].camera, departures[j].track))
            if k is not None and k not in due:
                due.add(k)
                stack.append(k)
        links = []
        for i in sorted(due, key=lambda i: arrivals[i].start):
            a = arrivals[i]
            del self._started[(a.camera, a.track)]
            j = chosen.get(i)
            if j is None:  # the best candidate in the window, for the record
                valid = np.flatnonzero(np.isfinite(score[i]))
                j = int(valid[np.argmax(score[i, valid])]) if len(valid) else None
            links.append(self._commit(a, departures[j] if j is not None else None, i in chosen,
                                      score[i, j] if j is not None else None, basis[i][j] if j is not None else None))
        return links

    def _pairs(self, arrivals: list[_Track], departures: list[_Track]
               ) -> tuple[np.ndarray, list[list[str | None]], np.ndarray]:
        """Scores [A, D] (NaN: outside the window or on the same camera), the basis of each, and
        which pairs may be linked."""
        score = np.full((len(arrivals), len(departures)), np.nan)
        basis: list[list[str | None]] = [[None] * len(departures) for _ in arrivals]
        eligible = np.zeros(score.shape, dtype=bool)
        lo, hi = self.window
        for i, a in enumerate(arrivals):
            for j, d in enumerate(departures):
                if d.camera == a.camera or not lo <= a.start - d.end <= hi:
                    continue
                if a.identity is not None and d.identity is not None:
                    score[i, j], basis[i][j] = float(a.identity == d.identity), "identity"
                else:
                    score[i, j], basis[i][j] = PairScorer.score(a.embedding, d.embedding), "gait"
                eligible[i, j] = score[i, j] >= self.threshold
        return score, basis, eligible

    def _commit(self, a: _Track, d: _Track | None, linked: bool, score: float | None, basis: str | None) -> Link:
        if linked:
            if self.one_to_one:
                del self._ended[(d.camera, d.track)]
            site = self._site[(d.camera, d.track)]
        else:
            site = self._new_id()
        self._site[(a.camera, a.track)] = site
        link = Link(a.camera, a.track, site, linked, self.threshold,
                    d.camera if d else None, d.track if d else None,
                    None if score is None else round(float(score), 4), basis,
                    None if d is None else round(a.start - d.end, 3))
        if self.publish is not None:
            self.publish("link", **link.fields())
        return link

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1
