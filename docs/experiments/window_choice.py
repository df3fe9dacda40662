"""How much smoothing the window rule applies, chosen on KGBD training walks only.

    .venv/bin/python docs/experiments/window_choice.py [--threads 2]   # ~3 min a row

The validation split (validation.py) in evaluate's fold protocol, with the gallery walks as
recorded and the pseudo-probes (and the strangers' walks) perturbed as `benchmark shift` perturbs
them; the matcher fitted without augmented copies, to see what the window rule alone does. For
each `smooth` (resampled frames averaged into each frame) and each perturbation: Rank-1 and FNIR
at FPIR 1 %.
"""
import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from validation import encode, setup, validation_walks  # noqa: E402

from gaitcam.evaluation.folders import VARIANTS, evaluate_walks  # noqa: E402
from gaitcam.evaluation.shift import perturb_probes  # noqa: E402
from gaitcam.skeleton.windows import WindowRule  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--smooth", type=int, nargs="+", default=[1, 3, 5])
parser.add_argument("--perturb", nargs="+", default=["clean", "jitter_1cm", "jitter_3cm", "hands_untracked"])
args, encoder, params = setup(parser)
walks, seqs = validation_walks(args.gallery)
print(f"{'smooth':>6s} {'probes':18s} {'Rank-1':>7s} {'FNIR@1%':>8s}", flush=True)
for smooth in args.smooth:
    rule = WindowRule(f=encoder.f, smooth=smooth)
    encode(walks, seqs, encoder, params, rule)
    for name in args.perturb:
        perturb_probes(walks, name, seqs, encoder, params, rule=rule)
        r = evaluate_walks(walks, encoder.version, params, bootstrap=20, progress=False,
                           variants={"fused": VARIANTS["fused"]})
        print(f"{smooth:6d} {name:18s} {100 * r['rank1']:7.1f} {100 * r['fnir_at_fpir']['0.01']:8.1f}", flush=True)
