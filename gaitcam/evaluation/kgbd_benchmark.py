"""`python main.py benchmark kgbd`: the paper's KGBD numbers, each beside its two controls.

The split is the project's one rule (recording.kgbd.probe_split): per person the
highest-numbered walk is the probe, all other walks are training walks. Nothing fitted or
selected here sees a probe walk: the RN trains and early-stops on training walks only, and
the retrieval gallery is made of training walks.

Three feature sets go through the same protocol, so that the table says what training earns:
- "sgela": the trained encoder's frame-level AGEs (768 numbers for the paper's model);
- "untrained": the same architecture with random weights (seeded), same normalisation;
- "raw_windows": the encoder's own normalised input, the 60 coordinates of each frame.

Protocols (query unit: one probe window of f frames, stride f; also pooled per probe walk):
- classifier (spec §3.2, §4): one RN per feature set on the training windows (stride f/2),
  early-stopped on held-out whole training walks; a window's logits are its frames' mean.
- retrieval (spec §6.4): nothing trained; a window's descriptor is the mean of its f
  frame-level features, matched by cosine similarity against every gallery window (training
  walks at stride f: disjoint windows, so no frame of a walk counts twice).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gaitcam.errors import GaitcamError
from gaitcam.evaluation.metrics import cmc_curve, nauc_cmc, nauc_roc, rank_k, retrieval
from gaitcam.evaluation.recognition import RNConfig, fit_rn, load_rn, save_rn, window_logits
from gaitcam.model.data import windows_from_sequences
from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.sgela import SGELA
from gaitcam.recording.kgbd import KgbdWalk, list_walks, probe_split, read_kgbd, split_sha256
from gaitcam.skeleton.normalize import normalize_windows
from gaitcam.skeleton.windows import test_stride, train_stride

log = logging.getLogger(__name__)

PROTOCOLS = ("classifier", "retrieval")
FEATURE_SETS = ("sgela", "untrained", "raw_windows")
NAMES = {"sgela": "SGE-LA", "untrained": "untrained", "raw_windows": "raw windows"}
TRIM = 10  # frames dropped at both ends of every walk, as in training (spec §1.5)
_CHUNK = 4096  # windows per encoding call


@dataclass
class _Windows:
    windows: np.ndarray  # [N, f, 20, 3] canonical layout, not normalised
    label: np.ndarray  # [N] class index of the person
    walk: np.ndarray  # [N] index into the walk list (grows with the walk number per person)
    dropped: dict  # what the window rule dropped: frames missing joints too long, runs broken by glitches


@dataclass
class _Features:
    extract: Callable[[np.ndarray], np.ndarray]  # windows [n, f, 20, 3] -> [n, f, D]
    dtype: type  # storage: float16 for AGEs (all KGBD windows' AGEs are 2.3 GB in float32)
    version: str  # what makes the features what they are, for reusing a saved RN


def run_kgbd_benchmark(
    root: str | Path,
    protocol: str,
    weights_path: str | Path = "weights/sgela",
    *,
    threads: int | None = None,
    limit_people: int | None = None,
    seed: int = 0,
    rn_config: RNConfig | None = None,
    rn_dir: str | Path | None = None,
    device: str = "auto",
    controls: bool = True,
    select_on_probes: bool = False,
    progress: bool = True,
) -> dict:
    """Run one protocol on KGBD at `root` (the folder holding `Data/`) and return the results.

    All rates are fractions in [0, 1]. `limit_people` keeps the first N persons (quick runs).
    `rn_dir` (classifier): reuse RNs saved there when trained on exactly these features and
    training walks, else train them and save them there. `seed` seeds the untrained encoder
    and the RNs. `controls=False` measures SGE-LA alone (an ablation, whose controls are those
    of the same-normalisation run of the shipped weights): "controls" is then empty.
    `select_on_probes` (classifier): choose each RN's epoch on the probe windows, the released
    code's rule (spec §8.7), to compare with the paper; the result says so.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, not {protocol!r}")
    started = time.monotonic()
    if threads:
        torch.set_num_threads(threads)
    encoder = GaitEncoder.from_weights(weights_path, device=device)
    f = encoder.f
    walks, train_walks, probe_walks, classes = _split(root, limit_people)
    timing = {}

    walk_id = {w: i for i, w in enumerate(walks)}
    class_of = {p: i for i, p in enumerate(classes)}
    reading = tqdm(train_walks + probe_walks, desc="reading walks", unit="walk", leave=False,
                   disable=None if progress else True)
    sequences = [read_kgbd(w.path) for w in reading]
    # RN training windows overlap (stride f/2) as in the original; gallery windows do not.
    stride = train_stride(f) if protocol == "classifier" else test_stride(f)
    train = _cut(sequences[: len(train_walks)], train_walks, walk_id, class_of, f, stride)
    probe = _cut(sequences[len(train_walks) :], probe_walks, walk_id, class_of, f, test_stride(f))
    del sequences
    if len(train.windows) == 0 or len(probe.windows) == 0:
        raise GaitcamError(f"{root}: walks too short for any {f}-frame window after trimming {TRIM} frames")
    timing["read_and_cut"] = time.monotonic() - started

    features = _feature_sets(encoder, seed, device)
    if not controls:
        features = {"sgela": features["sgela"]}
    rn_cfg = rn_config or RNConfig(seed=seed)
    provenance = {"train_walks_sha256": _walks_sha256(train_walks), "f": f, "trim": TRIM, "stride": stride,
                  "normalization": encoder.normalization, "rn": asdict(rn_cfg),
                  "selection": "probe windows" if select_on_probes else "held-out training walks"}
    window_level, walk_level, rn_report = {}, {}, {}
    for name, feats in features.items():
        t0 = time.monotonic()
        probe_x = _extract(feats, probe.windows, f"{name}: probe windows", progress)
        if protocol == "classifier":
            model, rn_report[name] = _train_or_reuse_rn(
                name, feats, train, len(classes), rn_cfg, provenance, rn_dir, progress,
                (probe_x, probe.label) if select_on_probes else None)
            logits = window_logits(model, probe_x)
            window_level[name] = _classifier_metrics(logits, probe.label)
            walk_level[name] = _classifier_metrics(*_pool(logits, probe.walk, probe.label))
        else:
            gallery_x = _extract(feats, train.windows, f"{name}: gallery windows", progress)
            query, gallery = _descriptors(probe_x), _descriptors(gallery_x)
            del gallery_x
            window_level[name] = _retrieval_metrics(query, probe.label, gallery, train.label)
            walk_level[name] = _retrieval_metrics(*_pool(query, probe.walk, probe.label),
                                                  *_pool(gallery, train.walk, train.label))
        timing[name] = time.monotonic() - t0
        log.info("%s: %s in %.0f s", name, _brief(window_level[name]), timing[name])

    train_role = "train" if protocol == "classifier" else "gallery"
    result = {
        "benchmark": "kgbd",
        "protocol": protocol,
        "level": "window",
        "features": "sgela",
        **window_level["sgela"],
        "n_probe": len(probe.windows),
        "n_identities": len(np.unique(probe.label)),
        "split_sha256": split_sha256(probe_walks),
        "controls": {name: window_level[name] for name in FEATURE_SETS[1:] if name in window_level},
        "walk_level": {"level": "walk", "n_probe": len(np.unique(probe.walk)), **walk_level},
        f"n_{train_role}_windows": len(train.windows),
        "n_probe_walks": len(probe_walks),
        "n_train_walks": len(train_walks),
        "windows": {"f": f, "trim": TRIM, "probe_stride": test_stride(f), f"{train_role}_stride": stride},
        "dropped_windows": {"probe": probe.dropped, train_role: train.dropped},
        "weights": {"path": str(weights_path), "version": encoder.version,
                    "normalization": encoder.normalization, "model": encoder.model.cfg.to_dict()},
        "seed": seed,
        "limit_people": limit_people,
        "threads": torch.get_num_threads(),
    }
    if protocol == "classifier":
        result["n_classes"] = len(classes)
        result["rn"] = {"config": asdict(rn_cfg), **rn_report}
        result["model_selection"] = provenance["selection"] + (
            " (the released code's rule: optimistic, for comparison with the paper only)" if select_on_probes else "")
    else:
        result["descriptor"] = "mean of the window's f frame-level features, cosine similarity"
    result["timing"] = {k: round(v, 1) for k, v in timing.items()}
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def _split(
    root: str | Path, limit_people: int | None
) -> tuple[list[KgbdWalk], list[KgbdWalk], list[KgbdWalk], list[str]]:
    """(walks, training walks, probe walks, classes). A person whose only walk is the probe
    cannot be recognised or matched, so its probe is left out (and logged)."""
    walks = list_walks(root)
    if limit_people:
        keep = set(sorted({w.person for w in walks})[:limit_people])
        walks = [w for w in walks if w.person in keep]
    train_walks, probe_walks = probe_split(walks)
    classes = sorted({w.person for w in train_walks})
    if len(classes) < 2:
        raise GaitcamError(f"{root}: the benchmark needs at least 2 persons with 2 or more walks")
    known = set(classes)
    alone = [w for w in probe_walks if w.person not in known]
    if alone:
        log.warning("left out %d probe walks of persons without training walks", len(alone))
        probe_walks = [w for w in probe_walks if w.person in known]
    return walks, train_walks, probe_walks, classes


def _cut(sequences: list, walks: list[KgbdWalk], walk_id: dict, class_of: dict, f: int, stride: int) -> _Windows:
    """Windows of the walks, not normalised: the encoder applies its weights' normalisation.
    Glitched windows are dropped as everywhere else (probe windows too: the live pipeline
    drops them the same way), and counted."""
    ws = windows_from_sequences(sequences, f, stride, normalization="raw", trim=TRIM)
    label = np.array([class_of[w.person] for w in walks], dtype=np.int64)
    ids = np.array([walk_id[w] for w in walks], dtype=np.int64)
    return _Windows(ws.windows, label[ws.sequence], ids[ws.sequence], {"incomplete_frames": ws.stats.incomplete, "glitches": ws.stats.glitches})


def _walks_sha256(walks: list[KgbdWalk]) -> str:
    names = sorted(f"{w.person}/{w.path.name}" for w in walks)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def _feature_sets(encoder: GaitEncoder, seed: int, device: str) -> dict[str, _Features]:
    """The trained encoder, the same network with random weights, and the raw windows."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        untrained = GaitEncoder(SGELA(encoder.model.cfg), encoder.normalization, f"untrained-seed{seed}", device)
    f, norm = encoder.f, encoder.normalization
    cfg_hash = hashlib.sha256(json.dumps(encoder.model.cfg.to_dict(), sort_keys=True).encode()).hexdigest()[:12]
    untrained_version = f"{untrained.version}-torch{torch.__version__}-{cfg_hash}"  # init depends on all three
    return {
        "sgela": _Features(lambda w: encoder.encode(w, "frame"), np.float16, encoder.version),
        "untrained": _Features(lambda w: untrained.encode(w, "frame"), np.float16, untrained_version),
        "raw_windows": _Features(lambda w: normalize_windows(w, norm).reshape(len(w), f, -1), np.float32, "raw"),
    }


def _extract(feats: _Features, windows: np.ndarray, desc: str, progress: bool) -> np.ndarray:
    """Frame-level features [N, f, D], computed in chunks straight into their storage dtype."""
    out = None
    for i in tqdm(range(0, len(windows), _CHUNK), desc=desc, unit_scale=_CHUNK, unit="win", leave=False,
                  disable=None if progress else True):
        part = feats.extract(windows[i : i + _CHUNK])
        if out is None:
            out = np.empty((len(windows), *part.shape[1:]), dtype=feats.dtype)
        out[i : i + len(part)] = part
    return out


def _train_or_reuse_rn(name: str, feats: _Features, train: _Windows, n_classes: int, cfg: RNConfig,
                       provenance: dict, rn_dir: str | Path | None, progress: bool,
                       select_on: tuple[np.ndarray, np.ndarray] | None = None):
    """(RN, report): the saved RN when it fits exactly, else a freshly trained one."""
    provenance = {"features": name, "features_version": feats.version, **provenance}
    path = Path(rn_dir) / f"rn_{name}" if rn_dir else None
    model = load_rn(path, provenance) if path else None
    if model is not None:
        return model, {"reused": str(path)}
    x = _extract(feats, train.windows, f"{name}: training windows", progress)
    fit = fit_rn(x, train.label, train.walk, n_classes, cfg, progress, select_on)
    if path:
        save_rn(fit.model, path, provenance)
    return fit.model, fit.summary()


def _descriptors(features: np.ndarray) -> np.ndarray:
    """Window descriptors [N, D] float32: the mean of the f frame-level features."""
    return features.mean(axis=1, dtype=np.float32)


def _pool(values: np.ndarray, walk: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-walk means of per-window rows, with each walk's label: the walk-level query unit."""
    walks, inverse = np.unique(walk, return_inverse=True)
    sums = np.zeros((len(walks), values.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse, values)
    walk_label = np.empty(len(walks), dtype=label.dtype)
    walk_label[inverse] = label
    return (sums / np.bincount(inverse)[:, None]).astype(np.float32), walk_label


def _classifier_metrics(logits: np.ndarray, labels: np.ndarray) -> dict:
    cmc = cmc_curve(logits, labels)
    return {"rank1": rank_k(cmc, 1), "rank5": rank_k(cmc, 5), "rank10": rank_k(cmc, 10),
            "nauc_cmc": nauc_cmc(cmc), "nauc_roc": nauc_roc(logits, labels), "cmc": cmc.tolist()}


def _retrieval_metrics(query: np.ndarray, query_labels: np.ndarray, gallery: np.ndarray,
                       gallery_labels: np.ndarray) -> dict:
    r = retrieval(query, query_labels, gallery, gallery_labels, ks=(1, 5, 10))
    return {"rank1": r["rank1"], "rank5": r["rank5"], "rank10": r["rank10"], "map": r["map"],
            "cmc": r["cmc"].tolist()}


def _brief(m: dict) -> str:
    return ", ".join(f"{k} {100 * v:.1f}" for k, v in m.items() if k != "cmc")


def format_table(result: dict) -> str:
    """The result as a plain-text table, in percent: window and walk level, SGE-LA and controls."""
    extra = ["nauc_cmc", "nauc_roc"] if result["protocol"] == "classifier" else ["map"]
    cols = ["rank1", "rank5", "rank10", *extra]
    heads = {"rank1": "Rank-1", "rank5": "Rank-5", "rank10": "Rank-10", "nauc_cmc": "nAUC(CMC)",
             "nauc_roc": "nAUC(ROC)", "map": "mAP"}
    window = {"sgela": result, **result["controls"]}
    lines = [
        f"KGBD, {result['protocol']} protocol: {result['n_probe']} probe windows "
        f"({result['walk_level']['n_probe']} walks), {result['n_identities']} identities, "
        f"split {result['split_sha256'][:12]}, weights {result['weights']['version']}",
        f"{'level':<8}{'features':<13}" + "".join(f"{heads[c]:>11}" for c in cols),
    ]
    for level, table in (("window", window), ("walk", result["walk_level"])):
        for name in (n for n in FEATURE_SETS if n in table):
            lines.append(f"{level:<8}{NAMES[name]:<13}" + "".join(f"{100 * table[name][c]:>11.1f}" for c in cols))
    if "model_selection" in result:
        lines.append(f"RN epoch chosen on the {result['model_selection']}")
    lines.append(f"({result['seconds']:.0f} s; rates in %)")
    return "\n".join(lines)


def save_cmc_plot(result: dict, path: str | Path) -> Path:
    """CMC curves, window level: SGE-LA against the untrained network and the raw windows.
    Drawn on a bare Figure (Agg), which leaves pyplot's global backend alone."""
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 4.2))
    ax = fig.subplots()
    for name, entry in (("sgela", result), *result["controls"].items()):
        cmc = np.asarray(entry["cmc"])
        ax.plot(np.arange(1, len(cmc) + 1), cmc, label=f"{NAMES[name]} (Rank-1 {100 * entry['rank1']:.1f} %)")
    ax.set_xlabel("rank (classes)" if result["protocol"] == "classifier" else "rank (gallery windows)")
    ax.set_ylabel("identification rate")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.set_title(f"KGBD {result['protocol']} protocol, window level: {result['n_probe']} probe windows",
                 fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
