"""`python main.py evaluate`: the app's matcher on labelled folders, open set, honestly.

`DIR/<identity>/<recording file>` in any supported format, a gallery folder and a probe folder.
Every recording is read and encoded once, through the same window rule and encoder as `enroll`
and `identify`. Then, in folds (ISO/IEC 19795-1, NIST FRVT 1:N style), every identity is a
stranger exactly once: in fold k the identities of fold k are left out of the gallery, every one
of their walks (gallery and probe folders) is a stranger probe, the other identities' gallery
walks are enrolled and their probe walks are the enrolled probes. Whatever is fitted with labels
(the matcher's whitening, the open-set threshold) is fitted on the fold's enrolled gallery only,
never on its strangers or on any probe.

Reported, from the same encodings:
- closed set (enrolled probes against the fold's gallery): Rank-1, Rank-5, mAP, CMC;
- open set: FNIR at FPIR 1 % and 0.3 % (the threshold at which that share of stranger probes get
  a name; FNIR counts enrolled probes not given their own name), DIR at those points, a DET
  curve, and FPIR and DIR at the threshold each fold's gallery calibrated for itself (`--fpir`);
- failure to acquire (probes) and to enrol (gallery walks): rates, and why each failed;
- 95 % confidence intervals by bootstrap over identities (a person's walks resampled together);
- the shipped fusion beside each cue alone (gait, gait cycle, body shape), the plain baseline
  of a 1-nearest-neighbour on median bone lengths over tracked joints, and the gait cue fed the
  same network untrained and fed the raw normalised windows (controls for the encoder).
"""
from __future__ import annotations

import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gaitcam.config import Config
from gaitcam.errors import FormatError, GaitcamError
from gaitcam.identity.enrollment import enrol_failure, windows_evidence
from gaitcam.identity.matcher import Evidence, GalleryIndex, MatcherParams
from gaitcam.identity.openset import MIN_PEOPLE, cross_fitted_scores, open_scores, ratios
from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.sgela import SGELA
from gaitcam.recording import sealed
from gaitcam.recording.formats import find_recordings, read_recording
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.normalize import normalize_windows
from gaitcam.skeleton.perturb import shifted_copy
from gaitcam.skeleton.sequence import SkeletonSequence, mirror_joints
from gaitcam.skeleton.shape import body_shape
from gaitcam.skeleton.windows import WindowRule, track_windows

log = logging.getLogger(__name__)

FPIR_POINTS = (0.01, 0.003)
# name -> (blocks, which window encoding feeds the gait block)
VARIANTS = {
    "fused": (("gait", "cycle", "shape"), "sgela"),
    "gait": (("gait",), "sgela"),
    "cycle": (("cycle",), "sgela"),
    "gait_untrained": (("gait",), "untrained"),
    "gait_raw": (("gait",), "raw"),
}
NAMES = {"fused": "fusion (shipped)", "gait": "gait (AGE) only", "cycle": "gait cycle only",
         "shape": "body shape only (standardised L1)", "bone_1nn": "baseline: 1-NN on median bone lengths",
         "gait_untrained": "control: gait, untrained network", "gait_raw": "control: gait, raw windows"}


def identity_folders(root: str | Path) -> dict[str, list[Path]]:
    """{identity: its recording files} of `root/<identity>/...`; an empty layout is an error."""
    root = Path(root)
    if not root.is_dir():
        raise FormatError(root, "no such folder (expected DIR/<identity>/<recording file>)")
    found = {d.name: find_recordings([d]) for d in sorted(root.iterdir()) if d.is_dir()}
    found = {k: v for k, v in found.items() if v}
    if not found:
        raise FormatError(root, "no identity folders with recordings (expected DIR/<identity>/<recording file>)")
    return found


@dataclass
class Walk:
    """One recording of one identity, encoded every way the report needs."""

    identity: str
    path: str
    role: str  # "gallery", "probe", "augment" (an extra training copy of a gallery walk) or "template"
    # (an extra enrolled template of a gallery walk, e.g. its mirror image: enrolled, never a probe)
    failure: str | None = None  # why it gives no evidence (failure to acquire / enrol)
    evidence: dict[str, Evidence] = field(default_factory=dict)  # by encoding: sgela, untrained, raw
    bones: np.ndarray | None = None  # median bone lengths over tracked ends (the baseline)
    as_probe: Walk | None = None  # another version of this walk to use when it is a probe (`benchmark shift`)


def read_walk(walk: Walk) -> SkeletonSequence | None:
    """The walk's skeletons (the longest track: one person per file), or None with `failure` set."""
    try:
        rec = read_recording(walk.path)
    except GaitcamError as e:
        walk.failure = f"unreadable ({e})"
        return None
    if not rec.tracks:
        walk.failure = "no pose"
        return None
    return max(rec.tracks.values(), key=len)


def encode_walk(walk: Walk, seq: SkeletonSequence | None, encoder: GaitEncoder, untrained: GaitEncoder | None,
                params: MatcherParams, rule: WindowRule | None = None) -> None:
    """Fill the walk's evidence from its skeletons (when `seq` is None, it failed to be read)."""
    if seq is None:
        walk.failure = walk.failure or "no pose"
        return
    rule = rule or WindowRule(f=encoder.f)
    tw = track_windows(seq, rule)
    ev = windows_evidence(tw, 0, encoder, rule)
    # Gallery walks are enrolled, so they pass enrolment's checks; probes those of a decision.
    walk.failure = enrol_failure(ev, params) if walk.role == "gallery" else ev.failure(params.min_windows,
                                                                                         params.min_segments)
    if walk.failure is not None:
        return
    walk.evidence["sgela"] = ev.evidence()
    walk.bones = body_shape(ev.lengths)
    # The controls see each window with its mirror image too, pooled as the shipped AGEs are.
    mirrored = mirror_joints(tw.joints, CANONICAL)
    extra = {"raw": np.stack([normalize_windows(w, "body").reshape(len(tw), -1) for w in (tw.joints, mirrored)], axis=1)}
    if untrained is not None:
        extra["untrained"] = untrained.encode(tw.joints, level="frame", mirror=True).mean(axis=2)
    for name, descriptors in extra.items():
        e = Evidence(descriptors.shape[-1])
        e.add_descriptors(descriptors, ev.lengths)
        e.add_spectra(ev.spectra)
        walk.evidence[name] = e


def _folds(identities: list[str], folds: int, seed: int) -> dict[str, int]:
    order = np.random.default_rng(seed).permutation(len(identities))
    return {identities[i]: int(k % folds) for k, i in enumerate(order)}


@dataclass
class _Scores:
    """Per probe, pooled over folds: identity, role, its fold, and per variant the rank of the
    true identity (enrolled probes), the open-set score and whether the nearest is right."""

    identity: list[str] = field(default_factory=list)
    stranger: list[bool] = field(default_factory=list)
    fold: list[int] = field(default_factory=list)
    rank: dict[str, list[float]] = field(default_factory=dict)
    score: dict[str, list[float]] = field(default_factory=dict)
    correct: dict[str, list[bool]] = field(default_factory=dict)
    named_at_calibration: list[bool] = field(default_factory=list)


def encode_folders(gallery_dir: str | Path, probe_dir: str | Path, encoder: GaitEncoder, params: MatcherParams,
                   controls: bool = True, augment: bool = True, seed: int = 0, progress: bool = True,
                   workers: int = 1) -> list[Walk]:
    """Every recording of both folders read and encoded once (with the controls' encodings),
    and, with `augment`, every gallery walk once more under a random sensor shift (`augmented`).

    `workers` > 1 (on the CPU) encodes walks in that many processes of one thread each: a walk's
    windows are too few for onnxruntime's threads to share well, and reading and cutting a walk
    is Python that threads would not share at all. The result is the same in any case."""
    gallery_files, probe_files = identity_folders(gallery_dir), identity_folders(probe_dir)
    untrained = None
    if controls:
        torch.manual_seed(seed)
        untrained = GaitEncoder(SGELA(encoder.model.cfg), encoder.normalization, "untrained", device=encoder.device.type)
    walks = [Walk(name, str(p), role) for role, files in (("gallery", gallery_files), ("probe", probe_files))
             for name, paths in files.items() for p in paths]
    bar = {"desc": "encoding", "unit": "walk", "disable": None if progress else True, "leave": False, "total": len(walks)}
    if workers > 1 and encoder.device.type == "cpu" and len(walks) > 1:
        setup = (encoder.model, None if untrained is None else untrained.model, encoder.normalization,
                 encoder.version, encoder.precision, params, augment, seed, sealed.current_config(),
                 logging.getLogger().level)
        with ProcessPoolExecutor(min(workers, len(walks)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=setup) as pool:
            encoded = list(tqdm(pool.map(_encode_in_worker, walks, chunksize=4), **bar))
    else:
        encoded = [_encode_one(w, encoder, untrained, params, augment, seed) for w in tqdm(walks, **bar)]
    return [w for w, _ in encoded] + [c for _, c in encoded if c is not None]


def _encode_one(walk: Walk, encoder: GaitEncoder, untrained: GaitEncoder | None, params: MatcherParams,
                augment: bool, seed: int) -> tuple[Walk, Walk | None]:
    """A walk encoded, and its augmented copy when it is a usable gallery walk."""
    seq = read_walk(walk)
    encode_walk(walk, seq, encoder, untrained, params)
    if augment and walk.role == "gallery" and walk.failure is None:
        return walk, augmented(walk, seq, encoder, params, seed)
    return walk, None


_worker: tuple = ()  # an encoding process's encoders and settings (`_start_worker`)


def _start_worker(model: SGELA, untrained: SGELA | None, normalization: str, version: str, precision: str,
                  params: MatcherParams, augment: bool, seed: int, config: Config, log_level: int) -> None:
    """A new process knows nothing of its parent: it gets the encoders, the logging and the
    config that finds the key of encrypted recordings."""
    global _worker
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    sealed.use_config(lambda: config)
    torch.set_num_threads(1)
    encoder = GaitEncoder(model, normalization, version, device="cpu", precision=precision)
    control = None if untrained is None else GaitEncoder(untrained, normalization, "untrained", device="cpu")
    _worker = (encoder, control, params, augment, seed)


def _encode_in_worker(walk: Walk) -> tuple[Walk, Walk | None]:
    return _encode_one(walk, *_worker)


def augmented(walk: Walk, seq: SkeletonSequence, encoder: GaitEncoder, params: MatcherParams, seed: int = 0) -> Walk:
    """A training copy of a gallery walk under one random sensor shift (`skeleton.perturb`), for
    the fused matcher's fit to learn what a person's walks look like through another sensor."""
    copy = Walk(walk.identity, walk.path, "augment")
    encode_walk(copy, shifted_copy(seq, walk.path, seed), encoder, None, params)
    return copy


def evaluate_walks(walks: list[Walk], encoder_version: str, params: MatcherParams, folds: int = 10,
                   fpir: float | None = None, controls: bool = True, bootstrap: int = 1000, seed: int = 0,
                   progress: bool = True, fit: dict | None = None, variants: dict | None = None) -> dict:
    """The report on encoded walks. For experiments: `fit` passes options to `MatcherParams.fit`
    (pca, shrink, loc_quantile), `variants` replaces `VARIANTS` (it must name "fused")."""
    started = time.monotonic()
    fpir = params.fpir if fpir is None else fpir
    identities = sorted({w.identity for w in walks})
    if len(identities) < 2:
        raise GaitcamError(f"evaluation needs at least two identities, found {len(identities)}")
    folds = max(2, min(folds, len(identities)))
    fold_of = _folds(identities, folds, seed)
    if variants is None:
        variants = {k: v for k, v in VARIANTS.items() if controls or v[1] == "sgela"}
    scores = _Scores()
    thresholds, fitted = [], []
    for k in tqdm(range(folds), desc="folds", disable=None if progress else True, leave=False):
        _run_fold(k, walks, fold_of, variants, encoder_version, params, fpir, scores, thresholds, fitted, seed,
                  fit or {})
    result = _report(walks, scores, variants, fpir, thresholds, bootstrap, seed)
    result.update({"folds": folds, "n_identities": len(identities), "encoder_version": encoder_version,
                   "projection": "fitted per fold on its enrolled gallery" if all(fitted)
                   else "shipped (a fold's gallery was too small to fit on)", "seconds": time.monotonic() - started})
    return result


def evaluate_folders(gallery_dir: str | Path, probe_dir: str | Path, encoder: GaitEncoder, params: MatcherParams,
                     folds: int = 10, fpir: float | None = None, controls: bool = True, bootstrap: int = 1000,
                     seed: int = 0, progress: bool = True, workers: int = 1) -> dict:
    """The whole report as a dict; rates are fractions in [0, 1] (module docstring). `workers`:
    encoding processes (`encode_folders`)."""
    started = time.monotonic()
    walks = encode_folders(gallery_dir, probe_dir, encoder, params, controls, seed=seed, progress=progress,
                           workers=workers)
    result = evaluate_walks(walks, encoder.version, params, folds, fpir, controls, bootstrap, seed, progress)
    result["seconds"] = time.monotonic() - started
    return result


def _run_fold(k: int, walks: list[Walk], fold_of: dict[str, int], variants: dict, version: str,
              params: MatcherParams, fpir: float, scores: _Scores, thresholds: list, fitted: list, seed: int,
              fit: dict) -> None:
    usable = [w for w in walks if w.failure is None]
    gallery = [w for w in usable if w.role == "gallery" and fold_of[w.identity] != k]
    enrolled = {w.identity for w in gallery}
    probes = [w.as_probe or w for w in usable if w.role in ("gallery", "probe")
              and ((fold_of[w.identity] == k) or (w.role == "probe" and w.identity in enrolled))]
    probes = [w for w in probes if w.failure is None]
    if len(enrolled) < 1 or not probes:
        return
    # Training copies of the enrolled people's walks under sensor shifts: the fused matcher is
    # fitted on them too (never enrolled); the single cues and the controls are fitted without.
    extra = [w for w in usable if w.role == "augment" and w.identity in enrolled]
    templates = [w for w in usable if w.role == "template" and w.identity in enrolled]
    labels = np.array([w.identity for w in gallery])
    # A whitening fitted on a few people only learns them: small galleries use the shipped one.
    can_fit = len(enrolled) >= MIN_PEOPLE and len(labels) > len(enrolled)
    fitted.append(can_fit)
    stranger = np.array([fold_of[w.identity] == k for w in probes])
    scores.identity += [w.identity for w in probes]
    scores.stranger += stranger.tolist()
    scores.fold += [k] * len(probes)
    for name, (blocks, encoding) in variants.items():
        ev = [w.evidence[encoding] for w in gallery]
        copies = [w for w in extra if name == "fused" and encoding in w.evidence]
        both = ev + [w.evidence[encoding] for w in copies]
        fit_labels = np.array([w.identity for w in gallery + copies])
        if can_fit:  # no cohort: the only people not in this gallery are the fold's strangers
            p = MatcherParams.fit(version, both, fit_labels, blocks, calibrate=False, cohort=False, **fit)
        elif name == "fused":
            p = params
        else:
            continue
        p.min_windows, p.min_segments = params.min_windows, params.min_segments
        p.prior_scores = p.prior_scores or params.prior_scores  # a small fold's gallery calibrates on these
        cal = None
        if name == "fused" and can_fit and len(enrolled) >= MIN_PEOPLE:
            raw = np.stack([e.descriptor(blocks) for e in both])
            cal = cross_fitted_scores(raw, fit_labels, lambda idx: MatcherParams.fit(
                version, [both[i] for i in idx], fit_labels[idx], blocks, calibrate=False, cohort=False, **fit),
                seed=seed)[0]
        more = [w for w in templates if name == "fused" and encoding in w.evidence]
        index = GalleryIndex(list(labels) + [w.identity for w in more],
                             np.stack([e.descriptor(blocks) for e in ev + [w.evidence[encoding] for w in more]]), p,
                             fpir, cal, "gallery (cross-fitted)" if cal is not None else "gallery")
        d_all = index.distances(np.stack([w.evidence[encoding].descriptor(blocks) for w in probes]))
        nearest, score = open_scores(d_all, len(index), p.ratio_cap)
        d = d_all[:, : len(index)]
        truth = np.array([index.people.index(w.identity) if w.identity in enrolled else -1 for w in probes])
        true_d = np.where(truth >= 0, d[np.arange(len(d)), np.maximum(truth, 0)], np.nan)
        rank = np.where(truth >= 0, (d <= true_d[:, None]).sum(axis=1), np.nan)  # ties count against
        scores.rank.setdefault(name, []).extend(rank.tolist())
        scores.score.setdefault(name, []).extend(score.tolist())
        scores.correct.setdefault(name, []).extend((nearest == truth).tolist())
        if name == "fused":
            thresholds.append(index.calibration)
            scores.named_at_calibration += (score <= index.threshold).tolist()
    # Body shape on its own, and the plain baseline, on the median bone lengths of each walk (bones
    # with both ends tracked): standardised L1 (the best shape-only distance on the validation
    # split; the whitened cosine of the fused descriptor ignores a body's overall size) and
    # Euclidean. Both compare the bones measured in both walks, scaled to all 19.
    gb, qb = np.stack([w.bones for w in gallery]), np.stack([w.bones for w in probes])
    mean, std = np.nanmean(gb, axis=0), np.nanstd(gb, axis=0) + 1e-6
    people = sorted(enrolled)
    truth = np.array([people.index(w.identity) if w.identity in enrolled else -1 for w in probes])
    for name, power, standardise in (("shape", 1, True), ("bone_1nn", 2, False)):
        q, g = ((qb - mean) / std, (gb - mean) / std) if standardise else (qb, gb)
        diff = np.abs(q[:, None] - g[None]) ** power
        shared = np.isfinite(diff).sum(-1)
        dist = (np.nansum(diff, -1) * diff.shape[-1] / np.maximum(shared, 1)) ** (1 / power)
        dist[shared == 0] = np.inf
        per = np.full((len(probes), len(people)), np.inf)
        np.minimum.at(per.T, np.searchsorted(people, labels), dist.T)
        true_d = np.where(truth >= 0, per[np.arange(len(per)), np.maximum(truth, 0)], np.nan)
        scores.rank.setdefault(name, []).extend(np.where(truth >= 0, (per <= true_d[:, None]).sum(1), np.nan).tolist())
        if name == "shape":
            scores.score.setdefault(name, []).extend(ratios(per).tolist())
            scores.correct.setdefault(name, []).extend((per.argmin(axis=1) == truth).tolist())


def _fnir_at(score: np.ndarray, correct: np.ndarray, stranger: np.ndarray, fpir: float) -> tuple[float, float]:
    """(FNIR, FPIR obtained) at the threshold that names at most `fpir` of the stranger probes:
    a probe is named when its score is below the (m + 1)-th smallest stranger score, m the
    number of strangers that may be named."""
    s = np.sort(score[stranger])
    if not len(s):
        return float("nan"), float("nan")
    m = int(np.floor(fpir * len(s) + 1e-9))
    tau = s[m] if m < len(s) else np.inf
    enrolled = ~stranger
    fnir = 1.0 - float((correct[enrolled] & (score[enrolled] < tau)).mean()) if enrolled.any() else float("nan")
    return fnir, float((s < tau).mean())


def _det(score: np.ndarray, correct: np.ndarray, stranger: np.ndarray) -> tuple[list[float], list[float]]:
    """DET curve points (FPIR, FNIR) at every distinct stranger score."""
    taus = np.unique(np.r_[score[stranger], np.inf])
    s, e = score[stranger], ~stranger
    fpir = [(s < t).mean() for t in taus]
    fnir = [1.0 - (correct[e] & (score[e] < t)).mean() for t in taus]
    return fpir, fnir


def _closed(rank: np.ndarray, n_people: int) -> dict:
    r = rank[np.isfinite(rank)]
    cmc = [(r <= k).mean() for k in range(1, n_people + 1)]
    return {"rank1": float(cmc[0]), "rank5": float(cmc[min(5, len(cmc)) - 1]), "map": float(np.mean(1.0 / r)),
            "cmc": [float(c) for c in cmc]}


def _bootstrap(identity: np.ndarray, stat, n: int, seed: int) -> list[float]:
    """95 % interval of stat(rows) over identities resampled with replacement."""
    people = np.unique(identity)
    rows_of = {p: np.flatnonzero(identity == p) for p in people}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        rows = np.concatenate([rows_of[p] for p in rng.choice(people, len(people))])
        values.append(stat(rows))
    values = np.array(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))] if len(values) else [None, None]


def _report(walks: list[Walk], sc: _Scores, variants: dict, fpir: float, thresholds: list, bootstrap: int,
            seed: int) -> dict:
    identity = np.array(sc.identity)
    stranger = np.array(sc.stranger, dtype=bool)
    n_people = len({w.identity for w in walks})
    cues = {}
    for name in ["fused", "gait", "cycle", "shape", "gait_untrained", "gait_raw", "bone_1nn"]:
        if name not in sc.rank:
            continue
        rank = np.array(sc.rank[name], dtype=np.float64)
        c = _closed(rank, n_people)
        enrolled_rows = np.flatnonzero(~stranger)
        c["rank1_ci95"] = _bootstrap(identity[enrolled_rows], lambda r, rk=rank[enrolled_rows]: float((rk[r] <= 1).mean()),
                                     bootstrap, seed)
        if name in sc.score:
            score, correct = np.array(sc.score[name]), np.array(sc.correct[name], dtype=bool)
            c["fnir_at_fpir"] = {f"{f:g}": _fnir_at(score, correct, stranger, f)[0] for f in FPIR_POINTS}
            c["fnir_at_fpir_ci95"] = {f"{f:g}": _bootstrap(identity, lambda r, f=f: _fnir_at(
                score[r], correct[r], stranger[r], f)[0], bootstrap, seed) for f in FPIR_POINTS}
            c["det"] = dict(zip(("fpir", "fnir"), _det(score, correct, stranger)))
        cues[name] = c
    fused = cues["fused"]
    failures = [{"path": w.path, "identity": w.identity, "role": w.role, "failure": w.failure}
                for w in [*walks, *(w.as_probe for w in walks if w.as_probe)] if w.failure is not None]
    probes = [w.as_probe or w for w in walks if w.role == "probe"]
    gallery = [w for w in walks if w.role == "gallery"]  # "augment" copies and "template"s are neither
    named = np.array(sc.named_at_calibration, dtype=bool)
    correct = np.array(sc.correct["fused"], dtype=bool)
    result = {
        "rank1": fused["rank1"], "rank5": fused["rank5"], "map": fused["map"], "rank1_ci95": fused["rank1_ci95"],
        "fnir_at_fpir": fused["fnir_at_fpir"], "fnir_at_fpir_ci95": fused["fnir_at_fpir_ci95"],
        "dir_at_fpir": {k: 1.0 - v for k, v in fused["fnir_at_fpir"].items()},
        "fta_rate": sum(w.failure is not None for w in probes) / max(len(probes), 1),
        "fte_rate": sum(w.failure is not None for w in gallery) / max(len(gallery), 1),
        "n_probe": int((~stranger).sum()), "n_stranger_probes": int(stranger.sum()),
        "n_walks": sum(w.role in ("gallery", "probe") for w in walks), "level": "recording",
        "calibrated": {
            "fpir_target": fpir,
            "fpir_obtained": float(named[stranger].mean()) if stranger.any() else None,
            "dir": float((named & correct)[~stranger].mean()) if (~stranger).any() else None,
            "thresholds": [c.describe() for c in thresholds],
        },
        "cues": cues, "failures": failures,
    }
    return result


def format_result(result: dict) -> str:
    """The table in percent, then the open-set and failure lines."""
    lines = [f"{'':40s} {'Rank-1':>7s} {'95 % CI':>13s} {'Rank-5':>7s} {'mAP':>6s} "
             f"{'FNIR@1%':>8s} {'FNIR@0.3%':>9s}"]
    for name, c in result["cues"].items():
        ci = c["rank1_ci95"]
        fn = c.get("fnir_at_fpir", {})
        lines.append(f"{NAMES[name]:40s} {100 * c['rank1']:7.1f} {_pct_pair(ci):>13s} {100 * c['rank5']:7.1f} "
                     f"{100 * c['map']:6.1f} {_pct(fn.get('0.01')):>8s} {_pct(fn.get('0.003')):>9s}")
    cal = result["calibrated"]
    ci = result["fnir_at_fpir_ci95"]
    lines += [
        f"{result['n_probe']} enrolled and {result['n_stranger_probes']} stranger probe queries over {result['folds']} "
        f"folds, {result['n_identities']} identities (each a stranger once); projection {result['projection']}",
        f"fusion: FNIR {_pct(result['fnir_at_fpir']['0.01'])} % at FPIR 1 % (95 % CI {_pct_pair(ci['0.01'])}), "
        f"{_pct(result['fnir_at_fpir']['0.003'])} % at FPIR 0.3 % (95 % CI {_pct_pair(ci['0.003'])})",
        f"at the threshold each fold's gallery calibrated for FPIR {100 * cal['fpir_target']:g} %: "
        f"FPIR {_pct(cal['fpir_obtained'])} %, DIR {_pct(cal['dir'])} %",
        f"failure to acquire {_pct(result['fta_rate'])} % of probe files, to enrol {_pct(result['fte_rate'])} % of "
        f"gallery files ({len(result['failures'])} files, listed in the JSON); {result['seconds']:.0f} s",
    ]
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def _pct_pair(v: list) -> str:
    return "-" if v is None or v[0] is None else f"{100 * v[0]:.1f}-{100 * v[1]:.1f}"


def save_plot(result: dict, path: str | Path) -> Path:
    """CMC and DET curves of every cue, side by side (Agg)."""
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(11, 4.4))
    cmc_ax, det_ax = fig.subplots(1, 2)
    for name, c in result["cues"].items():
        cmc = np.asarray(c["cmc"])
        cmc_ax.plot(np.arange(1, len(cmc) + 1), cmc, label=f"{NAMES[name]} ({100 * cmc[0]:.1f} %)")
        if "det" in c:
            x, y = np.asarray(c["det"]["fpir"]), np.asarray(c["det"]["fnir"])
            det_ax.step(np.maximum(x, 1e-4), np.maximum(y, 1e-3), where="post", label=NAMES[name])
    cmc_ax.set(xlabel="rank (identities)", ylabel="identification rate", xscale="log", ylim=(0, 1.01),
               title=f"CMC: {result['n_probe']} enrolled probe queries")
    det_ax.set(xlabel="FPIR (strangers given a name)", ylabel="FNIR (enrolled not named right)", xscale="log",
               yscale="log", xlim=(1e-3, 1), ylim=(1e-3, 1), title=f"DET: {result['n_stranger_probes']} stranger probes")
    for f in FPIR_POINTS:
        det_ax.axvline(f, color="grey", lw=0.6, ls=":")
    for ax in (cmc_ax, det_ax):
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right" if ax is cmc_ax else "upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
