"""`python main.py evaluate`: the app's own matcher on two folders of recordings.

`DIR/<identity>/<recording file>` in any supported format. Every gallery identity is enrolled
in a fresh temporary gallery (the real SQLite store, through the same enrolment code as
`enroll`), every probe recording is one query, matched the way `identify` matches it. Reported
side by side, from the same encodings: the gait encoding alone, body shape alone, the shipped
fusion, and the plain baseline of a 1-nearest-neighbour on median bone lengths.

Rank-k and mAP are closed-set (every probe's identity is enrolled; the threshold plays no
part). The open-set figures leave the last `unknown` identities (sorted by name) out of the
gallery: FPIR = share of their probes given a name at the shipped threshold, DIR = share of
the enrolled identities' probes given the right name.
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gaitcam.enrollment import enroll_recording, load_index, track_evidence
from gaitcam.errors import FormatError, GaitcamError
from gaitcam.gallery import Gallery
from gaitcam.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.formats import find_recordings, read_recording
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import SkeletonSequence
from gaitcam.skeleton.shape import body_shape, bone_lengths

log = logging.getLogger(__name__)

CUES = ("age", "shape", "fused")
NAMES = {"age": "gait (AGE) only", "shape": "body shape only", "fused": "fusion (shipped)",
         "bone_1nn": "baseline: 1-NN on median bone lengths"}


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


def _median_bones(seq: SkeletonSequence) -> np.ndarray:
    """The baseline's descriptor: median bone lengths over a whole track."""
    return body_shape(bone_lengths(to_canonical(seq).joints))


def _ranks(d: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based rank of the true column per row, ties counted against it (pessimistic)."""
    true = d[np.arange(len(d)), truth]
    return (d <= true[:, None]).sum(axis=1)


def _closed_set(d: np.ndarray, truth: np.ndarray) -> dict:
    r = _ranks(d, truth)
    cmc = np.array([(r <= k).mean() for k in range(1, d.shape[1] + 1)])
    return {"rank1": float(cmc[0]), "rank5": float(cmc[min(5, len(cmc)) - 1]),
            "map": float(np.mean(1.0 / r)), "cmc": cmc.tolist()}


def evaluate_folders(gallery_dir: str | Path, probe_dir: str | Path, encoder: GaitEncoder, params: MatcherParams,
                     unknown: int = 20, progress: bool = True) -> dict:
    """Enrol the gallery folders, query every probe recording; figures as fractions in [0, 1]."""
    started = time.monotonic()
    gallery_files, probe_files = identity_folders(gallery_dir), identity_folders(probe_dir)
    bar = dict(disable=None if progress else True, leave=False)
    skipped: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, Gallery(Path(tmp) / "gallery.db") as gallery:
        bones: dict[str, list[np.ndarray]] = {}
        for name, files in tqdm(gallery_files.items(), desc="enrolling", unit="identity", **bar):
            for path in files:
                try:
                    r = enroll_recording(gallery, encoder, params, name, path)
                except GaitcamError as e:
                    skipped.append(str(e))
                    continue
                bones.setdefault(name, []).append(_median_bones(read_recording(path).tracks[r.track]))
        index = load_index(gallery, params)
    people = index.people
    queries, truth, q_age, q_shape, q_bones = [], [], [], [], []
    for name, files in tqdm(probe_files.items(), desc="identifying", unit="identity", **bar):
        for path in files:
            if name not in people:
                skipped.append(f"{path}: identity {name} has no enrolled walk")
                continue
            try:  # a bad probe is one skipped query, like a bad gallery file, not a failed run
                rec = read_recording(path)
            except GaitcamError as e:
                skipped.append(str(e))
                continue
            if not rec.tracks:
                skipped.append(f"{path}: holds no skeletons")
                continue
            tid = max(rec.tracks, key=lambda t: len(rec.tracks[t]))
            ev = track_evidence(rec.tracks[tid], tid, encoder)
            if ev.windows == 0:
                skipped.append(f"{path}: no complete window")
                continue
            queries.append(str(path))
            truth.append(people.index(name))
            q_age.append(ev.age)
            q_shape.append(ev.shape)
            q_bones.append(_median_bones(rec.tracks[tid]))
    if not queries:
        raise GaitcamError(f"{probe_dir}: no probe recording could be matched")
    for s in skipped:
        log.warning("skipped: %s", s)
    truth_a = np.array(truth)
    qa, qs = np.array(q_age), np.array(q_shape)
    result: dict = {"n_probe": len(queries), "n_identities": len(people), "level": "recording",
                    "encoder_version": params.encoder_version, "threshold": params.threshold,
                    "skipped": skipped, "cues": {}}
    for cue in CUES:
        result["cues"][cue] = _closed_set(index.distances(qa, qs, cue), truth_a)
    # Baseline: raw Euclidean distance between median bone lengths, nearest enrolled recording.
    gb = [(people.index(n), b) for n, bs in bones.items() for b in bs]
    d_rec = np.linalg.norm(np.array(q_bones)[:, None] - np.array([b for _, b in gb])[None], axis=-1)
    d_bone = np.full((len(queries), len(people)), np.inf)
    np.minimum.at(d_bone.T, np.array([p for p, _ in gb]), np.nan_to_num(d_rec, nan=np.inf).T)
    result["cues"]["bone_1nn"] = _closed_set(d_bone, truth_a)
    result.update({k: result["cues"]["fused"][k] for k in ("rank1", "rank5", "map")})
    if unknown:
        result["open_set"] = _open_set(index, qa, qs, truth_a, unknown, params)
    result["seconds"] = time.monotonic() - started
    return result


def _open_set(index, qa: np.ndarray, qs: np.ndarray, truth: np.ndarray, unknown: int, params: MatcherParams) -> dict:
    """FPIR and DIR at the shipped threshold with the last `unknown` identities not enrolled."""
    people = index.people
    if unknown >= len(people):
        raise GaitcamError(f"cannot leave {unknown} of {len(people)} identities out of the gallery")
    enrolled = np.arange(len(people) - unknown)
    d = index.distances(qa, qs, "fused")[:, enrolled]
    best = d.argmin(axis=1)
    named = params.named(d[np.arange(len(d)), best])
    stranger = truth >= len(enrolled)
    return {"left_out": people[len(enrolled):], "threshold": params.threshold,
            "fpir": float(named[stranger].mean()), "n_unknown_probes": int(stranger.sum()),
            "dir": float((named & (best == truth))[~stranger].mean()), "n_enrolled_probes": int((~stranger).sum())}


def format_result(result: dict) -> str:
    """The closed-set table in percent, then the open-set line."""
    lines = [f"{'':40s} {'Rank-1':>7s} {'Rank-5':>7s} {'mAP':>7s}"]
    for cue in ("bone_1nn", *CUES):
        m = result["cues"][cue]
        lines.append(f"{NAMES[cue]:40s} {100 * m['rank1']:7.1f} {100 * m['rank5']:7.1f} {100 * m['map']:7.1f}")
    lines.append(f"{result['n_probe']} probe recordings, {result['n_identities']} identities, "
                 f"closed set; {len(result['skipped'])} skipped")
    if "open_set" in result:
        o = result["open_set"]
        lines.append(f"open set, {len(o['left_out'])} identities not enrolled, threshold {o['threshold']:.3f}: "
                     f"FPIR {100 * o['fpir']:.1f} % of {o['n_unknown_probes']}, "
                     f"DIR {100 * o['dir']:.1f} % of {o['n_enrolled_probes']}")
    return "\n".join(lines)


def save_cmc_plot(result: dict, path: str | Path) -> Path:
    """CMC of the three cues and the baseline, drawn on a bare Figure (Agg)."""
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    for cue in ("bone_1nn", *CUES):
        cmc = np.asarray(result["cues"][cue]["cmc"])
        ax.plot(np.arange(1, len(cmc) + 1), cmc, label=f"{NAMES[cue]} (Rank-1 {100 * cmc[0]:.1f} %)")
    ax.set_xlabel("rank (identities)")
    ax.set_ylabel("identification rate")
    ax.set_ylim(0, 1.01)
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.set_title(f"evaluate: {result['n_probe']} probe recordings, {result['n_identities']} identities", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
