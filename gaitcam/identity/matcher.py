"""The matcher: names each tracked person from all of their track so far, or says "unknown".

Evidence for a track (or an enrolled walk) is kept as running sums and becomes one descriptor:

- gait: the mean and the standard deviation, over the track's windows and their mirror images,
  of the window AGE (its f frame-level AGEs averaged): how the person moves within 0.2 s, how
  much that varies, and how far each window is from its mirror image (how asymmetric the walk is);
- cycle: the log mean spectrum of 1-second body-frame segments (`skeleton.cycle`): cadence and
  the swing of each joint over a stride;
- shape: median bone lengths over frames where both ends were tracked (`skeleton.shape`); a
  bone never measured is filled with its conditional mean given the measured ones.

All three are mirror-invariant: AGEs are pooled with their mirror image's (the encoder's
`mirror`), spectra averaged with it (`segment_spectra`), bone lengths pooled with their
other-side twins, so a sensor that mirrors gives the same descriptor.

Descriptors are standardised, reduced by PCA and whitened by the within-person scatter of
labelled training walks (`MatcherParams.fit`: PCA then within-class covariance normalisation,
so the directions in which one person's walks differ weigh least), and compared by cosine
distance. A query's distance to a person is the distance to their nearest enrolled walk,
divided by that person's own impostor level (how close other enrolled people come to them), so
a person who resembles many others ("a hub") does not attract strangers. The open-set score is
the ratio of the nearest person's normalised distance to the second nearest: a stranger sits
about as close to two people, an enrolled person much closer to one. Below the threshold that
`openset.calibrate` chose from the gallery itself for the target FPIR, the track is named.
Tracks visible at the same time are assigned jointly (Hungarian), so one name never goes to
two people.

Choices (blocks, PCA size, the normalisation and the ratio) were made on a validation split of
KGBD's training walks that never touches a probe walk; docs/accuracy.md has the grid.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file
from scipy.optimize import linear_sum_assignment

from gaitcam.errors import GaitcamError
from gaitcam.identity import openset
from gaitcam.skeleton.cycle import CYCLE_DIM, cycle_descriptor, segment_spectra
from gaitcam.skeleton.shape import SHAPE_BONES, RunningShape, bone_lengths

MAX_SHAPE_FRAMES = 2048  # bone-length rows a track keeps: the median of the last ~3 min at stride 3
BLOCKS = ("gait", "cycle", "shape")
PCA_DIMS = 224  # chosen on the validation split (docs/accuracy.md)
SHRINK = 1e-2  # within-class scatter is shrunk towards a multiple of the identity by this share
LOC_QUANTILE = 0.1  # a person's impostor level: this quantile of other walks' distances to them
MIN_IMPOSTORS = 4  # fewer impostor walks than this: the level fitted on the training walks
RATIO_CAP = 1.0  # at most a typical impostor: a gallery of few people has no close second
DESCRIPTOR_VERSION = 4  # the meaning of a descriptor; templates of another version are rebuilt


def window_descriptors(ages: np.ndarray, age_dim: int) -> np.ndarray:
    """One [D] descriptor per window, the mean of its frame-level AGEs: [n, D] from [n, f * D],
    [n, f, D] or [n, D]; [n, 2, D] from a window's and its mirror image's ([n, 2, f * D] or
    [n, 2, f, D], `GaitEncoder.encode(mirror=True)`)."""
    ages = np.asarray(ages, dtype=np.float32)
    if ages.ndim == 2:  # [n, f * D] or [n, D]
        return ages.reshape(len(ages), ages.shape[1] // age_dim, age_dim).mean(axis=1)
    if ages.ndim == 3 and ages.shape[-1] == age_dim:  # [n, f, D]
        return ages.mean(axis=1)
    if ages.ndim == 3:  # [n, 2, f * D]
        ages = ages.reshape(*ages.shape[:2], ages.shape[2] // age_dim, age_dim)
    return ages.mean(axis=2)


@dataclass
class Evidence:
    """Running evidence of one track or one enrolled walk: sums of window descriptors and of
    segment spectra, and the body shape of recent bone lengths (`RunningShape`)."""

    age_dim: int
    age_sum: np.ndarray = None  # type: ignore[assignment]
    age_sq: np.ndarray = None  # type: ignore[assignment]
    windows: int = 0
    cycle_sum: np.ndarray = None  # type: ignore[assignment]
    segments: int = 0
    bones: RunningShape = field(default_factory=lambda: RunningShape(MAX_SHAPE_FRAMES))

    def __post_init__(self) -> None:
        for name, dim in (("age_sum", self.age_dim), ("age_sq", self.age_dim), ("cycle_sum", CYCLE_DIM)):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(dim, dtype=np.float64))

    def add(self, ages: np.ndarray, joints: np.ndarray, tracked: np.ndarray | None = None) -> None:
        """Window AGEs (any shape `window_descriptors` takes) with the windows' joints [n, f, 20, 3]
        and tracked flags [n, f, 20]; each window's newest frame gives a row of bone lengths."""
        d = window_descriptors(ages, self.age_dim).astype(np.float64)
        if not len(d):
            return
        self.add_descriptors(d, bone_lengths(np.asarray(joints)[:, -1],
                                             None if tracked is None else np.asarray(tracked)[:, -1]))

    def add_descriptors(self, descriptors: np.ndarray, lengths: np.ndarray) -> None:
        """Window descriptors [n, D], or [n, 2, D] (each window's and its mirror image's), and
        bone-length rows [m, 19] (NaN: not measured). A window's two descriptors are pooled as
        two equal halves of it: the gait block's mean is that of their average, its spread also
        holds how far apart they are (how asymmetric the walk is, whichever its side)."""
        d = np.asarray(descriptors, np.float64)
        d = d.reshape(len(d), 1 if d.ndim == 2 else d.shape[1], self.age_dim)
        self.age_sum += d.mean(axis=1).sum(axis=0)
        self.age_sq += (d ** 2).mean(axis=1).sum(axis=0)
        self.windows += len(d)
        self.bones.extend(lengths)

    def add_spectra(self, spectra: np.ndarray) -> None:
        """Spectra [m, CYCLE_DIM] of gait-cycle segments (`skeleton.cycle.segment_spectra`)."""
        spectra = np.asarray(spectra, np.float64).reshape(-1, CYCLE_DIM)
        self.cycle_sum += spectra.sum(axis=0)
        self.segments += len(spectra)

    def descriptor(self, blocks: Sequence[str] = BLOCKS) -> np.ndarray:
        """The descriptor of the blocks asked for, concatenated; NaN marks what was not measured."""
        parts = []
        for block in blocks:
            if block == "gait":
                n = max(self.windows, 1)
                mean = self.age_sum / n
                std = np.sqrt(np.maximum(self.age_sq / n - mean ** 2, 0.0))
                parts += [mean, std] if self.windows else [np.full(2 * self.age_dim, np.nan)]
            elif block == "cycle":
                parts.append(cycle_descriptor(self.cycle_sum, self.segments) if self.segments
                             else np.full(CYCLE_DIM, np.nan))
            elif block == "shape":
                parts.append(self.bones.shape())
            else:
                raise ValueError(f"unknown descriptor block {block!r}; known: {BLOCKS}")
        return np.concatenate(parts).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[A, B] cosine distances between unit rows (clipped to [0, 2])."""
    return np.clip(1.0 - a @ b.T, 0.0, 2.0)


@dataclass
class MatcherParams:
    """How descriptors are compared, fitted on labelled training walks for one encoder version.

    Stored beside the weights as NAME.matcher.json (scalars) + NAME.matcher.safetensors (arrays).
    """

    encoder_version: str
    blocks: tuple[str, ...]
    age_dim: int
    mean: np.ndarray  # [D] standardisation
    std: np.ndarray  # [D]
    projection: np.ndarray  # [D, k] PCA then within-class whitening
    shape_mean: np.ndarray  # [15] bone lengths, for filling bones a track never measured
    shape_cov: np.ndarray  # [15, 15]
    loc: float  # a person's impostor level when the gallery holds too few others to say
    prior_scores: dict[int, np.ndarray]  # held-out training people's open-set scores, by gallery size
    cohort: np.ndarray  # [C, k] the training walks, projected: people never enrolled (`openset`)
    cohort_of: np.ndarray  # [C] which (anonymous) training person each cohort walk is
    loc_quantile: float = LOC_QUANTILE  # a person's impostor level: this quantile of others' distances
    ratio_cap: float = RATIO_CAP  # the second-nearest person's normalised distance counts at most this
    min_windows: int = 10  # evidence before a track may be named (10 windows = 1 s at stride 3)
    min_segments: int = 1  # ... and at least one gait-cycle segment (1.07 s without a break)
    min_score: float = 0.5  # scores below this are "unknown" (0.5: exactly the calibrated threshold)
    fpir: float = openset.DEFAULT_FPIR  # the false-positive identification rate the threshold aims at
    notes: dict = field(default_factory=dict)

    _ARRAYS = ("mean", "std", "projection", "shape_mean", "shape_cov", "cohort", "cohort_of")

    @property
    def template_version(self) -> str:
        return template_version(self.encoder_version)

    def save(self, path: str | Path) -> None:
        """Write PATH (JSON, e.g. weights/sgela.matcher.json) and its .safetensors beside it."""
        json_path, tensor_path = matcher_paths(path)
        scalars = {k: v for k, v in asdict(self).items() if k not in (*self._ARRAYS, "prior_scores")}
        scalars["descriptor_version"] = DESCRIPTOR_VERSION
        scalars["ratio_cap"] = None if not np.isfinite(self.ratio_cap) else self.ratio_cap
        tensors = {k: np.ascontiguousarray(getattr(self, k), np.float32) for k in self._ARRAYS}
        tensors |= {f"prior_scores_{n}": np.ascontiguousarray(v, np.float32) for n, v in self.prior_scores.items()}
        save_file(tensors, str(tensor_path))
        json_path.write_text(json.dumps(scalars, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> MatcherParams:
        json_path, tensor_path = matcher_paths(path)
        try:
            data = json.loads(json_path.read_text())
            if data.pop("descriptor_version", None) != DESCRIPTOR_VERSION:
                raise ValueError("fitted for another descriptor version; run fit-matcher again")
            arrays = load_file(str(tensor_path))
            priors = {int(k.rsplit("_", 1)[1]): v for k, v in arrays.items() if k.startswith("prior_scores_")}
            data["ratio_cap"] = np.inf if data.get("ratio_cap") is None else data["ratio_cap"]
            params = cls(**{**data, "blocks": tuple(data["blocks"]), **{k: arrays[k] for k in cls._ARRAYS},
                            "prior_scores": priors})
            params.cohort_of = params.cohort_of.astype(np.int64)
            # Descriptors are float64 (`project`): a float64 projection spares a cast per call,
            # and the product is the same to the bit.
            params.projection = params.projection.astype(np.float64)
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise GaitcamError(f"{json_path}: cannot read matcher parameters ({e})") from e
        if params.projection.shape[0] != len(params.mean):
            raise GaitcamError(f"{json_path}: matcher parameters do not fit together; run fit-matcher again")
        return params

    @classmethod
    def fit(cls, encoder_version: str, evidence: Sequence[Evidence], labels: Sequence[str],
            blocks: Sequence[str] = BLOCKS, pca: int = PCA_DIMS, shrink: float = SHRINK,
            loc_quantile: float = LOC_QUANTILE, ratio_cap: float = RATIO_CAP, calibrate: bool = True,
            cohort: bool = True, notes: dict | None = None) -> MatcherParams:
        """Fit on labelled training walks (one Evidence each); the labels shape the whitening.

        `calibrate` also cross-fits the open-set scores of held-out training people, which a
        gallery too small to calibrate itself falls back on (`prior_scores`). `cohort` keeps the
        training walks as the open-set cohort: only for training people who will never be
        enrolled (not when fitting on a gallery, or on `evaluate`'s folds).
        """
        labels = np.asarray(labels)
        if len(np.unique(labels)) < 2 or len(labels) <= len(np.unique(labels)):
            raise GaitcamError("fitting the matcher needs at least two people, one of them with two walks or more")
        age_dim = evidence[0].age_dim
        raw = np.stack([e.descriptor(blocks) for e in evidence]).astype(np.float64)
        shape_at = _block_slice(tuple(blocks), age_dim, "shape")
        shape_mean, shape_cov = np.zeros(len(SHAPE_BONES)), np.eye(len(SHAPE_BONES))
        if shape_at is not None:
            s = raw[:, shape_at]
            shape_mean = np.nanmean(s, axis=0)
            complete = s[np.isfinite(s).all(axis=1)]
            if len(complete) > len(SHAPE_BONES):
                shape_cov = np.cov(complete.T)
        params = cls(encoder_version, tuple(blocks), age_dim, np.zeros(raw.shape[1]), np.ones(raw.shape[1]),
                     np.eye(raw.shape[1]), shape_mean, shape_cov, 1.0, {}, np.zeros((0, 1), np.float32),
                     np.zeros(0, np.int32), loc_quantile, ratio_cap, notes=dict(notes or {}))
        x = params.complete(raw)
        if not np.isfinite(x).all():
            raise GaitcamError("a training walk lacks part of its descriptor (too short for a gait-cycle segment?)")
        params.mean, params.std = x.mean(axis=0), x.std(axis=0) + 1e-6
        params.projection = _whitening((x - params.mean) / params.std, labels, pca, shrink)
        z = params.project(raw)
        params.loc = float(np.median(openset.person_levels(z, labels, loc_quantile)))
        if cohort:
            params.cohort, params.cohort_of = z, np.unique(labels, return_inverse=True)[1].astype(np.int32)
        if calibrate:
            params.prior_scores = openset.cross_fitted_scores(
                raw, labels, lambda idx: cls.fit(encoder_version, [evidence[i] for i in idx], labels[idx], blocks,
                                                 pca, shrink, loc_quantile, ratio_cap, calibrate=False, cohort=False),
                # Without a cohort: at a site unlike the training people the cohort is far from
                # everyone and changes no score, so these are the scores a small gallery can count on.
                sizes=openset.PRIOR_SIZES)
        params.notes.update({"walks": int(len(labels)), "people": int(len(np.unique(labels))),
                             "pca": int(params.projection.shape[1]), "shrink": shrink,
                             "cohort_walks": int(len(params.cohort))})
        return params

    def complete(self, descriptors: np.ndarray) -> np.ndarray:
        """Descriptors [n, D] with unmeasured bones filled by their conditional mean given the
        measured ones (a Gaussian fitted on the training walks); other gaps stay NaN."""
        x = np.array(descriptors, dtype=np.float64).reshape(-1, len(self.mean))
        at = _block_slice(self.blocks, self.age_dim, "shape")
        if at is None:
            return x
        s = x[:, at]
        for row in np.flatnonzero(~np.isfinite(s).all(axis=1)):
            gone = ~np.isfinite(s[row])
            if gone.all():
                s[row] = self.shape_mean
                continue
            seen = ~gone
            cov_so = self.shape_cov[np.ix_(gone, seen)]
            cov_oo = self.shape_cov[np.ix_(seen, seen)] + 1e-9 * np.eye(seen.sum())
            s[row, gone] = self.shape_mean[gone] + cov_so @ np.linalg.solve(cov_oo, s[row, seen] - self.shape_mean[seen])
        x[:, at] = s
        return x

    def project(self, descriptors: np.ndarray) -> np.ndarray:
        """Unit vectors [n, k] in the whitened space where walks are compared."""
        x = self.complete(descriptors)
        return _unit(((x - self.mean) / self.std) @ self.projection).astype(np.float32)


def template_version(encoder_version: str) -> str:
    """What gallery templates are tagged with: the weights' version and the descriptor's, since
    both decide what a template means (a template of another version is rebuilt or refused)."""
    return f"{encoder_version}/d{DESCRIPTOR_VERSION}"


def matcher_paths(path: str | Path) -> tuple[Path, Path]:
    """`weights/sgela.matcher.json` (or without .json) -> the JSON and the safetensors file."""
    path = Path(path)
    stem = str(path.with_suffix("") if path.suffix in (".json", ".safetensors") else path)
    return Path(stem + ".json"), Path(stem + ".safetensors")


def _block_slice(blocks: tuple[str, ...], age_dim: int, name: str) -> slice | None:
    sizes = {"gait": 2 * age_dim, "cycle": CYCLE_DIM, "shape": len(SHAPE_BONES)}
    start = 0
    for b in blocks:
        if b == name:
            return slice(start, start + sizes[b])
        start += sizes[b]
    return None


def _whitening(z: np.ndarray, labels: np.ndarray, pca: int, shrink: float) -> np.ndarray:
    """[D, k]: PCA to k dimensions, then whitening of the within-person scatter (shrunk)."""
    _, _, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
    p = vt[: min(pca, len(vt))].T
    y = z @ p
    within = np.zeros((y.shape[1], y.shape[1]))
    for person in np.unique(labels):
        r = y[labels == person]
        r = r - r.mean(axis=0)
        within += r.T @ r
    within /= len(y)
    within += shrink * np.trace(within) / len(within) * np.eye(len(within))
    ev, vecs = np.linalg.eigh(within)
    return p @ (vecs / np.sqrt(np.maximum(ev, 1e-12)))


class GalleryIndex:
    """Enrolled walks as projected descriptors (one row per enrolment, several per person), the
    matcher's cohort beside them, each person's impostor level, and the open-set threshold the
    gallery calibrates for itself."""

    def __init__(self, names: list[str], descriptors: np.ndarray, params: MatcherParams,
                 fpir: float | None = None, scores: np.ndarray | None = None, source: str = "gallery") -> None:
        """`scores`: stranger scores to calibrate on instead of the gallery's own (`evaluate`
        passes cross-fitted ones when the projection was fitted on these very people)."""
        self.names = list(names)
        self.people = sorted(set(self.names))
        self.params = params
        k = params.projection.shape[1]
        z = params.project(descriptors) if self.names else np.zeros((0, k), np.float32)
        column = {name: i for i, name in enumerate(self.people)}
        person_of = np.array([column[n] for n in self.names], dtype=np.int64)
        cohort = params.cohort if len(params.cohort) and params.cohort.shape[1] == k else np.zeros((0, k), np.float32)
        # Enrolled people are columns 0..P-1 of every distance row, the cohort's people after them.
        self.z = np.concatenate([z, cohort]).astype(np.float32)
        self.person_of = np.concatenate([person_of, len(self.people) + params.cohort_of[: len(cohort)]]).astype(np.int64)
        self.n_columns = int(self.person_of.max()) + 1 if len(self.person_of) else 0
        self.levels = openset.person_levels(self.z, self.person_of, params.loc_quantile, MIN_IMPOSTORS, params.loc)
        self.calibration = (openset.calibrate(self.z, self.person_of, len(self.people), params,
                                              fpir or params.fpir, scores, source)
                            if self.names else None)  # no one enrolled: everyone is a stranger anyway

    def __len__(self) -> int:
        return len(self.people)

    @property
    def threshold(self) -> float:
        return self.calibration.threshold if self.calibration else float("nan")

    def distances(self, descriptors: np.ndarray) -> np.ndarray:
        """[Q, P + cohort] normalised distance of each query to each person (their nearest
        walk): the enrolled people's columns first, in `people` order."""
        return openset.normalised(self.params.project(descriptors), self.z, self.person_of, self.levels,
                                  self.n_columns)

    def score(self, d: np.ndarray, person: int) -> float:
        """Open-set score of one query row `d` for enrolled `person`: 1 identical, 0.5 at the
        threshold, 0 at twice it."""
        return float(self.scores(np.asarray(d)[None], np.array([person]))[0])

    def scores(self, d: np.ndarray, persons: np.ndarray) -> np.ndarray:
        """`score` of each query row of d [Q, P + cohort] for its person in `persons` [Q]."""
        ratios = openset.ratios_for(d, persons, self.params.ratio_cap)
        return np.clip(1.0 - ratios / (2.0 * self.threshold), 0.0, 1.0)


@dataclass
class Decision:
    """What the matcher says about one track now."""

    identity: str | None  # None: unknown, or not enough evidence yet
    score: float  # open-set score for `candidate` (0.5 = the threshold); NaN while pending, 0 with no one enrolled
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

    def _evidence(self, track: int) -> Evidence:
        ev = self.tracks.get(track)
        if ev is None:  # (not setdefault: that would build an Evidence at every call)
            ev = self.tracks[track] = Evidence(self.params.age_dim)
        return ev

    def observe(self, track: int, time: float, ages: np.ndarray, joints: np.ndarray,
                tracked: np.ndarray | None = None) -> None:
        self._evidence(track).add(ages, joints, tracked)

    def observe_segments(self, segments: dict[int, np.ndarray]) -> None:
        """New gait-cycle segments by track, all of one frame: their spectra as one batch."""
        if not segments:
            return
        spectra = segment_spectra(np.concatenate(list(segments.values())))  # one batch: half the time
        for track, part in zip(segments, np.split(spectra, np.cumsum([len(s) for s in segments.values()])[:-1])):
            self._evidence(track).add_spectra(part)

    def forget(self, track: int) -> None:
        self.tracks.pop(track, None)

    def ready(self, track: int) -> bool:
        ev = self.tracks.get(track)
        return ev is not None and ev.windows >= self.params.min_windows and ev.segments >= self.params.min_segments

    def decide(self, time: float, tracks: list[int]) -> dict[int, Decision]:
        """Decisions for the tracks visible now; tracks with too little evidence stay pending.

        With no one enrolled a track with enough evidence is a stranger, not "too short to
        tell": it gets an explicit unknown (score 0, no candidate)."""
        index = self.index  # read once: another thread may swap in a new gallery meanwhile
        out = {t: Decision(None, float("nan"), None, self.tracks[t].windows if t in self.tracks else 0)
               for t in tracks}
        ready = [t for t in tracks if self.ready(t)]
        if not len(index):
            out.update({t: Decision(None, 0.0, None, self.tracks[t].windows) for t in ready})
            return out
        if not ready:
            return out
        ev = [self.tracks[t] for t in ready]
        d = index.distances(np.stack([e.descriptor(self.params.blocks) for e in ev]))
        people = index.people
        nearest = d[:, : len(people)].argmin(axis=1)  # everyone first gets their nearest person as candidate ...
        for t, e, j, score in zip(ready, ev, nearest.tolist(), index.scores(d, nearest).tolist()):
            out[t] = Decision(None, score, people[j], e.windows)
        rows, cols = linear_sum_assignment(d[:, : len(people)])  # ... and a name only through the joint assignment
        for i, j, score in zip(rows.tolist(), cols.tolist(), index.scores(d[rows], cols).tolist()):
            if score >= self.params.min_score:
                out[ready[i]] = Decision(people[j], score, people[j], ev[i].windows)
        return out
