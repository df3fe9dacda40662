"""`python main.py benchmark handoff`: one person across two cameras, measured on KGBD.

The route: KGBD persons 83-164 (the half of the persons the lab never saw; on another tree,
the upper half) walk back and forth between camera A and camera B, each walk of theirs one pass
in front of one camera, the cameras alternating, from a camera drawn at random. People enter
the route in a shuffled order, on average one every `GAP` seconds, so that several are in
transit at once; each transit takes a time drawn uniformly from `TRANSIT` seconds. Half the
people (drawn) are enrolled: their lowest-numbered walk is their gallery walk (one template each,
the app's open-set threshold calibrated on that gallery) and is not walked on the route; the
other half are strangers, every walk of theirs on the route. Each pass is a track on its camera;
at its end the `Linker` hears of it as a track that started (with the whole walk's descriptor
and the matcher's verdict on it) and as one that ended; its decision falls due the linker's
default wait later. The linker's transit window (0-30 s) is wider than the true transits, as a
site that knows its corridor only roughly would set it. A link is right when both tracks are
the same person: precision over the links made, recall over the true ones (each person's
consecutive passes).

Nothing is chosen on persons 83-164: the encoder is `weights/sgela-lab82` (trained on persons
1-82 only), the matcher is fitted on the lab's walks as `fit-matcher` fits one, and the link
threshold is chosen on the lab alone: the lab's persons halved, the matcher fitted on one half
and the route walked by the other (and the other way round), several schedules each; the
threshold is the lowest whose pooled precision there reaches `PRECISION_AIM` (`choose_threshold`).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from gaitcam.evaluation.cross_site import fpir_interval, groups
from gaitcam.identity.enrollment import MIN_ENROL_WINDOWS, track_evidence
from gaitcam.identity.handoff import DEFAULT_WAIT, DEFAULT_WINDOW, Link, Linker
from gaitcam.identity.matcher import Evidence, GalleryIndex, MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.formats import read_recording
from gaitcam.recording.kgbd import KgbdWalk, list_walks
from gaitcam.skeleton.perturb import shifted_copy

log = logging.getLogger(__name__)

CAMERAS = ("A", "B")
TRANSIT = (2.0, 20.0)  # seconds between leaving one camera and appearing at the other
GAP = 6.0  # mean seconds between two people entering the route
PRECISION_AIM = 0.98  # the lab precision the threshold is chosen for (the aim on the test people: 0.95)
THRESHOLDS = np.round(np.arange(0.2, 0.801, 0.025), 3)  # the grid the lab validation searches
LAB_SCHEDULES = 5  # schedules per lab half


@dataclass
class Walk:
    """One KGBD walk, encoded once: its whole-walk evidence (None: failed to acquire) and, for a
    lab walk, the evidence of its sensor-shifted training copy."""

    person: str
    walk: int
    seconds: float
    evidence: Evidence | None
    shifted: Evidence | None = None


@dataclass(frozen=True)
class Pass:
    """One walk on the route: a track on one camera."""

    person: str
    walk: int
    camera: str
    track: int
    start: float
    end: float


def number(person: str) -> int:
    return int(person.removeprefix("Person"))


def encode(walks: Sequence[KgbdWalk], encoder: GaitEncoder, shifted: bool, progress: bool = True) -> list[Walk]:
    """Every walk encoded through the app's window rule; `shifted` also encodes the sensor-shifted
    copy the matcher learns from (as `fit-matcher` does)."""
    out = []
    for w in tqdm(walks, desc="encoding", unit="walk", disable=None if progress else True, leave=False):
        seq = read_recording(w.path).tracks[0]
        ev = track_evidence(seq, 0, encoder)
        # the copy `fit-matcher` learns from (`fit_matcher.training_evidence`: same shift, same seed)
        copy = track_evidence(shifted_copy(seq, str(w.path), 0), 0, encoder) if shifted else None
        out.append(Walk(w.person, w.walk, float(seq.timestamps[-1] - seq.timestamps[0]) if len(seq) else 0.0,
                        ev.evidence() if ev.failure() is None else None,
                        copy.evidence() if copy is not None and copy.failure() is None else None))
    return out


def fit(walks: Sequence[Walk], version: str, note: str) -> MatcherParams:
    """The matcher fitted as `fit-matcher` fits one: every walk as recorded and its shifted copy,
    the walks kept as the cohort."""
    evidence, labels = [], []
    for w in walks:
        for ev in (w.evidence, w.shifted):
            if ev is not None:
                evidence.append(ev)
                labels.append(w.person)
    return MatcherParams.fit(version, evidence, labels, notes={"fitted_on": note, "augmented": True})


def schedule(routes: dict[str, list[tuple[int, float]]], rng: np.random.Generator, gap: float = GAP,
             transit: tuple[float, float] = TRANSIT) -> list[Pass]:
    """The passes of everyone's route (person -> [(walk, seconds)] in walking order): people
    enter in a shuffled order at uniformly drawn times over len(routes) * gap seconds, each from
    a drawn camera; track ids count up per camera in order of start."""
    people = sorted(routes)
    entry = np.sort(rng.uniform(0, gap * len(people), len(people)))
    passes = []
    for person, t in zip(rng.permutation(people), entry):
        first = int(rng.integers(len(CAMERAS)))
        for k, (walk, seconds) in enumerate(routes[person]):
            if k:
                t += rng.uniform(*transit)
            passes.append((person, walk, CAMERAS[(first + k) % len(CAMERAS)], t, t + seconds))
            t += seconds
    passes.sort(key=lambda p: p[3])
    count = dict.fromkeys(CAMERAS, 0)
    out = []
    for person, walk, camera, start, end in passes:
        count[camera] += 1
        out.append(Pass(str(person), walk, camera, count[camera], float(start), float(end)))
    return out


def in_transit(passes: Sequence[Pass]) -> tuple[float, int]:
    """(mean over the route's duration, most at once) of people between two cameras."""
    by_person: dict[str, list[Pass]] = {}
    for p in passes:
        by_person.setdefault(p.person, []).append(p)
    gaps = [(a.end, b.start) for ps in by_person.values() for a, b in zip(ps, ps[1:])]
    if not gaps:
        return 0.0, 0
    edges = sorted([(t0, 1) for t0, _ in gaps] + [(t1, -1) for _, t1 in gaps])
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    span = max(p.end for p in passes) - min(p.start for p in passes)
    return float(sum(t1 - t0 for t0, t1 in gaps) / span), most


def walk_route(passes: Sequence[Pass], descriptors: dict[tuple[str, int], np.ndarray],
               names: dict[tuple[str, int], str | None], params: MatcherParams, threshold: float,
               window: tuple[float, float] = DEFAULT_WINDOW, wait: float = DEFAULT_WAIT,
               one_to_one: bool = True) -> dict[tuple[str, int], Link]:
    """The linker's decision on every pass, keyed by (camera, track): each pass is reported at
    its end, as a track that started and one that ended, and decisions fall due `wait` s later
    (`one_to_one`: the `Linker`'s, for comparing designs)."""
    linker = Linker(params, threshold, window, wait, one_to_one=one_to_one)
    at: dict[float, list[Pass]] = {}
    for p in passes:
        at.setdefault(p.end, []).append(p)
        at.setdefault(p.end + wait, [])
    decided: list[Link] = []
    for t in sorted(at):
        for p in at[t]:
            key = (p.person, p.walk)
            linker.track_started(p.camera, p.track, p.start, descriptors[key], names[key], now=p.end)
            linker.track_ended(p.camera, p.track, p.end, descriptors[key], names[key])
        decided += linker.decide(t)
    decided += linker.flush()
    return {(link.to_camera, link.to_track): link for link in decided}


def link_counts(passes: Sequence[Pass], links: dict[tuple[str, int], Link]) -> dict:
    """True links (consecutive passes of one person), links made, and the right ones among them."""
    person = {(p.camera, p.track): p.person for p in passes}
    made = [link for link in links.values() if link.linked]
    right = sum(person[(link.from_camera, link.from_track)] == person[(link.to_camera, link.to_track)]
                for link in made)
    true = len(passes) - len({p.person for p in passes})
    return {"n_links_true": true, "n_links_made": len(made), "n_links_right": int(right)}


def rates(counts: dict) -> dict:
    made, right, true = counts["n_links_made"], counts["n_links_right"], counts["n_links_true"]
    return {"precision": right / made if made else 1.0, "recall": right / true if true else 0.0}


@dataclass
class Route:
    """One draw of the protocol on some people: who is enrolled, the gallery, the matcher's
    verdicts on the route walks, the schedule."""

    passes: list[Pass]
    descriptors: dict[tuple[str, int], np.ndarray]
    names: dict[tuple[str, int], str | None]
    enrolled: list[str]
    strangers: list[str]
    index: GalleryIndex


def draw_route(walks: Sequence[Walk], params: MatcherParams, rng: np.random.Generator) -> Route:
    """Half the people (drawn) enrolled from their first walk, the matcher's verdicts on
    everyone's route walks (named at the gallery's own threshold), and a schedule."""
    mine: dict[str, list[Walk]] = {}
    for w in sorted(walks, key=lambda w: (w.person, w.walk)):
        if w.evidence is not None:
            mine.setdefault(w.person, []).append(w)
    people = sorted(mine)
    chosen = set(rng.permutation(people)[: len(people) // 2])
    # an enrolled person keeps at least two walks for the route: one link to make
    enrolled = [p for p in people if p in chosen and len(mine[p]) > 2 and _enrollable(mine[p][0].evidence, params)]
    routes = {p: [(w.walk, w.seconds) for w in (ws[1:] if p in enrolled else ws)] for p, ws in mine.items()}
    descriptors = {(w.person, w.walk): w.evidence.descriptor(params.blocks) for ws in mine.values() for w in ws}
    gallery = np.stack([descriptors[(p, mine[p][0].walk)] for p in enrolled]) if enrolled else np.zeros(
        (0, len(params.mean)), np.float32)
    index = GalleryIndex(enrolled, gallery, params)
    keys = [(p, walk) for p, r in routes.items() for walk, _ in r]
    names: dict[tuple[str, int], str | None] = dict.fromkeys(keys)
    if enrolled:
        for k, row in zip(keys, index.distances(np.stack([descriptors[k] for k in keys]))):
            j = int(row[: len(enrolled)].argmin())
            names[k] = enrolled[j] if index.score(row, j) >= params.min_score else None
    return Route(schedule(routes, rng), descriptors, names, enrolled, [p for p in people if p not in enrolled], index)


def _enrollable(ev: Evidence, params: MatcherParams) -> bool:
    """Whether the app would enrol this walk (`enrollment.enrol_failure`'s evidence)."""
    return ev.windows >= max(params.min_windows, MIN_ENROL_WINDOWS) and ev.segments >= params.min_segments


def choose_threshold(lab: Sequence[Walk], version: str, seed: int, progress: bool = True) -> tuple[float, list[dict]]:
    """The link threshold, from the lab's people only: halved (drawn), the matcher fitted on one
    half and `LAB_SCHEDULES` routes walked by the other, both ways; counts pooled per threshold
    of the grid. The lowest threshold whose pooled precision reaches `PRECISION_AIM` (the
    highest recall that keeps it)."""
    rng = np.random.default_rng([seed, 1])
    people = sorted({w.person for w in lab})
    order = rng.permutation(people)
    halves = [set(order[: len(people) // 2]), set(order[len(people) // 2:])]
    pooled = {float(t): dict.fromkeys(("n_links_true", "n_links_made", "n_links_right"), 0) for t in THRESHOLDS}
    for k, fitted_on in enumerate(halves):
        params = fit([w for w in lab if w.person in fitted_on], version, "lab half")
        walkers = [w for w in lab if w.person not in fitted_on]
        for _ in tqdm(range(LAB_SCHEDULES), desc=f"lab half {k + 1}", disable=None if progress else True, leave=False):
            route = draw_route(walkers, params, rng)
            for t in THRESHOLDS:
                counts = link_counts(route.passes, walk_route(route.passes, route.descriptors, route.names, params,
                                                              float(t)))
                for key, v in counts.items():
                    pooled[float(t)][key] += v
    table = [{"threshold": t, **c, **rates(c)} for t, c in pooled.items()]
    good = [row for row in table if row["precision"] >= PRECISION_AIM]
    chosen = min(good, key=lambda row: row["threshold"]) if good else max(table, key=lambda row: row["precision"])
    log.info("link threshold %.3f: on the lab's people precision %.3f, recall %.3f", chosen["threshold"],
             chosen["precision"], chosen["recall"])
    return float(chosen["threshold"]), table


def run_handoff(root: str, encoder: GaitEncoder, seed: int = 0, progress: bool = True) -> dict:
    """The whole benchmark (module docstring); rates are fractions in [0, 1]."""
    started = time.monotonic()
    kgbd = list_walks(root)
    lab_people = groups(kgbd)[0]
    lab_note = f"KGBD persons {lab_people.start}-{lab_people.stop - 1}"
    lab = encode([w for w in kgbd if number(w.person) in lab_people], encoder, shifted=True, progress=progress)
    site = encode([w for w in kgbd if number(w.person) not in lab_people], encoder, shifted=False, progress=progress)
    threshold, table = choose_threshold(lab, encoder.version, seed, progress)
    params = fit(lab, encoder.version, f"{lab_note} (the lab)")
    route = draw_route(site, params, np.random.default_rng(seed))
    links = walk_route(route.passes, route.descriptors, route.names, params, threshold)
    counts = link_counts(route.passes, links)
    person = {(p.camera, p.track): p.person for p in route.passes}
    made = [link for link in links.values() if link.linked]
    right = [person[(link.from_camera, link.from_track)] == person[(link.to_camera, link.to_track)] for link in made]
    stranger = [person[(link.to_camera, link.to_track)] not in route.enrolled for link in made]
    mean_transit, most_transit = in_transit(route.passes)
    numbers = sorted(number(p.person) for p in route.passes)
    right_n, made_n, true_n = counts["n_links_right"], counts["n_links_made"], counts["n_links_true"]
    return {
        **rates(counts), **counts, "threshold": threshold,
        # exact (Clopper-Pearson) 95 % intervals
        "precision_ci95": fpir_interval(right_n, made_n) if made_n else None,
        "recall_ci95": fpir_interval(right_n, true_n) if true_n else None,
        "threshold_chosen_on": f"{lab_note} only (the lab): halved, the matcher fitted on one half and "
        f"{LAB_SCHEDULES} routes walked by the other, both ways; the lowest threshold whose pooled precision "
        f"reached {PRECISION_AIM:g}",
        "lab_validation": table,
        "persons": [numbers[0], numbers[-1]], "n_enrolled": len(route.enrolled), "n_strangers": len(route.strangers),
        "n_passes": len(route.passes),
        "gallery": ("each enrolled person's lowest-numbered walk, not walked on the route; "
                    + route.index.calibration.describe()) if route.index.calibration else "nobody enrolled",
        "links_by_basis": {b: {"made": sum(link.basis == b for link in made),
                               "right": sum(ok for link, ok in zip(made, right) if link.basis == b)}
                           for b in ("identity", "gait")},
        "stranger_links": {"made": sum(stranger), "right": sum(ok for ok, s in zip(right, stranger) if s)},
        "in_transit_mean": mean_transit, "in_transit_max": most_transit,
        "candidates_mean": float(np.mean([_candidates(route.passes, p) for p in route.passes])),
        "transit_s": list(TRANSIT), "window_s": list(DEFAULT_WINDOW), "wait_s": DEFAULT_WAIT, "gap_s": GAP,
        "seed": seed, "lab_weights": encoder.version, "seconds": time.monotonic() - started,
    }


def _candidates(passes: Sequence[Pass], p: Pass) -> int:
    """Tracks on the other camera that ended within the transit window before `p` started."""
    lo, hi = DEFAULT_WINDOW
    return sum(q.camera != p.camera and lo <= p.start - q.end <= hi for q in passes)


def format_handoff(r: dict) -> str:
    basis, strangers = r["links_by_basis"], r["stranger_links"]
    return "\n".join([
        f"route: KGBD persons {r['persons'][0]}-{r['persons'][1]}, {r['n_enrolled']} enrolled and {r['n_strangers']} "
        f"strangers, {r['n_passes']} passes over cameras {' and '.join(CAMERAS)}; transit {r['transit_s'][0]:g}-"
        f"{r['transit_s'][1]:g} s; in transit at once {r['in_transit_mean']:.1f} on average, at most "
        f"{r['in_transit_max']}; {r['candidates_mean']:.1f} tracks ended within the window before each track started",
        f"threshold {r['threshold']:.3f}, chosen on {r['threshold_chosen_on']}",
        f"links: {r['n_links_made']} made, {r['n_links_right']} right, {r['n_links_true']} true: precision "
        f"{100 * r['precision']:.1f} %, recall {100 * r['recall']:.1f} %; by the gallery's names "
        f"{basis['identity']['right']} of {basis['identity']['made']} right, by gait and shape "
        f"{basis['gait']['right']} of {basis['gait']['made']}; strangers' links {strangers['right']} of "
        f"{strangers['made']} right; {r['seconds']:.0f} s",
    ])
