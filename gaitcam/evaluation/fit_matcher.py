"""`python main.py fit-matcher`: how the matcher compares walks, learned from labelled walks.

From training folders (`DIR/<identity>/<recordings>`, never probes) or from an existing gallery
(its enrolled people are the labels): the descriptor statistics, the PCA and the whitening of
the within-person scatter (`MatcherParams.fit`), and the stranger scores of held-out people
that small galleries calibrate on. The threshold itself is not fitted here: every gallery
calibrates its own for the FPIR asked (`identity.openset`).
"""
from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from gaitcam.errors import GaitcamError
from gaitcam.evaluation.folders import identity_folders
from gaitcam.identity.enrollment import gallery_evidence, track_evidence
from gaitcam.identity.gallery import Gallery
from gaitcam.identity.matcher import Evidence, MatcherParams, template_version
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.formats import read_recording
from gaitcam.skeleton.perturb import shifted_copy
from gaitcam.skeleton.sequence import SkeletonSequence

log = logging.getLogger(__name__)


def folder_evidence(train_dir: str | Path, encoder: GaitEncoder, exclude_last: int = 0, augment: bool = True,
                    progress: bool = True) -> tuple[list[Evidence], list[str], list[str]]:
    """(evidence, labels, people left out) of every usable track in `train_dir/<identity>/...`;
    the last `exclude_last` identities (sorted by name) are left out. With `augment`, every track
    once more under a random sensor shift (`skeleton.perturb.random_shift`), same label."""
    folders = identity_folders(train_dir)
    names = sorted(folders)
    if exclude_last:
        if exclude_last >= len(names) - 1:
            raise GaitcamError(f"{train_dir}: cannot leave {exclude_last} of {len(names)} identities out")
        names = names[: len(names) - exclude_last]
    evidence, labels = [], []
    for name in tqdm(names, desc="encoding training walks", unit="identity", disable=None if progress else True):
        for path in folders[name]:
            try:
                rec = read_recording(path)
            except GaitcamError as e:
                log.warning("skipped: %s", e)
                continue
            for tid, seq in rec.tracks.items():
                for ev in training_evidence(seq, tid, path, encoder, augment):
                    evidence.append(ev)
                    labels.append(name)
    return evidence, labels, sorted(folders)[len(names):]


def training_evidence(seq: SkeletonSequence, track: int, path: str | Path, encoder: GaitEncoder,
                      augment: bool = True) -> list[Evidence]:
    """The evidence a matcher learns from one training track: as recorded and, with `augment`,
    once more under a random sensor shift seeded by its file and track (unusable ones left out)."""
    versions = [seq, shifted_copy(seq, str(path), track)] if augment else [seq]
    out = []
    for version in versions:
        ev = track_evidence(version, track, encoder)
        if ev.failure() is None:
            out.append(ev.evidence())
    return out


def fit_matcher(train_dir: str | Path, encoder: GaitEncoder, exclude_last: int = 0, augment: bool = True,
                progress: bool = True) -> MatcherParams:
    """MatcherParams for `encoder` from `train_dir/<identity>/<recordings>` (one walk = one row,
    plus its shifted copy with `augment`)."""
    evidence, labels, left_out = folder_evidence(train_dir, encoder, exclude_last, augment, progress)
    params = MatcherParams.fit(encoder.version, evidence, labels,
                               notes={"fitted_on": str(train_dir), "left_out": left_out, "augmented": augment})
    log.info("matcher fitted on %d walks of %d people", len(labels), len(set(labels)))
    return params


def fit_matcher_from_gallery(gallery: Gallery, encoder: GaitEncoder) -> MatcherParams:
    """MatcherParams from the walks enrolled in `gallery` (labels: the enrolled names)."""
    names, evidence = gallery_evidence(gallery, template_version(encoder.version))
    if not names:
        raise GaitcamError(f"{gallery.where}: nothing enrolled with these weights to fit on")
    # No cohort: the cohort must be people who are never enrolled, and these all are.
    params = MatcherParams.fit(encoder.version, evidence, names, cohort=False,
                               notes={"fitted_on": f"gallery {gallery.where}"})
    log.info("matcher fitted on %d enrolled walks of %d people", len(names), len(set(names)))
    return params
