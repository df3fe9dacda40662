"""`python main.py fit-matcher`: the matcher's statistics and open-set threshold, from training walks.

Run on the training (gallery) walks only, never on probes. The last `exclude_last` identities
(sorted by name) are left out too, so that `evaluate --unknown N` with the same N measures the
false-positive rate on people the threshold never saw.
"""
from __future__ import annotations

import logging
from pathlib import Path

from tqdm import tqdm

from gaitcam.enrollment import track_evidence
from gaitcam.errors import GaitcamError
from gaitcam.evaluation.folders import identity_folders
from gaitcam.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.formats import read_recording

log = logging.getLogger(__name__)


def fit_matcher(train_dir: str | Path, encoder: GaitEncoder, exclude_last: int = 20, target_fpir: float = 0.05,
                progress: bool = True) -> MatcherParams:
    """MatcherParams for `encoder` from `train_dir/<identity>/<recordings>` (one walk = one row)."""
    folders = identity_folders(train_dir)
    names = sorted(folders)
    if exclude_last:
        if exclude_last >= len(names) - 1:
            raise GaitcamError(f"{train_dir}: cannot leave {exclude_last} of {len(names)} identities out")
        names = names[: len(names) - exclude_last]
    ages, shapes, labels = [], [], []
    for name in tqdm(names, desc="fitting the matcher", unit="identity", disable=None if progress else True):
        for path in folders[name]:
            rec = read_recording(path)
            for tid, seq in rec.tracks.items():
                ev = track_evidence(seq, tid, encoder)
                if ev.windows:
                    ages.append(ev.age)
                    shapes.append(ev.shape)
                    labels.append(name)
    params = MatcherParams.fit(encoder.version, ages, shapes, labels, target_fpir,
                               notes={"fitted_on": str(train_dir), "left_out": sorted(folders)[len(names):]})
    log.info("matcher fitted on %d walks of %d people: threshold %.4f at target FPIR %.2f",
             len(labels), len(names), params.threshold, target_fpir)
    return params
