"""How the matcher was chosen, on KGBD training walks only (never a probe walk).

    .venv/bin/python docs/experiments/matcher_choice.py [--threads 2]   # ~6 min to encode, then ~1 min a row

The validation split (validation.py: per person the highest-numbered of the 658 training walks
is the pseudo-probe). The same fold protocol as `evaluate` runs on it (every person a stranger once, the matcher fitted and
the threshold calibrated on each fold's enrolled gallery), with the same code, for each setting
below. Printed per setting: validation Rank-1, FNIR at FPIR 1 % and 0.3 %, and FPIR obtained at
the calibrated threshold (target 1 %). The shipped defaults (`identity/matcher.py`) are the row
marked "shipped"; docs/accuracy.md has the table this prints.
"""
import argparse
import pickle
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from validation import encode, setup, validation_walks  # noqa: E402

from gaitcam.evaluation.folders import evaluate_walks  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--cache", default="runs/matcher_choice_walks.pkl", help="encoded walks, reused when present")
args, encoder, params = setup(parser)
cache = Path(args.cache)
if cache.is_file():
    walks = pickle.loads(cache.read_bytes())
else:
    walks, seqs = validation_walks(args.gallery)
    encode(walks, seqs, encoder, params)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(walks))

ALL = ("gait", "cycle", "shape")
SHIPPED = dict(pca=128, shrink=1e-2, loc_quantile=0.1)
rows = [("shipped", ALL, {})]
rows += [(f"blocks {'+'.join(b)}", b, {}) for b in (("gait",), ("gait", "cycle"), ("gait", "shape"), ("cycle", "shape"))]
rows += [(f"pca {k}", ALL, {"pca": k}) for k in (64, 96, 192)]
rows += [(f"shrink {s:g}", ALL, {"shrink": s}) for s in (1e-3, 1e-1)]
rows += [(f"impostor level quantile {q:g}", ALL, {"loc_quantile": q}) for q in (0.05, 0.25, 0.5)]
print(f"{'setting':34s} {'Rank-1':>7s} {'FNIR@1%':>8s} {'FNIR@0.3%':>9s} {'FPIR at calibrated 1%':>22s}", flush=True)
for name, blocks, fit in rows:
    r = evaluate_walks(walks, encoder.version, params, bootstrap=20, progress=False,
                       fit={**SHIPPED, **fit}, variants={"fused": (blocks, "sgela")})
    fn = r["fnir_at_fpir"]
    print(f"{name:34s} {100 * r['rank1']:7.1f} {100 * fn['0.01']:8.1f} {100 * fn['0.003']:9.1f} "
          f"{100 * r['calibrated']['fpir_obtained']:22.1f}", flush=True)
