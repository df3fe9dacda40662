"""How each window's AGEs and those of its mirror image become one mirror-invariant gait
descriptor, and whether the trained encoder beats its controls under each; KGBD training walks only
(the validation split of validation.py, evaluate's fold protocol, the fused matcher fitted with one
shifted copy per gallery walk, as encoder_choice.py).

Per window, a = the AGE of the window (mean of its frame-level AGEs) and b = that of its mirror
image (x negated, left and right renamed):
- "avg" (shipped): (a + b) / 2; the walk's descriptor is the mean and spread of that over windows;
- "sym+asym": [(a + b) / 2, |a - b| / 2]: also keeps how asymmetric each window is, not its side;
- "both": a and b pooled as two windows (the mean is avg's, the spread also holds |a - b|).
The same pooling is applied to the controls (the untrained network, the raw normalised windows).
Rank-1 / FNIR@1% / FNIR@0.3%.

    PYTHONPATH=. .venv/bin/python docs/experiments/gait_pooling.py [--threads 2]   # ~20 min, then cached
    ... gait_pooling.py --table-pca 256 --grid shrink=0.003,0.01,0.03 loc_quantile=0.05,0.1,0.2   # the scoring
    ... gait_pooling.py --table-pca 224 --poolings both   # the table at one PCA size, one pooling
"""
import argparse
import copy
import itertools
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validation import setup, validation_walks  # noqa: E402

from gaitcam.evaluation.folders import Walk, augmented, encode_walk, evaluate_walks  # noqa: E402
from gaitcam.identity.matcher import BLOCKS, Evidence  # noqa: E402
from gaitcam.model.encoder import GaitEncoder  # noqa: E402
from gaitcam.skeleton.normalize import normalize_windows  # noqa: E402
from gaitcam.model.sgela import SGELA  # noqa: E402
from gaitcam.skeleton.layouts import CANONICAL  # noqa: E402
from gaitcam.skeleton.perturb import shifted_copy  # noqa: E402
from gaitcam.skeleton.sequence import mirror_joints  # noqa: E402
from gaitcam.skeleton.windows import WindowRule, track_windows  # noqa: E402

POOLINGS = ("avg", "sym+asym", "both")
parser = argparse.ArgumentParser()
parser.add_argument("--cache", default="runs/gait_pooling_windows.pkl", help="per-window AGEs, reused when present")
parser.add_argument("--pca", type=int, nargs="+", default=[], metavar="K",
                    help="instead of the table: the fusion alone per pooling at each of these PCA sizes")
parser.add_argument("--poolings", nargs="+", default=list(POOLINGS), choices=POOLINGS, help="which poolings the table and --pca run (default: all)")
parser.add_argument("--table-pca", type=int, default=128, metavar="K", help="the table's PCA size (default 128)")
parser.add_argument("--grid", nargs="+", default=[], metavar="NAME=V1,V2",
                    help="instead of the table: the pooled fusion at --table-pca for every combination of these "
                         "MatcherParams.fit options (shrink, loc_quantile, ratio_cap)")
args, encoder, params = setup(parser)
rule = WindowRule(f=encoder.f)


def window_pairs(seq, encoders: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per encoding, the window AGEs of the walk and of its mirror image ([n, D] each)."""
    tw = track_windows(seq, rule)
    mirrored = mirror_joints(tw.joints, CANONICAL)
    out = {"raw": (normalize_windows(tw.joints, "body").reshape(len(tw), -1),
                   normalize_windows(mirrored, "body").reshape(len(tw), -1))}
    for name, enc in encoders.items():
        both = enc.encode(np.concatenate([tw.joints, mirrored]), level="frame").mean(axis=1)
        out[name] = (both[: len(tw)], both[len(tw):])
    return {k: (a.astype(np.float16), b.astype(np.float16)) for k, (a, b) in out.items()}


cache = Path(args.cache)
if cache.is_file():
    walks, copies = pickle.loads(cache.read_bytes())
else:
    walks, seqs = validation_walks(args.gallery)
    torch.manual_seed(0)  # the untrained network of encoder_choice.py and evaluate
    untrained = GaitEncoder(SGELA(encoder.model.cfg), encoder.normalization, "untrained")
    copies = []
    for i, w in enumerate(walks):
        role, w.role = w.role, "gallery"  # every training walk passes enrolment's checks
        encode_walk(w, seqs[w.path], encoder, None, params, rule)  # cycle, shape and the bone baseline
        w.role = role
        if w.failure is None:
            w.pairs = window_pairs(seqs[w.path], {"trained": encoder, "untrained": untrained})
            if role == "gallery":
                c = augmented(w, seqs[w.path], encoder, params, 0)
                if c.failure is None:
                    c.pairs = window_pairs(shifted_copy(seqs[w.path], w.path, 0), {"trained": encoder})
                    copies.append(c)
        if i % 50 == 0:
            print(f"encoded {i}/{len(walks)}", file=sys.stderr, flush=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps((walks, copies)))


def pooled(base: Evidence, a: np.ndarray, b: np.ndarray, how: str) -> Evidence:
    """`base` (its cycle spectra and bone lengths) with the gait block pooled from a and b."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    rows = {"avg": (a + b) / 2, "sym+asym": np.concatenate([(a + b) / 2, np.abs(a - b) / 2], axis=1),
            "both": np.concatenate([a, b])}[how]
    e = copy.deepcopy(base)
    e.age_dim, e.windows = rows.shape[1], len(rows)
    e.age_sum, e.age_sq = rows.sum(axis=0), (rows ** 2).sum(axis=0)
    return e


for w in walks + copies:
    if w.failure is None:
        base = w.evidence["sgela"]
        w.evidence = {f"{enc}/{how}": pooled(base, *pair, how) for enc, pair in w.pairs.items() for how in POOLINGS}


def cell(cue: dict) -> str:
    """Rank-1 / FNIR@1% / FNIR@0.3% of one cue of an `evaluate_walks` report, in percent."""
    fn = cue["fnir_at_fpir"]
    return f"{100 * cue['rank1']:5.1f}/{100 * fn['0.01']:4.1f}/{100 * fn['0.003']:4.1f}"


def fused(how: str, fit: dict) -> str:
    """The fusion alone, gait block pooled by `how`, with these MatcherParams.fit options."""
    r = evaluate_walks(walks + copies, "validation", params, bootstrap=20, progress=False,
                       variants={"fused": (BLOCKS, f"trained/{how}")}, fit=fit)
    return cell(r["cues"]["fused"])


if args.grid:
    grid = {k: [int(v) if v.isdigit() else float(v) for v in vs.split(",")] for k, vs in (g.split("=") for g in args.grid)}
    print(" ".join(f"{k:>12s}" for k in grid) + f" {'fused':>16s}   (Rank-1 / FNIR@1% / FNIR@0.3%)", flush=True)
    for values in itertools.product(*grid.values()):
        row = fused("both", {"pca": args.table_pca, **dict(zip(grid, values))})
        print(" ".join(f"{v:12g}" for v in values) + f" {row:>16s}", flush=True)
    sys.exit()
if args.pca:
    print(f"{'pooling':10s} {'pca':>4s} {'fused':>16s}   (Rank-1 / FNIR@1% / FNIR@0.3%)", flush=True)
    for how in args.poolings:
        for k in args.pca:
            print(f"{how:10s} {k:4d} {fused(how, {'pca': k})}", flush=True)
    sys.exit()
print(f"{'pooling':10s} {'fused':>16s} {'gait':>16s} {'gait_untrained':>16s} {'gait_raw':>16s}"
      "   (Rank-1 / FNIR@1% / FNIR@0.3%)", flush=True)
for how in args.poolings:
    variants = {"fused": (BLOCKS, f"trained/{how}"), "gait": (("gait",), f"trained/{how}"),
                "gait_untrained": (("gait",), f"untrained/{how}"), "gait_raw": (("gait",), f"raw/{how}")}
    r = evaluate_walks(walks + copies, "validation", params, bootstrap=20, progress=False, variants=variants,
                       fit={"pca": args.table_pca})
    print(f"{how:10s} " + " ".join(f"{cell(r['cues'][name]):>16s}" for name in variants), flush=True)
