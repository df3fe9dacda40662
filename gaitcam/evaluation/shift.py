"""`python main.py benchmark shift`: does recognition hold when the probes come from another
sensor or site than the gallery?

KGBD's walks in `evaluate`'s fold protocol (every person a stranger once; the matcher fitted and
the threshold calibrated on each fold's enrolled gallery), with the gallery walks as recorded
and every probe walk (enrolled probes and strangers' walks alike) perturbed the way other sensors
and sites differ. One row per perturbation, beside the clean row: Rank-1, FNIR at FPIR 1 %,
failures to acquire.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gaitcam.evaluation.folders import VARIANTS, Walk, augmented, encode_walk, evaluate_walks, read_walk
from gaitcam.identity.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.kgbd import list_walks, probe_split
from gaitcam.skeleton.perturb import DESCRIPTIONS, PERTURBATIONS
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import SkeletonSequence
from gaitcam.skeleton.windows import WindowRule

def perturb_probes(walks: Iterable[Walk], name: str, canonical: dict[str, SkeletonSequence | None],
                   encoder: GaitEncoder, params: MatcherParams, seed: int = 0, rule: WindowRule | None = None) -> None:
    """Give every walk the version it has as a probe: its skeletons (`canonical`, by path) under
    perturbation `name`, encoded (seeded per walk); "clean" takes the perturbed versions away."""
    perturb = PERTURBATIONS[name]
    for w in walks:
        if perturb is None:
            w.as_probe = None
            continue
        seq = canonical[w.path]
        rng = np.random.default_rng([seed, zlib.crc32(f"{name}:{w.path}".encode())])
        w.as_probe = replace(w, evidence={}, as_probe=None, failure=None)
        encode_walk(w.as_probe, None if seq is None else perturb(seq, rng), encoder, None, params, rule)


def run_shift_benchmark(root: str | Path, encoder: GaitEncoder, params: MatcherParams, only: list[str] | None = None,
                        fpir: float | None = None, bootstrap: int = 200, seed: int = 0, progress: bool = True) -> dict:
    """{"rows": [{"name", "rank1", "fnir_at_fpir_0.01", ...}, ...]} with the clean row first."""
    kgbd = list_walks(root)
    _, probes = probe_split(kgbd)
    probe_paths = {w.path for w in probes}
    walks = [Walk(w.person, str(w.path), "probe" if w.path in probe_paths else "gallery") for w in kgbd]
    bar = dict(disable=None if progress else True, leave=False, unit="walk")
    canonical, copies = {}, []
    for w in tqdm(walks, desc="clean", **bar):
        seq = read_walk(w)
        canonical[w.path] = None if seq is None else to_canonical(seq)
        encode_walk(w, canonical[w.path], encoder, None, params)
        if w.role == "gallery" and w.failure is None:
            copies.append(augmented(w, canonical[w.path], encoder, params, seed))  # as evaluate fits
    names = [n for n in PERTURBATIONS if only is None or n == "clean" or n in only]
    rows = []
    for name in names:
        perturb_probes(tqdm(walks, desc=name, **bar) if PERTURBATIONS[name] else walks, name, canonical,
                       encoder, params, seed)
        r = evaluate_walks(walks + copies, encoder.version, params, fpir=fpir, bootstrap=bootstrap, seed=seed,
                           progress=False, variants={"fused": VARIANTS["fused"]})
        rows.append({"name": name, "description": DESCRIPTIONS[name], "rank1": r["rank1"],
                     "rank1_ci95": r["rank1_ci95"], "fnir_at_fpir_0.01": r["fnir_at_fpir"]["0.01"],
                     "fnir_at_fpir_0.003": r["fnir_at_fpir"]["0.003"], "fta_rate": r["fta_rate"],
                     "fpir_at_calibrated": r["calibrated"]["fpir_obtained"], "n_probe": r["n_probe"],
                     "n_stranger_probes": r["n_stranger_probes"]})
        if progress:
            print(_row_line(rows[-1], rows[0]), flush=True)
    return {"rows": rows, "fpir_target": fpir if fpir is not None else params.fpir,
            "encoder_version": encoder.version, "protocol": "evaluate's folds; gallery walks clean, probe walks perturbed"}


def _row_line(row: dict, clean: dict) -> str:
    delta = 100 * (row["rank1"] - clean["rank1"])
    return (f"{row['description']:44s} {100 * row['rank1']:6.1f} {delta:+6.1f} {100 * row['fnir_at_fpir_0.01']:8.1f} "
            f"{100 * row['fta_rate']:6.1f}")


def format_shift(result: dict) -> str:
    rows = result["rows"]
    lines = [f"{'probes':44s} {'Rank-1':>6s} {'change':>6s} {'FNIR@1%':>8s} {'FTA':>6s}"]
    lines += [_row_line(r, rows[0]) for r in rows]
    worst = min(rows, key=lambda r: r["rank1"])
    lines.append(f"largest drop: {worst['description']} ({100 * (worst['rank1'] - rows[0]['rank1']):+.1f} points)")
    return "\n".join(lines)
