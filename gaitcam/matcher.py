"""The matcher: names each tracked person from all of their track so far, or says "unknown".

Evidence for a track (or an enrolled walk) is two descriptors, kept as running sums:

- gait: the mean over its windows of the window's AGE (its f frame-level AGEs averaged),
  standardised per dimension with fixed statistics, compared by cosine distance;
- body shape: median bone lengths, standardised per bone, compared by L1 distance.

Each distance is divided by its typical value between two different walks and the two are
averaged with equal weights. Nothing here is fitted to identity labels except the threshold:
the statistics and scales are label-free (`MatcherParams.fit`), the equal weighting is fixed
in advance, so Rank-k figures measure the encoder and the shape, not a tuned fusion.

A track is named when its fused distance to the nearest enrolled walk of a person is at most
`threshold` (calibrated on training walks only; see `MatcherParams.fit`), that is when its
score is at least `min_score` = 0.5; users may raise or lower `min_score` in the config. Tracks visible at
the same time are assigned jointly (Hungarian), so one name never goes to two people.
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from gaitcam.errors import GaitcamError
from gaitcam.skeleton.shape import N_BONES, bone_lengths, body_shape

MAX_SHAPE_FRAMES = 2048  # bone-length rows a track keeps: the median of the last ~70 s


@dataclass
class Evidence:
    """Running evidence of one track or one enrolment: AGE sum and recent bone lengths."""

    age_dim: int
    age_sum: np.ndarray = None  # type: ignore[assignment]
    windows: int = 0
    lengths: deque = field(default_factory=lambda: deque(maxlen=MAX_SHAPE_FRAMES))

    def __post_init__(self) -> None:
        if self.age_sum is None:
            self.age_sum = np.zeros(self.age_dim, dtype=np.float64)

    def add(self, ages: np.ndarray, windows: np.ndarray) -> None:
        """ages [n, f * D] or [n, f, D] (or [n, D]); windows [n, f, 20, 3] canonical metres."""
        ages = np.asarray(ages, dtype=np.float32)
        if len(ages) == 0:
            return
        self.age_sum += window_descriptors(ages, self.age_dim).sum(axis=0, dtype=np.float64)
        self.windows += len(ages)
        # The newest frame of each window: at stride 1 every frame enters once.
        self.lengths.extend(bone_lengths(np.asarray(windows)[:, -1]))

    @property
    def age(self) -> np.ndarray:
        return (self.age_sum / max(self.windows, 1)).astype(np.float32)

    @property
    def shape(self) -> np.ndarray:
        return body_shape(np.array(self.lengths)) if self.lengths else np.full(N_BONES, np.nan, np.float32)


def window_descriptors(ages: np.ndarray, age_dim: int) -> np.ndarray:
    """One [D] descriptor per window: the mean of its frame-level AGEs."""
    ages = np.asarray(ages, dtype=np.float32)
    if len(ages) == 0:
        return np.zeros((0, age_dim), dtype=np.float32)
    return ages.reshape(len(ages), -1, age_dim).mean(axis=1)


@dataclass
class MatcherParams:
    """Fixed statistics, scales and threshold for one encoder version (a JSON file beside it)."""

    encoder_version: str
    age_mean: np.ndarray
    age_std: np.ndarray
    shape_mean: np.ndarray
    shape_std: np.ndarray
    age_scale: float  # median gait distance between two different walks
    shape_scale: float  # median shape distance between two different walks
    threshold: float  # calibrated fused distance; the score is scaled so that it maps to 0.5
    min_windows: int = 10  # evidence before a track may be named (10 windows = 1 s at stride 3)
    min_score: float = 0.5  # scores below this are "unknown" (0.5: exactly the calibrated threshold)
    notes: dict = field(default_factory=dict)

    @property
    def age_dim(self) -> int:
        return len(self.age_mean)

    def save(self, path: str | Path) -> None:
        data = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(self).items()}
        Path(path).write_text(json.dumps(data, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> MatcherParams:
        try:
            data = json.loads(Path(path).read_text())
            arrays = {k: np.asarray(data[k], dtype=np.float32)
                      for k in ("age_mean", "age_std", "shape_mean", "shape_std")}
            return cls(**{**data, **arrays})
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise GaitcamError(f"{path}: cannot read matcher parameters ({e})") from e

    def named(self, fused: np.ndarray | float) -> np.ndarray | bool:
        """Whether a fused distance is close enough to give a name."""
        return np.asarray(self.score(fused)) >= self.min_score

    @classmethod
    def fit(cls, encoder_version: str, ages: list[np.ndarray], shapes: list[np.ndarray],
            labels: list[str], target_fpir: float = 0.05, min_windows: int = 10,
            notes: dict | None = None) -> MatcherParams:
        """Fit on training walks: per-walk mean AGEs [D] and median bone lengths [19], with labels.

        Statistics and scales ignore the labels. The threshold is the `target_fpir` quantile of
        impostor distances: each walk against all walks of every *other* person, its best match,
        i.e. what a stranger's walk scores against a gallery that does not hold them.
        """
        a, s = np.asarray(ages, np.float64), np.asarray(shapes, np.float64)
        lab = np.asarray(labels)
        if len(np.unique(lab)) < 2:
            raise GaitcamError("fitting the matcher needs walks of at least two people")
        params = cls(encoder_version, a.mean(0).astype(np.float32), (a.std(0) + 1e-6).astype(np.float32),
                     np.nanmean(s, 0).astype(np.float32), (np.nanstd(s, 0) + 1e-6).astype(np.float32),
                     1.0, 1.0, np.inf, min_windows=min_windows, notes=notes or {})
        da, ds = params.component_distances(a, s, a, s)
        off = ~np.eye(len(a), dtype=bool)
        params.age_scale = float(np.median(da[off]))
        params.shape_scale = float(np.median(ds[off]))
        fused = params.fuse(da, ds)
        impostor = np.where(lab[:, None] == lab[None, :], np.inf, fused).min(axis=1)
        params.threshold = float(np.quantile(impostor, target_fpir))
        params.notes = {**params.notes, "target_fpir": target_fpir, "walks": int(len(a)),
                        "people": int(len(np.unique(lab)))}
        return params

    def component_distances(self, qa: np.ndarray, qs: np.ndarray, ga: np.ndarray, gs: np.ndarray
                            ) -> tuple[np.ndarray, np.ndarray]:
        """Gait (cosine) and shape (L1) distances [Q, G] between descriptors, unscaled."""
        za, zg = _unit((qa - self.age_mean) / self.age_std), _unit((ga - self.age_mean) / self.age_std)
        da = np.clip(1.0 - za @ zg.T, 0.0, 2.0)
        sq, sg = (qs - self.shape_mean) / self.shape_std, (gs - self.shape_mean) / self.shape_std
        # L1, not L2: one mis-tracked bone must not dominate (chosen on a validation split of
        # KGBD's training walks, see the README). A bone one side never saw counts as no difference.
        ds = np.abs(np.nan_to_num(sq[:, None, :] - sg[None, :, :], nan=0.0)).sum(-1)
        return da.astype(np.float32), ds.astype(np.float32)

    def fuse(self, da: np.ndarray, ds: np.ndarray) -> np.ndarray:
        return 0.5 * da / self.age_scale + 0.5 * ds / self.shape_scale

    def score(self, fused: np.ndarray | float) -> np.ndarray | float:
        """Distance as a similarity: 1 identical, 0.5 at the threshold, 0 at twice it or beyond."""
        return np.clip(1.0 - np.asarray(fused) / (2.0 * self.threshold), 0.0, 1.0)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class GalleryIndex:
    """Enrolled walks as descriptors: one row per enrolment, several rows per person."""

    def __init__(self, names: list[str], ages: np.ndarray, shapes: np.ndarray, params: MatcherParams) -> None:
        self.names = list(names)
        self.people = sorted(set(self.names))
        self.ages = np.asarray(ages, np.float32).reshape(len(self.names), params.age_dim)
        self.shapes = np.asarray(shapes, np.float32).reshape(len(self.names), N_BONES)
        self.params = params
        self._person = np.array([self.people.index(n) for n in self.names], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.people)

    def distances(self, ages: np.ndarray, shapes: np.ndarray, what: str = "fused") -> np.ndarray:
        """[Q, P] distance of each query to each person (nearest of their enrolments).

        `what`: "fused" (the shipped matcher), "age" or "shape" (the single cues, scaled)."""
        q_a = np.asarray(ages, np.float32).reshape(-1, self.params.age_dim)
        q_s = np.asarray(shapes, np.float32).reshape(-1, N_BONES)
        out = np.full((len(q_a), len(self.people)), np.inf, dtype=np.float32)
        if not self.names:
            return out
        da, ds = self.params.component_distances(q_a, q_s, self.ages, self.shapes)
        d = {"fused": lambda: self.params.fuse(da, ds), "age": lambda: da / self.params.age_scale,
             "shape": lambda: ds / self.params.shape_scale}[what]()
        np.minimum.at(out.T, self._person, d.T)
        return out


@dataclass
class Decision:
    """What the matcher says about one track now."""

    identity: str | None  # None: unknown, or not enough evidence yet
    score: float  # similarity to `candidate` (0.5 = the threshold); NaN while pending, 0 with no one enrolled
    candidate: str | None  # the nearest enrolled person, named or not; None with no one enrolled
    windows: int  # windows of evidence behind the decision

    @property
    def pending(self) -> bool:
        """Not enough evidence yet to say anything (a decided track always has a finite score)."""
        return not np.isfinite(self.score)


class Matcher:
    """Track-level open-set matching against a gallery index (the stream's `TrackMatcher`)."""

    def __init__(self, index: GalleryIndex, params: MatcherParams) -> None:
        self.index = index
        self.params = params
        self.tracks: dict[int, Evidence] = {}

    def observe(self, track: int, time: float, ages: np.ndarray, windows: np.ndarray) -> None:
        self.tracks.setdefault(track, Evidence(self.params.age_dim)).add(ages, windows)

    def forget(self, track: int) -> None:
        self.tracks.pop(track, None)

    def decide(self, time: float, tracks: list[int]) -> dict[int, Decision]:
        """Decisions for the tracks visible now; tracks with too little evidence stay pending.

        With no one enrolled a track with enough evidence is a stranger, not "too short to
        tell": it gets an explicit unknown (score 0, no candidate)."""
        out = {t: Decision(None, float("nan"), None, self.tracks[t].windows if t in self.tracks else 0)
               for t in tracks}
        ready = [t for t in tracks if t in self.tracks and self.tracks[t].windows >= self.params.min_windows]
        if not len(self.index):
            out.update({t: Decision(None, 0.0, None, self.tracks[t].windows) for t in ready})
            return out
        if not ready:
            return out
        ev = [self.tracks[t] for t in ready]
        d = self.index.distances(np.stack([e.age for e in ev]), np.stack([e.shape for e in ev]))
        for i, t in enumerate(ready):  # everyone first gets their nearest person as candidate ...
            j = int(d[i].argmin())
            out[t] = Decision(None, float(self.params.score(d[i, j])), self.index.people[j], ev[i].windows)
        rows, cols = linear_sum_assignment(d)  # ... and a name only through the joint assignment
        for i, j in zip(rows, cols):
            if self.params.named(d[i, j]):
                out[ready[i]] = Decision(self.index.people[j], float(self.params.score(d[i, j])),
                                         self.index.people[j], ev[i].windows)
        return out
