"""Refit the joint-derivation rules of gaitcam/skeleton/repair.py on KGBD and print their error.

    .venv/bin/python docs/experiments/derivation_rules.py   # about 20 s

Every fifth frame of all 822 KGBD walks (Kinect v1, every joint tracked). For each rule, the
weights of an affine combination of its source joints (weights summing to 1, so the rule moves
and turns with the body) by least squares, and the median and 90th-percentile distance between
the derived and the measured joint.
"""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gaitcam.recording.kgbd import list_walks, read_kgbd  # noqa: E402
from gaitcam.skeleton.layouts import CANONICAL  # noqa: E402
from gaitcam.skeleton.repair import RULES  # noqa: E402
from gaitcam.skeleton.retarget import to_canonical  # noqa: E402

frames = np.concatenate([to_canonical(read_kgbd(w.path)).joints[::5] for w in list_walks("../shared/data/kgbd")])
frames = frames[np.isfinite(frames).all(axis=(1, 2))]
print(f"{len(frames)} frames")
for target, rules in RULES.items():
    for rule in rules:
        sources = [j for j, _ in rule]
        t = frames[:, CANONICAL.index(target)]
        s = [frames[:, CANONICAL.index(j)] for j in sources]
        a = np.stack([(x - s[0]).ravel() for x in s[1:]], axis=1)
        w, *_ = np.linalg.lstsq(a, (t - s[0]).ravel(), rcond=None)
        w = np.r_[1 - w.sum(), w]
        err = np.linalg.norm(sum(wk * x for wk, x in zip(w, s)) - t, axis=1)
        shipped = np.array([wk for _, wk in rule])
        print(f"{target:15s} <- {' + '.join(f'{wk:.3f} {j}' for j, wk in zip(sources, w))}: median error "
              f"{100 * np.median(err):.1f} cm, 90 % under {100 * np.quantile(err, 0.9):.1f} cm "
              f"(shipped weights within {np.abs(shipped - w).max():.3f})")
