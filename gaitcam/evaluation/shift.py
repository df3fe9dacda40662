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
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gaitcam.evaluation.folders import VARIANTS, Walk, encode_walk, evaluate_walks, read_walk
from gaitcam.identity.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.kgbd import list_walks, probe_split
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import JointState, SkeletonSequence

Perturb = Callable[[SkeletonSequence, np.random.Generator], SkeletonSequence]


def _untracked(*joints: str) -> Perturb:
    """These joints never tracked (MISSING in every frame), as many Kinect v2 sites report."""
    index = [CANONICAL.index(j) for j in joints]

    def perturb(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
        j, s = seq.joints.copy(), seq.states.copy()
        j[:, index], s[:, index] = np.nan, JointState.MISSING
        return SkeletonSequence(j, seq.timestamps, seq.layout, s)
    return perturb


def _dropped(share: float) -> Perturb:
    """Whole frames lost at random (a busy USB bus, a slow host)."""
    def perturb(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
        keep = rng.random(len(seq)) >= share
        return SkeletonSequence(seq.joints[keep], seq.timestamps[keep], seq.layout, seq.states[keep])
    return perturb


def _jitter(metres: float) -> Perturb:
    """Independent Gaussian noise of this standard deviation on every coordinate."""
    def perturb(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
        noise = rng.normal(scale=metres, size=seq.joints.shape).astype(np.float32)
        return SkeletonSequence(seq.joints + noise, seq.timestamps, seq.layout, seq.states)
    return perturb


def _fps(rate: float) -> Perturb:
    """The same walk sampled at another frame rate (linear interpolation between frames)."""
    def perturb(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
        t = np.arange(seq.timestamps[0], seq.timestamps[-1], 1.0 / rate)
        right = np.clip(np.searchsorted(seq.timestamps, t, side="right"), 1, len(seq) - 1)
        left = right - 1
        w = ((t - seq.timestamps[left]) / (seq.timestamps[right] - seq.timestamps[left]))[:, None, None]
        joints = (1 - w) * seq.joints[left] + w * seq.joints[right]
        states = np.minimum(seq.states[left], seq.states[right])
        return SkeletonSequence(joints.astype(np.float32), t, seq.layout, states)
    return perturb


def _camera(higher: float, tilt_degrees: float) -> Perturb:
    """The sensor mounted `higher` metres up and pitched down by `tilt_degrees`: every point moves
    down by `higher` in the old camera frame, then turns about the camera's x axis."""
    a = np.radians(tilt_degrees)
    rotation = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]], np.float32)

    def perturb(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
        moved = (seq.joints - np.array([0, higher, 0], np.float32)) @ rotation.T
        return SkeletonSequence(moved.astype(np.float32), seq.timestamps, seq.layout, seq.states)
    return perturb


_MIRROR = [CANONICAL.index(j.replace("Left", "#").replace("Right", "Left").replace("#", "Right"))
           for j in CANONICAL.joints]


def _mirrored(seq: SkeletonSequence, rng: np.random.Generator) -> SkeletonSequence:
    """A mirrored camera: x flips, and a pose estimator names the mirror image's limbs, so the
    person's left side is reported as their right."""
    joints = seq.joints[:, _MIRROR] * np.array([-1, 1, 1], np.float32)
    return SkeletonSequence(joints, seq.timestamps, seq.layout, seq.states[:, _MIRROR])


PERTURBATIONS: dict[str, Perturb | None] = {
    "clean": None,
    "hands_untracked": _untracked("HandLeft", "HandRight", "ShoulderCenter"),  # and the shoulder centre
    "feet_missing": _untracked("FootLeft", "FootRight"),
    "frames_dropped_5": _dropped(0.05),
    "frames_dropped_10": _dropped(0.10),
    "jitter_1cm": _jitter(0.01),
    "jitter_3cm": _jitter(0.03),
    "fps_15": _fps(15.0),
    "fps_25": _fps(25.0),
    "camera_higher_tilted": _camera(0.5, 15.0),
    "mirrored": _mirrored,
}
DESCRIPTIONS = {
    "clean": "probes as recorded", "hands_untracked": "hands and shoulder centre never tracked",
    "feet_missing": "feet never tracked", "frames_dropped_5": "5 % of frames dropped",
    "frames_dropped_10": "10 % of frames dropped", "jitter_1cm": "1 cm joint jitter", "jitter_3cm": "3 cm joint jitter",
    "fps_15": "15 fps", "fps_25": "25 fps", "camera_higher_tilted": "camera 0.5 m higher, tilted 15 degrees down",
    "mirrored": "left/right mirrored",
}


def run_shift_benchmark(root: str | Path, encoder: GaitEncoder, params: MatcherParams, only: list[str] | None = None,
                        fpir: float | None = None, bootstrap: int = 200, seed: int = 0, progress: bool = True) -> dict:
    """{"rows": [{"name", "rank1", "fnir_at_fpir_0.01", ...}, ...]} with the clean row first."""
    kgbd = list_walks(root)
    _, probes = probe_split(kgbd)
    probe_paths = {w.path for w in probes}
    walks = [Walk(w.person, str(w.path), "probe" if w.path in probe_paths else "gallery") for w in kgbd]
    bar = dict(disable=None if progress else True, leave=False, unit="walk")
    canonical = {}
    for w in tqdm(walks, desc="clean", **bar):
        seq = read_walk(w)
        canonical[w.path] = None if seq is None else to_canonical(seq)
        encode_walk(w, canonical[w.path], encoder, None, params)
    names = [n for n in PERTURBATIONS if only is None or n == "clean" or n in only]
    rows = []
    for name in names:
        perturb = PERTURBATIONS[name]
        for w in tqdm(walks, desc=name, **bar) if perturb else ():
            seq = canonical[w.path]
            rng = np.random.default_rng([seed, zlib.crc32(f"{name}:{w.path}".encode())])
            w.as_probe = replace(w, evidence={}, as_probe=None, failure=None)
            encode_walk(w.as_probe, None if seq is None else perturb(seq, rng), encoder, None, params)
        if not perturb:
            for w in walks:
                w.as_probe = None
        r = evaluate_walks(walks, encoder.version, params, fpir=fpir, bootstrap=bootstrap, seed=seed,
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
