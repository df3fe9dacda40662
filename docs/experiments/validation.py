"""The validation split the experiments here choose on: KGBD's training walks only.

Per person the highest-numbered training walk (of the `kgbd-layout` gallery folder) is the
pseudo-probe, the other training walks the gallery; no real probe walk is ever read.
"""
import argparse
import re
from pathlib import Path

import torch

from gaitcam.evaluation.folders import Walk, encode_walk, identity_folders, read_walk
from gaitcam.identity.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import SkeletonSequence


def validation_walks(gallery_dir: str) -> tuple[list[Walk], dict[str, SkeletonSequence]]:
    """The training walks with their validation roles, and their canonical skeletons by path."""
    walks = [Walk(name, str(p), "gallery") for name, paths in identity_folders(gallery_dir).items() for p in paths]
    number = {w.path: int(re.match(r"\d+", Path(w.path).name).group()) for w in walks}
    highest: dict[str, int] = {}
    for w in walks:
        highest[w.identity] = max(highest.get(w.identity, 0), number[w.path])
    for w in walks:
        w.role = "probe" if number[w.path] == highest[w.identity] else "gallery"
    return walks, {w.path: to_canonical(read_walk(w)) for w in walks}


def encode(walks: list[Walk], seqs: dict, encoder, params, rule=None) -> None:
    """Encode every walk as recorded (gallery walks need enrolment's 3 s; all of KGBD's have it)."""
    for w in walks:
        role, w.role, w.as_probe = w.role, "gallery", None
        encode_walk(w, seqs[w.path], encoder, None, params, rule)
        w.role = role


def setup(parser: argparse.ArgumentParser | None = None
          ) -> tuple[argparse.Namespace, GaitEncoder, MatcherParams]:
    """The experiments' common start: `--gallery` and `--threads` added to `parser` (its own
    options kept) and parsed, torch's threads set, and the shipped encoder and matcher loaded."""
    parser = parser or argparse.ArgumentParser()
    parser.add_argument("--gallery", default="runs/kgbd-split/gallery", help="the kgbd-layout training walks")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    return args, GaitEncoder.from_weights("weights/sgela"), MatcherParams.load("weights/sgela.matcher.json")
