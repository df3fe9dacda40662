"""Recordings -> evidence -> gallery entries and identities: the offline side of matching.

Enrolment, `identify`, `evaluate` and fitting the matcher all turn a recorded track into
evidence here, with the same windows, stride and encoder the live stream uses, so a template
enrolled from a file means the same as the evidence a live track gathers.
"""
from __future__ import annotations

import logging
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gaitcam.config import DEMO_DIR
from gaitcam.errors import GaitcamError
from gaitcam.identity import names
from gaitcam.identity.gallery import Gallery, RecordingRef, Template
from gaitcam.identity.matcher import Decision, Evidence, GalleryIndex, Matcher, MatcherParams, window_descriptors
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.formats import read_recording
from gaitcam.recording.native import SUFFIX as NATIVE_SUFFIX
from gaitcam.recording.recording import Recording
from gaitcam.skeleton.cycle import segment_spectra
from gaitcam.skeleton.sequence import SkeletonSequence
from gaitcam.skeleton.shape import bone_lengths
from gaitcam.skeleton.windows import TrackWindows, WindowRule, WindowStats, track_windows

log = logging.getLogger(__name__)

# Enrolment needs this many windows of usable walking: 2 s at the live stride, about two strides
# (a person crossing a sensor's view in front of it gives about that much).
MIN_ENROL_WINDOWS = 20
MAX_INCOMPLETE = 0.2  # ... and at most this share of frames unusable (joints missing too long)

# Failure to acquire (ISO/IEC 19795-1): why a track gave no usable evidence.
NO_POSE = "no pose"
TOO_FEW_JOINTS = "too few joints"
TOO_FAST = "too fast"
TOO_SHORT = "too short"


@dataclass
class TrackEvidence:
    """One recorded track as the matcher sees it, with what enrolment checks."""

    track: int
    descriptors: np.ndarray  # [n, 2, D] window descriptors (mean frame-level AGE) of each window and its mirror image
    spectra: np.ndarray  # [m, CYCLE_DIM] gait-cycle segment spectra
    lengths: np.ndarray  # [n, 19] bone lengths of each window's last frame (NaN: not tracked)
    seconds: float  # time covered by usable windows
    stats: WindowStats  # what the window rule made of the track's frames

    @property
    def windows(self) -> int:
        return len(self.descriptors)

    @property
    def incomplete(self) -> float:
        """Share of the track's frames dropped for a joint missing longer than a short dropout."""
        return self.stats.incomplete / max(self.stats.frames, 1)

    def evidence(self) -> Evidence:
        ev = Evidence(self.descriptors.shape[-1])
        ev.add_descriptors(self.descriptors, self.lengths)
        ev.add_spectra(self.spectra)
        return ev

    def failure(self, min_windows: int = 1, min_segments: int = 1) -> str | None:
        """Why this track gives too little evidence (fewer windows or gait-cycle segments than
        asked): NO_POSE, TOO_FEW_JOINTS, TOO_FAST or TOO_SHORT; None when it gives enough."""
        if self.windows >= min_windows and len(self.spectra) >= min_segments:
            return None
        s = self.stats
        if s.frames == 0 or s.implausible > s.frames / 2:
            return NO_POSE
        if s.incomplete > s.frames / 2:
            return TOO_FEW_JOINTS
        if s.glitches * 10 > s.frames:  # a glitch every 10 frames or more: no steady run
            return TOO_FAST
        return TOO_SHORT

    def explain(self, reason: str) -> str:
        s = self.stats
        no_pose = (f"{s.implausible} of {s.frames} frames hold no body (hip and shoulder centres collapsed "
                   "together, e.g. all-zero joints)" if s.implausible else "no skeleton in it")
        return {NO_POSE: no_pose,
                TOO_FEW_JOINTS: f"{s.incomplete} of {s.frames} frames miss joints that cannot be derived or bridged",
                TOO_FAST: f"{s.glitches} joint jumps faster than a person moves in {s.frames} frames",
                TOO_SHORT: f"{self.seconds:.1f} s of usable walking in {s.frames} frames"}[reason]


def track_evidence(seq: SkeletonSequence, track: int, encoder: GaitEncoder, rule: WindowRule | None = None
                   ) -> TrackEvidence:
    """Encode one track through the one window rule, as the live stream cuts it (live, a window
    may come up to stride - 1 frames earlier or later, once per run and stride, for people in view
    to take turns)."""
    rule = rule or WindowRule(f=encoder.f)
    return windows_evidence(track_windows(seq, rule), track, encoder, rule)


def windows_evidence(tw: TrackWindows, track: int, encoder: GaitEncoder, rule: WindowRule) -> TrackEvidence:
    """The evidence of a track already cut by `rule` (`track_windows`)."""
    ages = encoder.encode(tw.joints, level="frame", mirror=True)
    return TrackEvidence(track, window_descriptors(ages, encoder.model.cfg.age_dim),
                         segment_spectra(tw.segments), bone_lengths(tw.joints[:, -1], tw.tracked[:, -1]),
                         len(tw) * rule.stride / rule.rate, tw.stats)


def enrol_failure(ev: TrackEvidence, params: MatcherParams) -> str | None:
    """Why a track cannot be enrolled (too few windows, no gait-cycle segment ...), else None."""
    return ev.failure(max(params.min_windows, MIN_ENROL_WINDOWS), params.min_segments)


def recording_evidence(rec: Recording, encoder: GaitEncoder) -> dict[int, TrackEvidence]:
    return {tid: track_evidence(seq, tid, encoder) for tid, seq in rec.tracks.items()}


def pick_track(rec: Recording, track: int | None) -> int:
    """The track to enrol: the only one, or the one named; several without a choice is an error."""
    where = rec.path or "recording"
    if track is not None:
        if track not in rec.tracks:
            raise GaitcamError(f"{where}: no track {track}; tracks: {_describe_tracks(rec)}")
        return track
    if len(rec.tracks) == 1:
        return next(iter(rec.tracks))
    if not rec.tracks:
        raise GaitcamError(f"{where}: holds no skeletons")
    raise GaitcamError(f"{where}: holds {len(rec.tracks)} people; pick one with --track ID ({_describe_tracks(rec)})")


def _describe_tracks(rec: Recording) -> str:
    return ", ".join(f"{t} ({len(s)} frames)" for t, s in sorted(rec.tracks.items()))


@dataclass
class EnrollResult:
    name: str
    track: int
    windows: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


@dataclass
class PreparedEnrolment:
    """One checked enrolment, built but not yet written: what `write_enrolments` stores."""

    templates: list[Template]
    recording: RecordingRef
    result: EnrollResult


def _templates(sensor: str, version: str, ev: TrackEvidence) -> list[Template]:
    """A walk's templates: window descriptors (each window's, then its mirror image's, as rows),
    cycle spectra, bone lengths (0: not measured)."""
    return [Template("age", version, sensor, ev.descriptors.reshape(-1, ev.descriptors.shape[-1])),
            Template("cycle", version, sensor, ev.spectra),
            Template("shape", version, sensor, np.nan_to_num(ev.lengths, nan=0.0))]


def _evidence_from(age: np.ndarray, cycle: np.ndarray, shape: np.ndarray) -> Evidence:
    """A walk's evidence from its templates (`_templates`: the age rows come in window and mirror pairs)."""
    ev = Evidence(age.shape[1])
    ev.add_descriptors(age.reshape(-1, 2, age.shape[1]), np.where(shape > 0, shape, np.nan))
    ev.add_spectra(cycle)
    return ev


def gallery_evidence(gallery: Gallery, version: str) -> tuple[list[str], list[Evidence]]:
    """Names and evidence of every enrolled walk whose templates carry `version`
    (`MatcherParams.template_version`: these weights, this descriptor)."""
    kinds = {kind: gallery.templates(kind, version) for kind in ("age", "cycle", "shape")}
    names = kinds["age"][0]
    if any(kinds[k][0] != names for k in kinds):
        raise GaitcamError(f"{gallery.where}: the templates of one walk do not pair up; re-enrol")
    return names, [_evidence_from(*parts) for parts in zip(*(kinds[k][1] for k in ("age", "cycle", "shape")))]


def load_index(gallery: Gallery, params: MatcherParams, fpir: float | None = None) -> GalleryIndex:
    """The gallery as the matcher's index, with the threshold it calibrates for `fpir` (the
    params' default when None): computed afresh on every load, so after every enrolment and
    removal."""
    names, evidence = gallery_evidence(gallery, params.template_version)
    descriptors = (np.stack([e.descriptor(params.blocks) for e in evidence]) if evidence
                   else np.zeros((0, len(params.mean)), np.float32))
    index = GalleryIndex(names, descriptors, params, fpir)
    if len(index):
        log.info("open set: %s", index.calibration.describe())
    return index


def prepare_enrolment(index: GalleryIndex, encoder: GaitEncoder, params: MatcherParams, name: str,
                      path: str | Path, track: int | None = None, sha256: str | None = None) -> PreparedEnrolment:
    """Build the templates of one track of one recording after the quality checks; writes nothing.

    Too little walking or too many unusable frames refuse the enrolment (the template would be
    noise); a close match to another person in `index` is a warning (a duplicate identity).
    `sha256`, when given, is the hash the recording had when it was first enrolled: a file that
    changed since is refused, as its templates would no longer be the person's enrolled walk.
    """
    name = names.normalise(name)  # before any work: a bad name is refused at once
    rec = read_recording(path)
    tid = pick_track(rec, track)
    ref = RecordingRef.from_file(path, rec.meta.sensor, tid)
    if sha256 is not None and ref.sha256 != sha256:
        raise GaitcamError(f"{path}: changed since {name} was enrolled from it (sha256 differs); "
                           f"restore it, or `gallery remove {name}` and enrol again")
    ev = track_evidence(rec.tracks[tid], tid, encoder)
    if ev.incomplete > MAX_INCOMPLETE and ev.failure(np.inf) != NO_POSE:
        raise GaitcamError(f"{path}: track {tid} cannot be enrolled ({TOO_FEW_JOINTS}): {100 * ev.incomplete:.0f} % "
                           f"of its frames miss joints that cannot be derived or bridged (at most "
                           f"{100 * MAX_INCOMPLETE:.0f} %); record again with the person in full view")
    reason = enrol_failure(ev, params)
    if reason is not None:
        raise GaitcamError(f"{path}: track {tid} cannot be enrolled ({reason}): {ev.explain(reason)}; "
                           f"need {MIN_ENROL_WINDOWS} windows of walking, {ev.windows} usable")
    warnings = []
    if name not in index.people and (lookalike := names.lookalike_warning(name, index.people)) is not None:
        warnings.append(lookalike)
    if len(index):
        d = index.distances(ev.evidence().descriptor(params.blocks)[None])[0]
        j = int(d[: len(index)].argmin())
        score = index.score(d, j)
        if score >= params.min_score and index.people[j] != name:
            warnings.append(f"{name} looks like already enrolled {index.people[j]} "
                            f"(score {score:.2f}): the same person twice?")
    return PreparedEnrolment(_templates(ref.sensor, params.template_version, ev), ref,
                             EnrollResult(name, tid, ev.windows, ev.seconds, warnings))


def write_enrolments(gallery: Gallery, name: str, prepared: list[PreparedEnrolment],
                     replace: bool = False) -> list[EnrollResult]:
    """Store checked enrolments under `name`; `replace` drops the person's old templates first.

    The gallery commits one enrolment per transaction, so everything that can be checked is
    checked before (`prepare_enrolment`; the name by the first write, before it deletes
    anything). What is left to fail is the database itself (busy past its timeout, disk full):
    then the error names the recordings whose templates were not stored.
    """
    results = []
    for i, p in enumerate(prepared):
        try:
            gallery.enroll(name, p.templates, p.recording, replace=replace and i == 0)
        except GaitcamError as e:
            if i == 0:
                raise
            lost = ", ".join(str(q.recording.path) for q in prepared[i:])
            raise GaitcamError(f"{e}; {name} now lacks the templates of {lost}: enrol them again") from e
        for w in p.result.warnings:
            log.warning(w)
        results.append(p.result)
    return results


def enroll_recordings(gallery: Gallery, encoder: GaitEncoder, params: MatcherParams, name: str,
                      paths: list[str | Path], track: int | None = None, replace: bool = False
                      ) -> list[EnrollResult]:
    """Enrol several recordings under `name`: all are checked before any is written.

    So a bad later file never leaves `replace` half done (the old templates gone, the new
    ones incomplete).
    """
    index = load_index(gallery, params)
    prepared = [prepare_enrolment(index, encoder, params, name, p, track) for p in paths]
    return write_enrolments(gallery, name, prepared, replace)


def enroll_recording(gallery: Gallery, encoder: GaitEncoder, params: MatcherParams, name: str,
                     path: str | Path, track: int | None = None, replace: bool = False) -> EnrollResult:
    """Enrol one track of one recording under `name`, after the checks of `prepare_enrolment`."""
    return enroll_recordings(gallery, encoder, params, name, [path], track, replace)[0]


def reenroll_stale(gallery: Gallery, encoder: GaitEncoder, params: MatcherParams) -> list[str]:
    """Rebuild the templates of people enrolled with another encoder from their recordings.

    Templates of two encoders are never mixed: a person whose recordings are gone or changed
    cannot be rebuilt, and the caller must refuse to match until they are removed or
    re-enrolled. Every recording of every stale person is read, hashed and encoded before the
    gallery is touched, so one bad file leaves the whole gallery as it was.
    """
    index = load_index(gallery, params)
    plan: dict[str, list[PreparedEnrolment]] = {}
    for name in gallery.stale(params.template_version):
        refs = gallery.recordings(name)
        missing = [str(r.path) for r in refs if not Path(r.path).is_file()]
        if not refs or missing:
            raise GaitcamError(f"{name} was enrolled with another encoder and the recordings to rebuild the "
                               f"templates are gone ({', '.join(missing) or 'none stored'}); "
                               f"`gallery remove {name}` or enrol again")
        plan[name] = [prepare_enrolment(index, encoder, params, name, r.path, r.track, r.sha256) for r in refs]
    for name, prepared in plan.items():
        write_enrolments(gallery, name, prepared, replace=True)
        log.info("re-enrolled %s from %d recording(s) for %s", name, len(prepared), params.template_version)
    return list(plan)


def _spans(rec: Recording) -> dict[int, tuple[float, float]]:
    """Each non-empty track's time span [first, last timestamp]."""
    return {tid: (float(s.timestamps[0]), float(s.timestamps[-1])) for tid, s in rec.tracks.items() if len(s)}


@dataclass
class Identified:
    """The verdict on one track of a recording, or why there is none (failure to acquire)."""

    decision: Decision
    failure: str | None  # NO_POSE, TOO_FEW_JOINTS, TOO_FAST or TOO_SHORT; None when decided
    detail: str = ""


def identify_recording(rec: Recording, encoder: GaitEncoder, params: MatcherParams, index: GalleryIndex
                       ) -> dict[int, Identified]:
    """Verdicts for every track of a recording; a track too poor to match says why instead.

    Two tracks seen at the same time are two people, so they never get one name: the surer
    track keeps it and the other is unknown (its score and nearest person still given). One
    person walking through twice gives two tracks one after the other, which both get the name.
    """
    matcher = Matcher(index, params)
    failures: dict[int, tuple[str, str]] = {}
    for tid, ev in recording_evidence(rec, encoder).items():
        matcher.tracks[tid] = ev.evidence()
        if (reason := ev.failure(params.min_windows, params.min_segments)) is not None:
            failures[tid] = (reason, ev.explain(reason))
    decisions = {tid: matcher.decide(0.0, [tid])[tid] for tid in rec.tracks}
    spans = _spans(rec)
    holders: dict[str, list[int]] = {}  # name -> tracks given it so far
    for tid in sorted((t for t, d in decisions.items() if d.identity), key=lambda t: -decisions[t].score):
        d = decisions[tid]
        (a0, a1) = spans[tid]
        if any(a0 <= spans[o][1] and spans[o][0] <= a1 for o in holders.get(d.identity, [])):
            decisions[tid] = Decision(None, d.score, d.candidate, d.windows)
        else:
            holders.setdefault(d.identity, []).append(tid)
    return {tid: Identified(d, *failures.get(tid, (None, ""))) for tid, d in sorted(decisions.items())}




def demo_gallery(stack: ExitStack, encoder: GaitEncoder, params: MatcherParams) -> Gallery:
    """A temporary gallery of the demo people, enrolled from the shipped walks in
    recordings/demo/ (one file per person, named after them); deleted when `stack` closes."""
    files = sorted(DEMO_DIR.glob(f"*{NATIVE_SUFFIX}"))
    if not files:
        raise GaitcamError(f"{DEMO_DIR}: the demo gallery recordings are missing")
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="gaitcam-demo-"))
    gallery = stack.enter_context(Gallery(Path(folder) / "demo.db"))
    for f in files:
        enroll_recording(gallery, encoder, params, f.stem, f)
    log.info("demo gallery: enrolled %s from %s", ", ".join(f.stem for f in files), DEMO_DIR)
    return gallery
