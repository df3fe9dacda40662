"""Whether enrolling each gallery walk's mirror image too (an extra template of the same person)
makes a mirrored sensor's probes match, and what it costs on clean probes; KGBD training walks
only (the validation split of validation.py, evaluate's fold protocol, the matcher fitted with
one shifted copy per walk as shipped).

    PYTHONPATH=. .venv/bin/python docs/experiments/mirror_templates.py [--threads 2]   # ~15 min
"""
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))

from validation import encode, setup, validation_walks  # noqa: E402

from gaitcam.evaluation.folders import VARIANTS, Walk, augmented, encode_walk, evaluate_walks  # noqa: E402
from gaitcam.evaluation.shift import perturb_probes  # noqa: E402

args, encoder, params = setup()
walks, seqs = validation_walks(args.gallery)
encode(walks, seqs, encoder, params)
gallery = [w for w in walks if w.role == "gallery"]
copies = [augmented(w, seqs[w.path], encoder, params, 0) for w in gallery]
mirrors = []
for w in gallery:
    m = Walk(w.identity, w.path, "template")
    encode_walk(m, seqs[w.path].mirrored(), encoder, None, params)
    mirrors.append(m)
print(f"{'probes':10s} {'as enrolled':>14s} {'+ mirror':>14s}   (Rank-1 / FNIR@1%)", flush=True)
for name in ("clean", "mirrored"):
    perturb_probes(walks, name, seqs, encoder, params)
    cells = []
    for extra in ([], mirrors):
        r = evaluate_walks(walks + copies + extra, encoder.version, params, bootstrap=20, progress=False,
                           variants={"fused": VARIANTS["fused"]})
        cells.append(f"{100 * r['rank1']:5.1f} / {100 * r['fnir_at_fpir']['0.01']:5.1f}")
    print(f"{name:10s} " + " ".join(f"{c:>14s}" for c in cells), flush=True)
