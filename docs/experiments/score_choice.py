"""Whether another open-set score or another walk-to-person distance names more enrolled people at
FPIR 1 %, chosen on KGBD training walks only.

    PYTHONPATH=. .venv/bin/python docs/experiments/score_choice.py   # after encoder_choice.py (its cache); ~1 min a row

The validation split and protocol of encoder_choice.py (the fusion with `weights/sgela`), with the
matcher's scoring swapped for each row:
- score "ratio" (shipped): the nearest person's normalised distance over the second nearest's;
  "distance": the nearest's normalised distance alone; "ratio to mean of k": over the mean of the
  k nearest others'; "geometric": distance^a * ratio^(1-a);
- person distance "nearest walk" (shipped); "mean of 2 nearest walks"; "soft minimum" (t).
Rank-1 / FNIR@1% / FNIR@0.3%.
"""
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from validation import setup  # noqa: E402

import gaitcam.evaluation.folders as folders  # noqa: E402
from gaitcam.identity import openset  # noqa: E402
from gaitcam.identity.matcher import BLOCKS  # noqa: E402

_, _, params = setup()
walks, copies = pickle.loads(Path("runs/encoder_choice_walks.pkl").read_bytes())
shipped_scores, shipped_normalised = openset.open_scores, openset.normalised


def score_by(kind: str, arg: float = 0.0):
    def scores(d: np.ndarray, named: int, cap: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
        best, ratio = shipped_scores(d, named, cap)
        rows = np.arange(len(d))
        nearest = d[rows, best]
        others = d.copy()
        others[rows, best] = np.inf
        others = np.sort(others, axis=1)
        if kind == "distance":
            return best, nearest
        if kind == "mean":
            return best, nearest / np.minimum(others[:, : int(arg)].mean(axis=1), cap)
        return best, nearest ** arg * ratio ** (1 - arg)  # geometric
    return scores


def person_distance(kind: str, arg: float = 0.0):
    def normalised(zq, zg, person_of, levels, n_people):
        d = np.clip(1.0 - zq @ zg.T, 0.0, 2.0)
        out = np.full((len(d), n_people), np.inf)
        for p in range(n_people):
            s = np.sort(d[:, person_of == p], axis=1)
            if s.shape[1]:
                out[:, p] = (s[:, :2].mean(axis=1) if kind == "mean2"
                             else s[:, 0] - arg * np.log(np.exp(-(s - s[:, :1]) / arg).mean(axis=1)))
        return out / levels[None, :]
    return normalised


ROWS = [("ratio, nearest walk (shipped)", None, None), ("score: distance", score_by("distance"), None),
        ("score: ratio to mean of 3", score_by("mean", 3), None), ("score: ratio to mean of 5", score_by("mean", 5), None),
        ("score: geometric a=0.3", score_by("geometric", 0.3), None),
        ("score: geometric a=0.5", score_by("geometric", 0.5), None),
        ("person: mean of 2 nearest walks", None, person_distance("mean2")),
        ("person: soft minimum t=0.02", None, person_distance("soft", 0.02)),
        ("person: soft minimum t=0.05", None, person_distance("soft", 0.05))]
print(f"{'setting':34s} {'Rank-1':>7s} {'FNIR@1%':>8s} {'FNIR@0.3%':>9s}", flush=True)
for name, scores, normalised in ROWS:
    folders.open_scores = scores or shipped_scores
    openset.normalised = normalised or shipped_normalised
    r = folders.evaluate_walks(walks + copies, "validation", params, bootstrap=20, progress=False,
                               variants={"fused": (BLOCKS, "weights/sgela")})
    fn = r["fnir_at_fpir"]
    print(f"{name:34s} {100 * r['rank1']:7.1f} {100 * fn['0.01']:8.1f} {100 * fn['0.003']:9.1f}", flush=True)
