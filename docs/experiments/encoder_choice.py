"""Which trained encoder feeds the app's matcher: the paper's SGE-LA (`weights/sgela`) or SGE-LA
with the contrastive loss (`weights/sgela-contrastive`), chosen on KGBD training walks only.

    PYTHONPATH=. .venv/bin/python docs/experiments/encoder_choice.py [--threads 2]   # ~15 min, then cached

The validation split of validation.py, evaluate's fold protocol (every person a stranger once,
the matcher fitted with one shifted copy per gallery walk and calibrated on each fold's
enrolled gallery). Per encoder: the fusion, the gait cue alone, and beside them the gait cue fed
the untrained network and the raw normalised windows (the controls do not depend on the
trained weights, so they are encoded once). Rank-1 / FNIR@1% / FNIR@0.3%.
"""
import argparse
import pickle
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validation import setup, validation_walks  # noqa: E402

from gaitcam.evaluation.folders import Walk, augmented, encode_walk, evaluate_walks  # noqa: E402
from gaitcam.identity.matcher import BLOCKS  # noqa: E402
from gaitcam.model.encoder import GaitEncoder  # noqa: E402
from gaitcam.model.sgela import SGELA  # noqa: E402

ENCODERS = ("weights/sgela", "weights/sgela-contrastive")
parser = argparse.ArgumentParser()
parser.add_argument("--cache", default="runs/encoder_choice_walks.pkl", help="encoded walks, reused when present")
args, _, params = setup(parser)
cache = Path(args.cache)
if cache.is_file():
    walks, copies = pickle.loads(cache.read_bytes())
else:
    walks, seqs = validation_walks(args.gallery)
    copies: list[Walk] = []
    for k, weights in enumerate(ENCODERS):
        encoder = GaitEncoder.from_weights(weights)
        torch.manual_seed(0)
        untrained = GaitEncoder(SGELA(encoder.model.cfg), encoder.normalization, "untrained") if k == 0 else None
        for i, w in enumerate(walks):
            role, w.role = w.role, "gallery"  # every training walk passes enrolment's checks
            enc = Walk(w.identity, w.path, "gallery")
            encode_walk(enc, seqs[w.path], encoder, untrained, params)
            w.role, w.failure, w.bones = role, enc.failure, enc.bones
            w.evidence.update({(weights if name == "sgela" else name): e for name, e in enc.evidence.items()})
            if role == "gallery" and enc.failure is None:
                copy = augmented(enc, seqs[w.path], encoder, params, 0)
                copy.evidence = {weights: copy.evidence["sgela"]} if copy.failure is None else {}
                copies.append(copy)
            if i % 100 == 0:
                print(f"{weights}: encoded {i}/{len(walks)}", file=sys.stderr, flush=True)
    cache.write_bytes(pickle.dumps((walks, copies)))

NAMES = ("fused", "gait", "gait_untrained", "gait_raw")
print(f"{'encoder':28s} " + " ".join(f"{n:>16s}" for n in NAMES) + "   (Rank-1 / FNIR@1% / FNIR@0.3%)", flush=True)
for weights in ENCODERS:
    variants = {"fused": (BLOCKS, weights), "gait": (("gait",), weights),
                "gait_untrained": (("gait",), "untrained"), "gait_raw": (("gait",), "raw")}
    r = evaluate_walks(walks + copies, "validation", params, bootstrap=20, progress=False, variants=variants)
    cells = []
    for name in NAMES:
        c = r["cues"][name]
        fn = c["fnir_at_fpir"]
        cells.append(f"{100 * c['rank1']:4.1f}/{100 * fn['0.01']:4.1f}/{100 * fn['0.003']:4.1f}")
    print(f"{weights:28s} " + " ".join(f"{c:>16s}" for c in cells), flush=True)
