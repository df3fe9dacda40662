"""Whether the matcher should learn sensor shifts from shifted copies of its training walks, and
with which encoder, on KGBD training walks only.

    .venv/bin/python docs/experiments/augment_choice.py [--weights W] [--copies 0 1 2] [--threads 2]   # ~20 min

The validation split (validation.py) in evaluate's fold protocol. The matcher is fitted on the
gallery walks as recorded, or on them plus one copy of each under a random sensor shift
(`skeleton.perturb.random_shift`) labelled as the same person, or two copies (two seeds). Probes as
recorded and under the shifts of `benchmark shift`. Rank-1 and FNIR at FPIR 1 %.
"""
import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from validation import encode, validation_walks  # noqa: E402

from gaitcam.evaluation.folders import VARIANTS, augmented, evaluate_walks  # noqa: E402
from gaitcam.evaluation.shift import perturb_probes  # noqa: E402
from gaitcam.identity.matcher import MatcherParams  # noqa: E402
from gaitcam.model.encoder import GaitEncoder  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--gallery", default="runs/kgbd-split/gallery", help="the kgbd-layout training walks")
parser.add_argument("--weights", default="weights/sgela")
parser.add_argument("--perturb", nargs="+",
                    default=["clean", "mirrored", "jitter_3cm", "jitter_1cm", "hands_untracked", "feet_missing"])
parser.add_argument("--copies", nargs="+", type=int, default=[0, 1], help="shifted copies per gallery walk")
parser.add_argument("--threads", type=int, default=1)
args = parser.parse_args()
torch.set_num_threads(args.threads)

encoder = GaitEncoder.from_weights(args.weights)
params = MatcherParams.load("weights/sgela.matcher.json")
walks, seqs = validation_walks(args.gallery)
encode(walks, seqs, encoder, params)
gallery = [w for w in walks if w.role == "gallery"]
copies = {n: [augmented(w, seqs[w.path], encoder, params, seed) for seed in range(n) for w in gallery]
          for n in args.copies}
print(f"{'probes':18s} " + " ".join(f"{f'{n} copies':>14s}" for n in args.copies) + "   (Rank-1 / FNIR@1%)",
      flush=True)
for name in args.perturb:
    perturb_probes(walks, name, seqs, encoder, params)
    cells = []
    for n in args.copies:
        r = evaluate_walks(walks + copies[n], encoder.version, params, bootstrap=20, progress=False,
                           variants={"fused": VARIANTS["fused"]})
        cells.append(f"{100 * r['rank1']:5.1f} / {100 * r['fnir_at_fpir']['0.01']:5.1f}")
    print(f"{name:18s} " + " ".join(f"{c:>14s}" for c in cells), flush=True)
