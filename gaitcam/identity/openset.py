"""Open set: the score that tells strangers from enrolled people, and the threshold on it that a
gallery calibrates for itself.

A site has no labelled strangers, but it has its enrolled people: each of them is a stranger
to everyone else. Leaving one person out at a time and matching their enrolled walks against the
rest gives the scores strangers get at this site, with this sensor and these people
(ISO/IEC 19795-1's "impostor" attempts). The threshold is the quantile of those scores at the
false-positive identification rate the user asked for (`--fpir`, default 1 %), recomputed
whenever someone is enrolled or removed. With fewer than `MIN_PEOPLE` enrolled there are too
few strangers to tell, and the scores of held-out people of the training walks stand in; a
gallery of too few people for the tail asked for (under 1/FPIR) gets a log-normal prediction bound
from its scores (the fit's own uncertainty included, so small sites are not lax on average).

Scores: the distance to each person (their nearest enrolled walk) is divided by that person's
impostor level, the `LOC_QUANTILE` quantile of how close other people's walks come to them
(`person_levels`); the open-set score is the nearest enrolled person's normalised distance over
the nearest other person's (`open_scores`), "other" including a cohort of people who are never
enrolled (the matcher's training walks): a stranger who happens to resemble an enrolled person
mostly resembles somebody in the cohort as well, so strangers score alike at every site and the
threshold calibrated on one gallery holds for the next stranger. Small is confident.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import t as student_t

from gaitcam.errors import GaitcamError

if TYPE_CHECKING:
    from gaitcam.identity.matcher import MatcherParams

DEFAULT_FPIR = 0.01
MIN_PEOPLE = 10  # enrolled people a gallery needs to calibrate on its own scores


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def per_person_min(d: np.ndarray, person_of: np.ndarray, n_people: int) -> np.ndarray:
    """[Q, n_people]: for each query row of d [Q, G] the smallest entry among each person's columns."""
    out = np.full((d.shape[0], n_people), np.inf, dtype=np.float64)
    counts = np.bincount(person_of, minlength=n_people)
    if d.shape[0] and d.shape[1]:
        # Columns grouped by person, then one minimum per group (ufunc.at is unbuffered, 10x slower).
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[counts > 0]
        grouped = d if np.all(person_of[:-1] <= person_of[1:]) else d[:, np.argsort(person_of, kind="stable")]
        out[:, counts > 0] = np.minimum.reduceat(grouped, starts, axis=1)
    return out


def _walk_to_person(z: np.ndarray, person_of: np.ndarray, n_people: int) -> np.ndarray:
    """[G, P] cosine distance of every enrolled walk to every person's nearest walk (its own
    walk excluded, so a person with one walk is at infinity from themselves)."""
    order = np.argsort(person_of, kind="stable")  # walks grouped by person: no column gather below
    zs = z[order]
    d = np.clip(1.0 - zs @ zs.T, 0.0, 2.0)  # min is exact in any precision: float64 only for the [G, P] result
    np.fill_diagonal(d, np.inf)
    m = np.empty((len(z), n_people))
    m[order] = per_person_min(d, person_of[order], n_people)
    return m


class _SortedImpostors:
    """Each person's impostor distances (the column of m [G, P] without that person's own rows or
    non-finite entries), sorted once, so that the quantile of any column is a lookup, also with
    one person's rows taken out (`levels(without=p)`): the leave-one-person-out calibration then
    costs O(P^2) lookups instead of P^2 quantiles over G rows (it grew with the cube of the
    gallery and took seconds at 100 people)."""

    def __init__(self, m: np.ndarray, person_of: np.ndarray) -> None:
        m = np.array(m, dtype=np.float64)
        m[person_of[:, None] == np.arange(m.shape[1])[None, :]] = np.inf  # a person is no impostor to themself
        m[~np.isfinite(m)] = np.inf
        order = np.argsort(m, axis=0, kind="stable")
        self.sorted = np.take_along_axis(m, order, axis=0)  # [G, P], the impostors first, inf after
        self.rank = np.empty_like(order)  # [G, P]: where row g sits in column p's order
        np.put_along_axis(self.rank, order, np.arange(m.shape[0])[:, None], axis=0)
        self.count = np.isfinite(m).sum(axis=0)  # impostors per column
        self.finite = np.isfinite(m)
        self.person_of = person_of

    def levels(self, q: float, min_impostors: int, default: float | None, without: int | None = None
               ) -> np.ndarray:
        """Every column's q-quantile (numpy's linear interpolation), computed without the rows
        of person `without`; `default` where too few impostors remain."""
        count = self.count
        gone = np.zeros((0, self.sorted.shape[1]), dtype=np.int64)
        if without is not None:
            rows = np.flatnonzero(self.person_of == without)
            gone = np.where(self.finite[rows], self.rank[rows], np.iinfo(np.int64).max)  # [k, P]
            count = count - self.finite[rows].sum(axis=0)
        pos = q * np.maximum(count - 1, 0)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
        a, b = self._nth(lo, gone), self._nth(hi, gone)
        with np.errstate(invalid="ignore"):  # inf - inf where no impostor is left: replaced below
            levels = a + (b - a) * (pos - lo)
        levels = np.where(count >= max(min_impostors, 1), levels, default or 1.0)
        return np.maximum(levels, 1e-6)

    def _nth(self, t: np.ndarray, gone: np.ndarray) -> np.ndarray:
        """Per column, the t-th smallest remaining impostor once the ranks in `gone` are taken out."""
        j = t.copy()
        for _ in range(len(gone) + 1):  # j = t + how many taken-out ranks lie at or below j; settles in k steps
            j = t + (gone <= j[None, :]).sum(axis=0)
        j = np.minimum(j, len(self.sorted) - 1)
        return np.take_along_axis(self.sorted, j[None, :], axis=0)[0]


def _levels_from(m: np.ndarray, person_of: np.ndarray, q: float, min_impostors: int, default: float | None
                 ) -> np.ndarray:
    """Impostor level of each person from walk-to-person distances m [G, P], using the rows of
    other people only."""
    if m.shape[1] == 0:
        return np.zeros(0)
    return _SortedImpostors(m, person_of).levels(q, min_impostors, default)


def person_levels(z: np.ndarray, labels: np.ndarray, q: float, min_impostors: int = 1,
                  default: float | None = None) -> np.ndarray:
    """Each person's impostor level (people in sorted label order): the q-quantile of the
    distances from other people's walks to that person's nearest walk; `default` where fewer
    than `min_impostors` such walks exist."""
    _, person_of = np.unique(np.asarray(labels), return_inverse=True)
    n = int(person_of.max()) + 1 if len(person_of) else 0
    return _levels_from(_walk_to_person(z, person_of, n), person_of, q, min_impostors, default)


def normalised(zq: np.ndarray, zg: np.ndarray, person_of: np.ndarray, levels: np.ndarray, n_people: int
               ) -> np.ndarray:
    """[Q, P] distance of query vectors to each person's nearest walk, over the person's level."""
    d = np.clip(1.0 - zq @ zg.T, 0.0, 2.0)
    return per_person_min(d, person_of, n_people) / levels[None, :]


def _divide(nearest: np.ndarray, second: np.ndarray) -> np.ndarray:
    """nearest / second; at distance 0 from two people (the same walk enrolled under two names)
    they tie: ratio 1, so neither is named."""
    nearest, second = np.asarray(nearest, np.float64), np.asarray(second, np.float64)
    return np.where(second > 0, nearest / np.maximum(second, 1e-12), np.where(nearest > 0, np.inf, 1.0))


def ratio(d: np.ndarray, person: int, cap: float = np.inf) -> float:
    """Open-set score of a normalised distance row d [P] for `person`: d[person] over the nearest
    other person's (cohort included), that one taken at most `cap` (a gallery of few people has
    no close second)."""
    return float(ratios_for(np.asarray(d)[None], np.array([person]), cap)[0])


def ratios_for(d: np.ndarray, persons: np.ndarray, cap: float = np.inf) -> np.ndarray:
    """`ratio` of each row of d [Q, P] for its person in `persons` [Q], in one pass."""
    rows = np.arange(len(d))
    rest = np.array(d, np.float64)
    rest[rows, persons] = np.inf
    second = np.minimum(rest.min(axis=1) if d.shape[1] else np.full(len(d), np.inf), cap)
    return _divide(d[rows, persons], second)


def open_scores(d: np.ndarray, named: int, cap: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """(nearest enrolled person [Q], its `ratio` [Q]) for normalised distances d [Q, P] whose
    first `named` columns are enrolled people and the rest the cohort."""
    best = d[:, :named].argmin(axis=1)
    return best, ratios_for(d, best, cap)


def ratios(d: np.ndarray, cap: float = np.inf) -> np.ndarray:
    """`ratio` of every row's nearest person, with no cohort: [Q]."""
    return open_scores(d, d.shape[1], cap)[1]


def loo_scores(z: np.ndarray, person_of: np.ndarray, named: int, q: float, min_impostors: int, default: float,
               cap: float = np.inf) -> np.ndarray:
    """Open-set scores of every enrolled walk against the gallery without its own person, with
    every level recomputed without that person too (as for a real stranger). People `named` and
    above are the cohort: never left out, never named."""
    n = int(person_of.max()) + 1 if len(person_of) else 0
    if named < 2:
        return np.zeros(0)
    m = _walk_to_person(z, person_of, n)
    impostors = _SortedImpostors(m, person_of)
    scores = []
    for p in range(named):
        rest = np.delete(np.arange(n), p)
        levels = impostors.levels(q, min_impostors, default, without=p)[rest]
        scores.append(open_scores(m[np.ix_(person_of == p, rest)] / levels[None, :], named - 1, cap)[1])
    return np.concatenate(scores)


PRIOR_SIZES = (1, 2, 3, 4, 6, 9)  # gallery sizes below MIN_PEOPLE with stranger scores of their own


def cross_fitted_scores(descriptors: np.ndarray, labels: np.ndarray, fit: Callable[[np.ndarray], MatcherParams],
                        groups: int = 5, seed: int = 0, sizes: tuple[int, ...] = (), cohort: bool = False
                        ) -> dict[int, np.ndarray]:
    """Stranger scores when the projection is fitted on labelled walks: people split into
    `groups`; each group's walks are scored against the other people, with the projection
    fitted without the group (so they are strangers to it as well). Key 0: against all the
    other people; key n in `sizes`: against galleries of n people drawn from them (10 draws),
    the rest of them the cohort when `cohort` is set (as the app's matcher carries one)."""
    from gaitcam.identity.matcher import MIN_IMPOSTORS

    people, person_of = np.unique(np.asarray(labels), return_inverse=True)
    rng = np.random.default_rng(seed)
    group_of = rng.permutation(len(people)) % groups
    out: dict[int, list[np.ndarray]] = {}
    for g in range(groups):
        held = group_of[person_of] == g
        train = np.flatnonzero(~held)
        if not held.any() or len(np.unique(person_of[train])) < 2:
            continue
        params = fit(train)
        zg, zq = params.project(descriptors[train]), params.project(descriptors[held])
        _, sub_of = np.unique(person_of[train], return_inverse=True)
        n = int(sub_of.max()) + 1
        for size in (0, *sizes):
            for _ in range(1 if size == 0 else 10):
                chosen = np.arange(n) if size == 0 else rng.choice(n, min(size, n), replace=False)
                # enrolled people first (0..k-1), then the cohort (the other training people)
                rank = np.full(n, -1)
                rank[chosen] = np.arange(len(chosen))
                if cohort and size:
                    rest = np.setdiff1d(np.arange(n), chosen)
                    rank[rest] = len(chosen) + np.arange(len(rest))
                rows = rank[sub_of] >= 0
                of = rank[sub_of[rows]]
                k = int(of.max()) + 1
                levels = _levels_from(_walk_to_person(zg[rows], of, k), of, params.loc_quantile, MIN_IMPOSTORS,
                                      params.loc)
                d = normalised(zq, zg[rows], of, levels, k)
                out.setdefault(size, []).append(open_scores(d, len(chosen), params.ratio_cap)[1])
    return {size: np.concatenate(parts) for size, parts in out.items()}


@dataclass(frozen=True)
class Calibration:
    """The threshold a gallery chose, and why (for logs, events and reports)."""

    threshold: float  # on the `ratio` score: at most this names someone
    fpir: float  # the rate asked for
    people: int  # enrolled people
    samples: int  # stranger scores it rests on
    source: str  # "gallery" (leave-one-person-out), "training walks" (too few people) or given
    method: str  # "empirical quantile" or "log-normal prediction bound"

    def describe(self) -> str:
        return (f"threshold {self.threshold:.3f} for FPIR {100 * self.fpir:g} %: {self.method} of "
                f"{self.samples} stranger scores from the {self.source} ({self.people} people enrolled)")


def threshold_for(scores: np.ndarray, fpir: float, people: int | None = None) -> tuple[float, str]:
    """The threshold below which a new stranger falls with probability `fpir`: the empirical
    (interpolated) quantile of the stranger scores when they come from enough people to reach that
    far into the tail, else the log-normal prediction bound, exp(mean + t(fpir, n - 1) * sd *
    sqrt(1 + 1/n)) of the log scores, with n the people they come from.

    `people`: how many people the scores come from (default: every score its own). A person's
    walks score alike, so the tail holds about one draw per person: the empirical 1 % quantile of
    165 walks of 41 people is near their single lowest person and names strangers at about
    three times the rate asked. The bound, unlike the fitted quantile alone, counts the
    uncertainty of a mean and spread fitted from n people: the fitted quantile named strangers at
    2.9 % on average at sites of 10 people and 0.5 % at 41, the bound at 1.2 % and 0.6 %
    (measured in docs/experiments/cross_site_threshold.py).
    """
    scores = np.asarray(scores, np.float64)
    scores = scores[np.isfinite(scores) & (scores > 0)]
    independent = len(scores) if people is None else min(people, len(scores))
    if independent * fpir >= 1:
        return float(np.quantile(scores, fpir)), "empirical quantile"
    if independent >= 3:
        log = np.log(scores)
        spread = log.std(ddof=1) * np.sqrt(1 + 1 / independent)
        return float(np.exp(log.mean() + student_t.ppf(fpir, independent - 1) * spread)), "log-normal prediction bound"
    raise GaitcamError(f"stranger scores from {independent} people are too few to calibrate a threshold; "
                       "run fit-matcher on more people")


def calibrate(z: np.ndarray, person_of: np.ndarray, named: int, params: MatcherParams, fpir: float,
              scores: np.ndarray | None = None, source: str = "gallery") -> Calibration:
    """The threshold for `fpir` from the gallery's own leave-one-person-out scores (or the
    `scores` given). A gallery of under MIN_PEOPLE people uses the scores held-out training
    people got against training galleries of its size (the largest size not above it). People
    `named` and above in `person_of` are the cohort."""
    from gaitcam.identity.matcher import MIN_IMPOSTORS

    if not 0 < fpir < 1:
        raise ValueError(f"FPIR must lie strictly between 0 and 1, got {fpir}")
    people, independent = named, None
    if scores is None:
        if people >= MIN_PEOPLE:
            scores = loo_scores(z, person_of, named, params.loc_quantile, MIN_IMPOSTORS, params.loc, params.ratio_cap)
            independent = people
        else:
            size = max([s for s in params.prior_scores if 0 < s <= people], default=0)
            scores, source = params.prior_scores.get(size, np.zeros(0)), f"training walks ({size}-person galleries)"
    threshold, method = threshold_for(scores, fpir, independent)
    return Calibration(threshold, fpir, people, int(len(scores)), source, method)
