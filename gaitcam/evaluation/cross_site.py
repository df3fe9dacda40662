"""`python main.py benchmark cross-site`: does the open-set threshold travel to a new site?

KGBD split by person. Persons 1-82 are "the lab": the encoder was trained self-supervised on
their walks only (`weights/sgela-lab82`), and the matcher is fitted here on their walks only.
Persons 83-123 are the new site's people: each enrolled, through the app's own enrolment into a
fresh gallery, from all their walks but the highest-numbered, which is their probe. Persons
124-164 are strangers: every walk of theirs is a probe. (On another KGBD-style tree: the first
half of the persons, then a quarter, then the rest.) The threshold comes from the site's gallery
alone (`identity.openset`, for `--fpir`), never from a labelled probe. Reported: the FPIR asked
for and obtained, with its exact (Clopper-Pearson) 95 % interval, DIR, Rank-1.

The partial-skeleton site repeats the protocol with every site recording rewritten as a
Kinect v2 NTU file whose hands and shoulder centre are never tracked (as many Kinect v2
installations report), enrolled with `enroll` and identified with `identify` as files: each
enrolled person's highest walk and each stranger's highest walk are the probes ("everyone's
other walk"), half the site's people being enrolled.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from scipy.stats import beta
from tqdm import tqdm

from gaitcam.evaluation.fit_matcher import training_evidence
from gaitcam.identity.enrollment import enroll_recordings, identify_recording, load_index
from gaitcam.identity.gallery import Gallery
from gaitcam.identity.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.formats import read_recording, write_recording
from gaitcam.recording.kgbd import KgbdWalk, list_walks
from gaitcam.recording.recording import Recording, RecordingMeta
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import JointState, SkeletonSequence

log = logging.getLogger(__name__)

NEVER_TRACKED = ("HandLeft", "HandRight", "ShoulderCenter")


def _number(w: KgbdWalk) -> int:
    return int(w.person.removeprefix("Person"))


def groups(walks: list[KgbdWalk]) -> tuple[range, range, range]:
    """(lab, site, strangers) person numbers: the first half, a quarter, the rest (KGBD's 164:
    1-82, 83-123, 124-164)."""
    n = max((_number(w) for w in walks), default=0)
    lab = n // 2
    site = lab + (n - lab) // 2
    return range(1, lab + 1), range(lab + 1, site + 1), range(site + 1, n + 1)


def fpir_interval(named: int, strangers: int) -> list[float]:
    """Exact (Clopper-Pearson) 95 % interval of a rate observed as `named` of `strangers`."""
    lo = beta.ppf(0.025, named, strangers - named + 1) if named > 0 else 0.0
    hi = beta.ppf(0.975, named + 1, strangers - named) if named < strangers else 1.0
    return [float(lo), float(hi)]


def _by_person(walks: list[KgbdWalk], persons: range) -> dict[str, list[KgbdWalk]]:
    out: dict[str, list[KgbdWalk]] = {}
    for w in walks:
        if _number(w) in persons:
            out.setdefault(w.person, []).append(w)
    return {p: sorted(ws, key=lambda w: w.walk) for p, ws in sorted(out.items())}


def fit_lab(kgbd: list[KgbdWalk], encoder: GaitEncoder, progress: bool = True) -> MatcherParams:
    """The matcher fitted on the lab's walks (persons 1-82, every walk) only, as `fit-matcher`
    fits one: each walk as recorded and once under a random sensor shift."""
    evidence, labels = [], []
    lab = groups(kgbd)[0]
    for person, walks in tqdm(_by_person(kgbd, lab).items(), desc="lab walks", unit="person",
                              disable=None if progress else True, leave=False):
        for w in walks:
            found = training_evidence(read_recording(w.path).tracks[0], 0, w.path, encoder)
            evidence += found
            labels += [person] * len(found)
    return MatcherParams.fit(encoder.version, evidence, labels,
                             notes={"fitted_on": f"KGBD persons {lab.start}-{lab.stop - 1} (the lab)", "augmented": True})


def _site(walks: list[KgbdWalk], params: MatcherParams, encoder: GaitEncoder, fpir: float, files: dict[str, str],
          progress: bool) -> dict:
    """Enrol the site's people from `files` (walk path -> the file to use), identify the probes."""
    _, site_people, stranger_people = groups(walks)
    site, strangers = _by_person(walks, site_people), _by_person(walks, stranger_people)
    with tempfile.TemporaryDirectory(prefix="gaitcam-site-") as tmp, Gallery(Path(tmp) / "site.db") as gallery:
        for person, ws in tqdm(site.items(), desc="enrolling", unit="person", disable=None if progress else True,
                               leave=False):
            enroll_recordings(gallery, encoder, params, person, [files[str(w.path)] for w in ws[:-1]])
        index = load_index(gallery, params, fpir)
    return {"index": index, "site": site, "strangers": strangers}


def _identify(path: str, encoder: GaitEncoder, params: MatcherParams, index) -> tuple[str | None, str | None, str | None]:
    """(name given, nearest person, failure) for one probe file, as `identify` says it."""
    (result,) = identify_recording(read_recording(path), encoder, params, index).values()
    return result.decision.identity, result.decision.candidate, result.failure


def run_cross_site(root: str | Path, encoder: GaitEncoder, fpir: float = 0.01, partial: bool = True,
                   progress: bool = True) -> dict:
    kgbd = list_walks(root)
    params = fit_lab(kgbd, encoder, progress)
    params.fpir = fpir
    s = _site(kgbd, params, encoder, fpir, {str(w.path): str(w.path) for w in kgbd}, progress)
    index = s["index"]
    enrolled = [(p, str(ws[-1].path)) for p, ws in s["site"].items()]
    stranger = [(p, str(w.path)) for p, ws in s["strangers"].items() for w in ws]
    said = {path: _identify(path, encoder, params, index)
            for _, path in tqdm(enrolled + stranger, desc="identifying", unit="walk",
                                disable=None if progress else True, leave=False)}
    named = sum(said[p][0] is not None for _, p in stranger)
    lab, site, strangers = groups(kgbd)
    result = {
        "fpir_target": fpir,
        "fpir_obtained": named / max(len(stranger), 1),
        "fpir_obtained_ci95": fpir_interval(named, len(stranger)),
        "n_strangers_named": named,
        "persons": {"lab": [lab.start, lab.stop - 1], "site": [site.start, site.stop - 1],
                    "strangers": [strangers.start, strangers.stop - 1]},
        "dir": float(np.mean([said[p][0] == person for person, p in enrolled])),
        "rank1": float(np.mean([said[p][1] == person for person, p in enrolled])),
        "n_stranger_probes": len(stranger), "n_enrolled_probes": len(enrolled),
        "n_stranger_people": len(s["strangers"]), "n_enrolled_people": len(s["site"]),
        "fta": sum(said[p][2] is not None for _, p in enrolled + stranger),
        "threshold": index.calibration.describe(), "lab_weights": encoder.version,
    }
    if partial:
        result["partial"] = _partial_site(kgbd, params, encoder, fpir, progress)
    return result


def _partial_site(kgbd: list[KgbdWalk], params: MatcherParams, encoder: GaitEncoder, fpir: float,
                  progress: bool) -> dict:
    """The site again, every recording an NTU file with hands and shoulder centre never tracked."""
    _, site, strangers = groups(kgbd)
    walks = [w for w in kgbd if _number(w) in site or _number(w) in strangers]
    index_of = [CANONICAL.index(j) for j in NEVER_TRACKED]
    with tempfile.TemporaryDirectory(prefix="gaitcam-ntu-") as tmp:
        files = {}
        for w in walks:
            seq = to_canonical(read_recording(w.path).tracks[0])
            joints, states = seq.joints.copy(), seq.states.copy()
            joints[:, index_of], states[:, index_of] = np.nan, JointState.MISSING
            out = Path(tmp) / f"{w.person}-{w.walk}.skeleton"
            write_recording(Recording(RecordingMeta("kinect", CANONICAL.name, 30.0),
                                      {1: SkeletonSequence(joints, seq.timestamps, CANONICAL, states)}), out)
            files[str(w.path)] = str(out)
        s = _site(kgbd, params, encoder, fpir, files, progress)
        index = s["index"]
        enrolled = [(p, files[str(ws[-1].path)]) for p, ws in s["site"].items()]
        stranger = [(p, files[str(ws[-1].path)]) for p, ws in s["strangers"].items()]
        said = {path: _identify(path, encoder, params, index) for _, path in enrolled + stranger}
    named_right = sum(said[p][0] == person for person, p in enrolled)
    strangers_named = sum(said[p][0] is not None for _, p in stranger)
    return {"joints_never_tracked": list(NEVER_TRACKED), "format": "NTU RGB+D .skeleton (Kinect v2 layout)",
            "enrolled_people": len(enrolled), "enrolled_named_correctly": named_right,
            "stranger_people": len(stranger), "strangers_named": strangers_named,
            "per_14_enrolled_named": 14 * named_right / len(enrolled),
            "per_14_strangers_named": 14 * strangers_named / len(stranger),
            "threshold": index.calibration.describe()}


def format_cross_site(r: dict) -> str:
    (lab0, lab1), lo_hi = r["persons"]["lab"], r["fpir_obtained_ci95"]
    lines = [f"lab: KGBD persons {lab0}-{lab1}; site: {r['n_enrolled_people']} people enrolled, "
             f"{r['n_stranger_people']} strangers ({r['n_stranger_probes']} stranger probes, "
             f"{r['n_enrolled_probes']} enrolled probes)",
             f"threshold from the site's gallery: {r['threshold']}",
             f"FPIR asked {100 * r['fpir_target']:g} %, obtained {100 * r['fpir_obtained']:.2f} % ({r['n_strangers_named']} "
             f"of {r['n_stranger_probes']} stranger probes named; exact 95 % CI {100 * lo_hi[0]:.2f}-"
             f"{100 * lo_hi[1]:.2f} %); DIR "
             f"{100 * r['dir']:.1f} %; Rank-1 {100 * r['rank1']:.1f} %; {r['fta']} probes failed to acquire"]
    if "partial" in r:
        p = r["partial"]
        lines.append(f"partial skeletons ({', '.join(p['joints_never_tracked'])} never tracked, {p['format']}): "
                     f"{p['enrolled_named_correctly']} of {p['enrolled_people']} enrolled people named correctly "
                     f"({p['per_14_enrolled_named']:.1f} of 14), {p['strangers_named']} of {p['stranger_people']} "
                     f"strangers named ({p['per_14_strangers_named']:.1f} of 14); {p['threshold']}")
    return "\n".join(lines)
