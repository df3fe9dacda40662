"""Whether descriptors made mirror-invariant by construction keep clean accuracy while a
mirrored sensor's probes match; KGBD training walks only (the validation split of
validation.py, evaluate's fold protocol, the matcher fitted with one shifted copy per walk).

Every walk is encoded as recorded and as its mirror image (x negated, left and right renamed).
"sym": the evidence of both pooled (window AGEs, cycle spectra and bone lengths of the walk and
of its mirror image), which gives a mirrored walk exactly the descriptor of the walk itself.
"sym+asym": per window the mean of the two AGEs plus the magnitude of their half-difference,
which keeps how asymmetric a walk is without its side (the rare walk whose mirror image cuts
into a different number of windows pairs the first ones).

    PYTHONPATH=. .venv/bin/python docs/experiments/mirror_symmetric.py [--threads 2]   # ~25 min, then cached

It ran at commit 81c7e4c, before "sym-avg" shipped (docs/results/validation/mirror_symmetric.txt).
Since then `windows_evidence` makes the averaged evidence itself, so at later commits the first
column ("as shipped") is the last one; check out 81c7e4c to rerun the comparison.
"""
import pickle
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validation import setup, validation_walks  # noqa: E402

from gaitcam.evaluation.folders import Walk, evaluate_walks  # noqa: E402
from gaitcam.identity.enrollment import enrol_failure, windows_evidence  # noqa: E402
from gaitcam.identity.matcher import BLOCKS, Evidence  # noqa: E402
from gaitcam.skeleton.shape import body_shape  # noqa: E402
from gaitcam.skeleton.perturb import shifted_copy  # noqa: E402
from gaitcam.skeleton.windows import WindowRule, track_windows  # noqa: E402

args, encoder, params = setup()
rule = WindowRule(f=encoder.f)


def pooled(evs) -> Evidence:
    e = Evidence(evs[0].descriptors.shape[1])
    for ev in evs:
        e.add_descriptors(ev.descriptors, ev.lengths)
        e.add_spectra(ev.spectra)
    return e


def paired(a, b) -> Evidence:
    n = min(len(a.descriptors), len(b.descriptors))
    d = np.concatenate([(a.descriptors[:n] + b.descriptors[:n]) / 2,
                        np.abs(a.descriptors[:n] - b.descriptors[:n]) / 2], axis=1)
    e = Evidence(d.shape[1])
    e.add_descriptors(d, np.concatenate([a.lengths, b.lengths]))
    e.add_spectra(np.concatenate([a.spectra, b.spectra]))
    return e


def encode(w: Walk, seq, enrolled: bool) -> Walk:
    """Fill w (as recorded) and return its mirrored twin (as a mirrored sensor would give it)."""
    ev = windows_evidence(track_windows(seq, rule), 0, encoder, rule)
    em = windows_evidence(track_windows(seq.mirrored(), rule), 0, encoder, rule)
    twin = replace(w, evidence={}, as_probe=None)
    for walk, (a, b) in ((w, (ev, em)), (twin, (em, ev))):
        walk.failure = enrol_failure(a, params) if enrolled else a.failure(params.min_windows, params.min_segments)
        if walk.failure is None:
            walk.evidence = {"sgela": a.evidence(), "sym": pooled([a, b]), "sym+asym": paired(a, b)}
            walk.bones = body_shape(a.lengths)
    return twin


cache = Path("runs/mirror_symmetric_walks.pkl")
if cache.is_file():
    walks, copies, mirrored = pickle.loads(cache.read_bytes())
else:
    walks, seqs = validation_walks(args.gallery)
    copies, mirrored = [], {}
    for i, w in enumerate(walks):
        mirrored[w.path] = encode(w, seqs[w.path], w.role == "gallery")
        if w.role == "gallery" and w.failure is None:
            c = Walk(w.identity, w.path, "augment")
            encode(c, shifted_copy(seqs[w.path], w.path, 0), False)
            copies.append(c)
        if i % 100 == 0:
            print(f"encoded {i}/{len(walks)}", file=sys.stderr, flush=True)
    cache.write_bytes(pickle.dumps((walks, copies, mirrored)))


def averaged(e: Evidence) -> Evidence:
    """"sym+asym" without its asymmetry half: each window's AGE averaged with its mirror image's."""
    d = e.age_dim // 2
    out = Evidence(d, e.age_sum[:d].copy(), e.age_sq[:d].copy(), e.windows, e.cycle_sum.copy(), e.segments)
    out.bones.extend(e.bones.rows)
    return out


for w in walks + copies + list(mirrored.values()):
    if "sym+asym" in w.evidence:
        w.evidence["sym-avg"] = averaged(w.evidence["sym+asym"])
VARIANTS = ("sgela", "sym", "sym+asym", "sym-avg")
print(f"{'probes':10s} " + " ".join(f"{n:>14s}" for n in ("as shipped", "sym", "sym+asym", "sym-avg"))
      + "   (Rank-1 / FNIR@1% / FNIR@0.3%)", flush=True)
for probes in ("clean", "mirrored"):
    for w in walks:
        w.as_probe = mirrored[w.path] if probes == "mirrored" else None
    cells = []
    for encoding in VARIANTS:
        r = evaluate_walks(walks + copies, encoder.version, params, bootstrap=20, progress=False,
                           variants={"fused": (BLOCKS, encoding)})
        fn = r["fnir_at_fpir"]
        cells.append(f"{100 * r['rank1']:4.1f}/{100 * fn['0.01']:4.1f}/{100 * fn['0.003']:4.1f}")
    print(f"{probes:10s} " + " ".join(f"{c:>14s}" for c in cells), flush=True)
