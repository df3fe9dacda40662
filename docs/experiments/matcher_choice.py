"""How the matcher's distances were chosen, on KGBD training walks only (never a probe walk).

    .venv/bin/python docs/experiments/matcher_choice.py   # about 3 min of encoding on one thread

Per walk: the mean of its window descriptors (windows of 6 frames every 6, 10 frames trimmed
at both ends, `weights/sgela`) and its median bone lengths. Validation split inside the
training walks: per person the highest-numbered *training* walk is the pseudo-probe, the
other training walks the gallery. Label-free statistics (means, spreads, median distances)
come from all training walks. Prints validation Rank-1 (and, for the record only, the test
Rank-1 on the real probes, which played no part in the choice) for each gait distance x shape
distance at equal weights, and for the two halves of the people.
"""
import numpy as np
import torch

from gaitcam.model.data import windows_from_sequences
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.kgbd import list_walks, probe_split, read_kgbd
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.shape import bone_lengths, body_shape

torch.set_num_threads(1)
walks = list_walks("../shared/data/kgbd")
_, probes = probe_split(walks)
person = np.array([w.person for w in walks])
is_probe = np.array([w in set(probes) for w in walks])
number = np.array([int(w.path.name.split(".")[0]) for w in walks])
seqs = [read_kgbd(w.path) for w in walks]
ws = windows_from_sequences(seqs, 6, 6, normalization="raw", trim=10)
ages = GaitEncoder.from_weights("weights/sgela").encode(ws.windows, "frame").mean(axis=1)
W = len(walks)
A = np.zeros((W, ages.shape[1]))
np.add.at(A, ws.sequence, ages)
A /= np.bincount(ws.sequence, minlength=W)[:, None]
shape = np.array([body_shape(bone_lengths(to_canonical(s).joints[10:-10])) for s in seqs], dtype=np.float64)

train = ~is_probe
vprobe = np.zeros(W, bool)
for p in np.unique(person):
    idx = np.flatnonzero(train & (person == p))
    if len(idx) >= 2:
        vprobe[idx[np.argmax(number[idx])]] = True
vgal = train & ~vprobe


def rank1(D, gal, prb):
    people = np.unique(person[gal])
    col = {p: i for i, p in enumerate(people)}
    q = np.flatnonzero(prb & np.isin(person, people))
    best = np.full((len(q), len(people)), np.inf)
    for g in np.flatnonzero(gal):
        best[:, col[person[g]]] = np.minimum(best[:, col[person[g]]], D[q, g])
    return (best.argmin(1) == np.array([col[person[i]] for i in q])).mean()


def cos(X):
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    return 1 - U @ U.T


def scaled(D):
    g = np.flatnonzero(train)
    return D / np.median(D[np.ix_(g, g)][np.triu_indices(len(g), 1)])


mu, sd = A[train].mean(0), A[train].std(0) + 1e-6
Z = (shape - shape[train].mean(0)) / shape[train].std(0)
gait = {"cosine": cos(A), "centred cosine": cos(A - mu), "standardised cosine": cos((A - mu) / sd)}
body = {"L2": np.linalg.norm(shape[:, None] - shape[None], axis=-1),
        "L1": np.abs(shape[:, None] - shape[None]).sum(-1),
        "standardised L2": np.linalg.norm(Z[:, None] - Z[None], axis=-1),
        "standardised L1": np.abs(Z[:, None] - Z[None]).sum(-1)}
halves = np.isin(person, np.unique(person)[:82])
print(f"{'gait':22s} {'shape':16s} {'val R1':>7s} {'persons 1-82':>13s} {'83-164':>7s} {'test R1':>8s}")
for gn, Dg in gait.items():
    for bn, Db in body.items():
        D = 0.5 * scaled(Dg) + 0.5 * scaled(Db)
        print(f"{gn:22s} {bn:16s} {100 * rank1(D, vgal, vprobe):7.1f} {100 * rank1(D, vgal & halves, vprobe & halves):13.1f}"
              f" {100 * rank1(D, vgal & ~halves, vprobe & ~halves):7.1f} {100 * rank1(D, train, is_probe):8.1f}")
