"""`python main.py benchmark cross-site`: does the open-set threshold travel to a new site?

KGBD split by person. Persons 1-82 are "the lab": the encoder was trained self-supervised on
their walks only (`weights/sgela-lab82`), and the matcher is fitted here on their walks only.
Persons 83-164 make two sites in two folds: in the first, persons 83-123 are the site's people,
each enrolled, through the app's own enrolment into a fresh gallery, from all their walks but
the highest-numbered, which is their probe, and persons 124-164 are strangers, every walk of
theirs a probe; in the second the halves swap. (On another KGBD-style tree: the first half of
the persons, then a quarter, then the rest.) Each fold's threshold comes from its site's gallery
alone (`identity.openset`, for `--fpir`), never from a labelled probe. Reported, pooled over the
folds and per fold: the FPIR asked for and obtained, with its exact (Clopper-Pearson) 95 %
interval, DIR, Rank-1. Two folds because one holds only 41 strangers: its rate moves in steps
of 0.5 points and its interval spans 0-2.7 % at the 1 % asked for.

The partial-skeleton site repeats the protocol with every site recording rewritten as a
Kinect v2 NTU file whose hands and shoulder centre are never tracked (as many Kinect v2
installations report), enrolled with `enroll` and identified with `identify` as files: each
enrolled person's highest walk and each stranger's highest walk are the probes ("everyone's
other walk"), half the site's people being enrolled, in the same two folds.
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
          site: range, strangers: range, progress: bool) -> dict:
    """Enrol `site`'s people from `files` (walk path -> the file to use) into a fresh gallery."""
    here, away = _by_person(walks, site), _by_person(walks, strangers)
    with tempfile.TemporaryDirectory(prefix="gaitcam-site-") as tmp, Gallery(Path(tmp) / "site.db") as gallery:
        for person, ws in tqdm(here.items(), desc="enrolling", unit="person", disable=None if progress else True,
                               leave=False):
            enroll_recordings(gallery, encoder, params, person, [files[str(w.path)] for w in ws[:-1]])
        index = load_index(gallery, params, fpir)
    return {"index": index, "site": here, "strangers": away}


def _identify(path: str, encoder: GaitEncoder, params: MatcherParams, index) -> tuple[str | None, str | None, str | None]:
    """(name given, nearest person, failure) for one probe file, as `identify` says it."""
    (result,) = identify_recording(read_recording(path), encoder, params, index).values()
    return result.decision.identity, result.decision.candidate, result.failure


def folds(walks: list[KgbdWalk]) -> list[tuple[range, range]]:
    """(site, strangers) of each fold: the two halves of the non-lab persons, each once the site."""
    _, site, strangers = groups(walks)
    return [(site, strangers), (strangers, site)]


def _fold(kgbd: list[KgbdWalk], params: MatcherParams, encoder: GaitEncoder, fpir: float, files: dict[str, str],
          site: range, strangers: range, progress: bool, every_stranger_walk: bool = True) -> dict:
    """One fold: `site` enrolled from `files` (walk path -> the file to use), then each site
    person's last walk and every stranger walk (or each stranger's last) identified."""
    s = _site(kgbd, params, encoder, fpir, files, site, strangers, progress)
    index = s["index"]
    enrolled = [(p, files[str(ws[-1].path)]) for p, ws in s["site"].items()]
    stranger = [(p, files[str(w.path)]) for p, ws in s["strangers"].items()
                for w in (ws if every_stranger_walk else ws[-1:])]
    said = {path: _identify(path, encoder, params, index)
            for _, path in tqdm(enrolled + stranger, desc="identifying", unit="walk",
                                disable=None if progress else True, leave=False)}
    named = sum(said[p][0] is not None for _, p in stranger)
    return {"site": [site.start, site.stop - 1], "strangers": [strangers.start, strangers.stop - 1],
            "fpir_obtained": named / max(len(stranger), 1), "fpir_obtained_ci95": fpir_interval(named, len(stranger)),
            "n_strangers_named": named, "n_stranger_probes": len(stranger), "n_enrolled_probes": len(enrolled),
            "n_stranger_people": len(s["strangers"]), "n_enrolled_people": len(s["site"]),
            "dir_named": sum(said[p][0] == person for person, p in enrolled),
            "rank1_named": sum(said[p][1] == person for person, p in enrolled),
            "fta": sum(said[p][2] is not None for _, p in enrolled + stranger),
            "threshold": index.calibration.describe()}


def run_cross_site(root: str | Path, encoder: GaitEncoder, fpir: float = 0.01, partial: bool = True,
                   progress: bool = True) -> dict:
    kgbd = list_walks(root)
    params = fit_lab(kgbd, encoder, progress)
    params.fpir = fpir
    files = {str(w.path): str(w.path) for w in kgbd}
    runs = [_fold(kgbd, params, encoder, fpir, files, site, strangers, progress) for site, strangers in folds(kgbd)]
    total = {k: sum(r[k] for r in runs) for k in ("n_strangers_named", "n_stranger_probes", "n_enrolled_probes",
                                                  "n_stranger_people", "n_enrolled_people", "fta")}
    named, probes = total["n_strangers_named"], total["n_stranger_probes"]
    lab, site, strangers = groups(kgbd)
    result = {
        "fpir_target": fpir,
        "fpir_obtained": named / max(probes, 1),
        "fpir_obtained_ci95": fpir_interval(named, probes),
        "persons": {"lab": [lab.start, lab.stop - 1], "site": [site.start, site.stop - 1],
                    "strangers": [strangers.start, strangers.stop - 1]},
        "dir": sum(r["dir_named"] for r in runs) / max(total["n_enrolled_probes"], 1),
        "rank1": sum(r["rank1_named"] for r in runs) / max(total["n_enrolled_probes"], 1),
        **total,
        "threshold": "; ".join(r["threshold"] for r in runs), "lab_weights": encoder.version,
        "folds": runs,
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
        runs = [_fold(kgbd, params, encoder, fpir, files, here, away, progress, every_stranger_walk=False)
                for here, away in folds(kgbd)]
    named_right, strangers_named = (sum(r[k] for r in runs) for k in ("dir_named", "n_strangers_named"))
    enrolled_people, stranger_people = (sum(r[k] for r in runs) for k in ("n_enrolled_probes", "n_stranger_probes"))
    return {"joints_never_tracked": list(NEVER_TRACKED), "format": "NTU RGB+D .skeleton (Kinect v2 layout)",
            "enrolled_people": enrolled_people, "enrolled_named_correctly": named_right,
            "stranger_people": stranger_people, "strangers_named": strangers_named,
            "per_14_enrolled_named": 14 * named_right / enrolled_people,
            "per_14_strangers_named": 14 * strangers_named / stranger_people,
            "threshold": "; ".join(r["threshold"] for r in runs)}


def format_cross_site(r: dict) -> str:
    (lab0, lab1), lo_hi = r["persons"]["lab"], r["fpir_obtained_ci95"]
    lines = [f"lab: KGBD persons {lab0}-{lab1}; two folds, each half of the other persons once the site and once "
             f"the strangers: {r['n_enrolled_people']} people enrolled, {r['n_stranger_people']} strangers "
             f"({r['n_stranger_probes']} stranger probes, {r['n_enrolled_probes']} enrolled probes)"]
    for f in r["folds"]:
        flo, fhi = f["fpir_obtained_ci95"]
        lines.append(f"  site {f['site'][0]}-{f['site'][1]}, strangers {f['strangers'][0]}-{f['strangers'][1]}: FPIR "
                     f"{100 * f['fpir_obtained']:.2f} % ({f['n_strangers_named']} of {f['n_stranger_probes']}; "
                     f"{100 * flo:.2f}-{100 * fhi:.2f} %), DIR {f['dir_named']} of {f['n_enrolled_probes']}, "
                     f"Rank-1 {f['rank1_named']} of {f['n_enrolled_probes']}; threshold from the site's gallery: "
                     f"{f['threshold']}")
    lines.append(f"FPIR asked {100 * r['fpir_target']:g} %, obtained {100 * r['fpir_obtained']:.2f} % "
                 f"({r['n_strangers_named']} of {r['n_stranger_probes']} stranger probes named; exact 95 % CI "
                 f"{100 * lo_hi[0]:.2f}-{100 * lo_hi[1]:.2f} %); DIR {100 * r['dir']:.1f} %; Rank-1 "
                 f"{100 * r['rank1']:.1f} %; {r['fta']} probes failed to acquire")
    if "partial" in r:
        p = r["partial"]
        lines.append(f"partial skeletons ({', '.join(p['joints_never_tracked'])} never tracked, {p['format']}): "
                     f"{p['enrolled_named_correctly']} of {p['enrolled_people']} enrolled people named correctly "
                     f"({p['per_14_enrolled_named']:.1f} of 14), {p['strangers_named']} of {p['stranger_people']} "
                     f"strangers named ({p['per_14_strangers_named']:.1f} of 14); {p['threshold']}")
    return "\n".join(lines)
