"""Whether enrolment and evaluation may cut windows at a wider stride than the live default of
3 frames (half the encoding), chosen on KGBD training walks only.

    PYTHONPATH=. .venv/bin/python docs/experiments/stride_choice.py --stride 6 [--threads 2]   # ~4 min a stride

The validation split of validation.py, evaluate's fold protocol with the matcher fitted with one
shifted copy per gallery walk (as evaluate), the fusion, the gait cue and its controls, with
every walk (gallery, pseudo-probe and copy) cut at the stride given. Rank-1 / FNIR@1% / FNIR@0.3%.
"""
import argparse
import functools
import pickle
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validation import setup, validation_walks  # noqa: E402

import gaitcam.evaluation.folders as folders  # noqa: E402
from gaitcam.evaluation.folders import Walk, augmented, encode_walk, evaluate_walks  # noqa: E402
from gaitcam.identity.matcher import BLOCKS  # noqa: E402
from gaitcam.model.encoder import GaitEncoder  # noqa: E402
from gaitcam.model.sgela import SGELA  # noqa: E402
from gaitcam.skeleton.windows import WindowRule  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("--stride", type=int, nargs="+", default=[3, 6])
args, encoder, params = setup(parser)
NAMES = ("fused", "gait", "gait_untrained", "gait_raw")
VARIANTS = {"fused": (BLOCKS, "sgela"), "gait": (("gait",), "sgela"),
            "gait_untrained": (("gait",), "untrained"), "gait_raw": (("gait",), "raw")}
print(f"{'stride':>6s} " + " ".join(f"{n:>16s}" for n in NAMES) + "   (Rank-1 / FNIR@1% / FNIR@0.3%)", flush=True)
for stride in args.stride:
    cache = Path(f"runs/stride_choice_{stride}.pkl")
    if cache.is_file():
        walks, copies = pickle.loads(cache.read_bytes())
    else:
        folders.WindowRule = functools.partial(WindowRule, stride=stride)  # every walk and copy at this stride
        walks, seqs = validation_walks(args.gallery)
        torch.manual_seed(0)
        untrained = GaitEncoder(SGELA(encoder.model.cfg), encoder.normalization, "untrained")
        copies: list[Walk] = []
        for w in walks:
            role, w.role = w.role, "gallery"  # every training walk passes enrolment's checks
            encode_walk(w, seqs[w.path], encoder, untrained, params)
            w.role = role
            if role == "gallery" and w.failure is None:
                copies.append(augmented(w, seqs[w.path], encoder, params, 0))
        cache.write_bytes(pickle.dumps((walks, copies)))
    r = evaluate_walks(walks + copies, "validation", params, bootstrap=20, progress=False, variants=VARIANTS)
    cells = []
    for name in NAMES:
        c = r["cues"][name]
        fn = c["fnir_at_fpir"]
        cells.append(f"{100 * c['rank1']:4.1f}/{100 * fn['0.01']:4.1f}/{100 * fn['0.003']:4.1f}")
    print(f"{stride:6d} " + " ".join(f"{c:>16s}" for c in cells), flush=True)
