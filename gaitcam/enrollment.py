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

from gaitcam.config import APP_ROOT
from gaitcam.errors import GaitcamError
from gaitcam.gallery import Gallery, RecordingRef, Template
from gaitcam.matcher import Decision, Evidence, GalleryIndex, Matcher, MatcherParams, window_descriptors
from gaitcam.model.data import windows_from_sequences
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.formats import read_recording
from gaitcam.recording.native import SUFFIX as NATIVE_SUFFIX
from gaitcam.recording.recording import Recording
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import SkeletonSequence
from gaitcam.skeleton.shape import N_BONES, bone_lengths, body_shape
from gaitcam.skeleton.windows import LIVE_STRIDE
from gaitcam.stream.resample import MODEL_FPS, default_max_gap, resample

log = logging.getLogger(__name__)

MIN_WALK_SECONDS = 3.0  # enrolment needs at least this much usable walking (about 3 strides)
MAX_MISSING = 0.2  # ... and at most this share of missing joints


@dataclass
class TrackEvidence:
    """One recorded track as the matcher sees it, with what enrolment checks."""

    track: int
    descriptors: np.ndarray  # [n, D] window descriptors (mean frame-level AGE per window)
    lengths: np.ndarray  # [n, 19] bone lengths of each window's last frame
    seconds: float  # time covered by usable windows
    missing: float  # share of missing joint positions in the track
    dropped: int  # windows left out: missing joints or tracking glitches

    @property
    def windows(self) -> int:
        return len(self.descriptors)

    @property
    def age(self) -> np.ndarray:
        return self.descriptors.mean(axis=0) if self.windows else np.full(self.descriptors.shape[1], np.nan)

    @property
    def shape(self) -> np.ndarray:
        return body_shape(self.lengths)

    def evidence(self) -> Evidence:
        ev = Evidence(self.descriptors.shape[1], self.descriptors.sum(axis=0, dtype=np.float64), self.windows)
        ev.lengths.extend(self.lengths)
        return ev


def track_evidence(seq: SkeletonSequence, track: int, encoder: GaitEncoder, stride: int = LIVE_STRIDE) -> TrackEvidence:
    """Encode one track's gap-free, complete windows (dropped ones counted).

    As the live stream does: resampled by timestamp to the encoder's 30 fps (a 15 or 60 fps
    recording gives windows of the same duration as live ones), one dropped frame bridged.
    """
    canonical = to_canonical(seq)
    source_fps = 1.0 / np.median(np.diff(seq.timestamps)) if len(seq) > 1 else MODEL_FPS
    times, joints, _ = resample(canonical.timestamps, canonical.joints, MODEL_FPS, default_max_gap(source_fps))
    ws = windows_from_sequences([SkeletonSequence(joints, times, CANONICAL)], encoder.f, stride, normalization="raw")
    ages = encoder.encode(ws.windows, level="frame")
    return TrackEvidence(track, window_descriptors(ages, encoder.model.cfg.age_dim),
                         bone_lengths(ws.windows[:, -1]), len(ws.windows) * stride / MODEL_FPS,
                         canonical.missing_fraction, ws.skipped + ws.jumps)


def recording_evidence(rec: Recording, encoder: GaitEncoder, stride: int = LIVE_STRIDE) -> dict[int, TrackEvidence]:
    return {tid: track_evidence(seq, tid, encoder, stride) for tid, seq in rec.tracks.items()}


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


def load_index(gallery: Gallery, params: MatcherParams) -> GalleryIndex:
    """The gallery's templates for this encoder version, as the matcher's index."""
    names, ages = gallery.templates("age", params.encoder_version)
    shape_names, lengths = gallery.templates("shape", params.encoder_version)
    if names != shape_names:
        raise GaitcamError(f"{gallery.path}: gait and shape templates do not pair up; re-enrol")
    age_rows = [a.mean(axis=0) for a in ages]
    shape_rows = [body_shape(x) for x in lengths]
    dim = params.age_dim
    return GalleryIndex(names, np.array(age_rows, np.float32).reshape(-1, dim),
                        np.array(shape_rows, np.float32).reshape(-1, N_BONES), params)


def prepare_enrolment(index: GalleryIndex, encoder: GaitEncoder, params: MatcherParams, name: str,
                      path: str | Path, track: int | None = None, sha256: str | None = None) -> PreparedEnrolment:
    """Build the templates of one track of one recording after the quality checks; writes nothing.

    Too little walking or too many missing joints refuse the enrolment (the template would be
    noise); a close match to another person in `index` is a warning (a duplicate identity).
    `sha256`, when given, is the hash the recording had when it was first enrolled: a file that
    changed since is refused, as its templates would no longer be the person's enrolled walk.
    """
    rec = read_recording(path)
    tid = pick_track(rec, track)
    ref = RecordingRef.from_file(path, rec.meta.sensor, tid)
    if sha256 is not None and ref.sha256 != sha256:
        raise GaitcamError(f"{path}: changed since {name} was enrolled from it (sha256 differs); "
                           f"restore it, or `gallery remove {name}` and enrol again")
    ev = track_evidence(rec.tracks[tid], tid, encoder)
    if ev.missing > MAX_MISSING:
        raise GaitcamError(f"{path}: track {tid} misses {100 * ev.missing:.0f} % of its joints "
                           f"(at most {100 * MAX_MISSING:.0f} %); record again with the person in full view")
    if ev.seconds < MIN_WALK_SECONDS:
        raise GaitcamError(f"{path}: track {tid} has {ev.seconds:.1f} s of usable walking "
                           f"(need {MIN_WALK_SECONDS:.0f} s)")
    warnings = []
    if len(index):
        d = index.distances(ev.age[None], ev.shape[None])[0]
        for j in np.flatnonzero(params.named(d)):
            other = index.people[j]
            if other != name:
                warnings.append(f"{name} looks like already enrolled {other} "
                                f"(score {float(params.score(d[j])):.2f}): the same person twice?")
    templates = [Template("age", params.encoder_version, ref.sensor, ev.descriptors),
                 Template("shape", params.encoder_version, ref.sensor, ev.lengths)]
    return PreparedEnrolment(templates, ref, EnrollResult(name, tid, ev.windows, ev.seconds, warnings))


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
    for name in gallery.stale(params.encoder_version):
        refs = gallery.recordings(name)
        missing = [str(r.path) for r in refs if not Path(r.path).is_file()]
        if not refs or missing:
            raise GaitcamError(f"{name} was enrolled with another encoder and the recordings to rebuild the "
                               f"templates are gone ({', '.join(missing) or 'none stored'}); "
                               f"`gallery remove {name}` or enrol again")
        plan[name] = [prepare_enrolment(index, encoder, params, name, r.path, r.track, r.sha256) for r in refs]
    for name, prepared in plan.items():
        write_enrolments(gallery, name, prepared, replace=True)
        log.info("re-enrolled %s from %d recording(s) for encoder %s", name, len(prepared), params.encoder_version)
    return list(plan)


def _overlapping_groups(rec: Recording) -> list[list[int]]:
    """Tracks grouped by overlapping time spans [first, last timestamp] (connected components).

    Only tracks seen at the same time can be different people; one person walking through
    twice gives two tracks one after the other, which must be free to get the same name.
    """
    spans = sorted((float(s.timestamps[0]), float(s.timestamps[-1]), tid)
                   for tid, s in rec.tracks.items() if len(s))
    groups: list[list[int]] = []
    end = -np.inf
    for first, last, tid in spans:
        if groups and first <= end:
            groups[-1].append(tid)
            end = max(end, last)
        else:
            groups.append([tid])
            end = last
    return groups + [[tid] for tid, s in rec.tracks.items() if not len(s)]


def identify_recording(rec: Recording, encoder: GaitEncoder, params: MatcherParams, index: GalleryIndex
                       ) -> dict[int, Decision]:
    """Decisions for every track of a recording; tracks seen at the same time are matched jointly."""
    matcher = Matcher(index, params)
    for tid, ev in recording_evidence(rec, encoder).items():
        matcher.tracks[tid] = ev.evidence()
    out: dict[int, Decision] = {}
    for group in _overlapping_groups(rec):
        out.update(matcher.decide(0.0, group))
    return dict(sorted(out.items()))


DEMO_RECORDINGS = APP_ROOT / "recordings" / "demo"


def demo_gallery(stack: ExitStack, encoder: GaitEncoder, params: MatcherParams) -> Gallery:
    """A temporary gallery of the demo people, enrolled from the shipped walks in
    recordings/demo/ (one file per person, named after them); deleted when `stack` closes."""
    files = sorted(DEMO_RECORDINGS.glob(f"*{NATIVE_SUFFIX}"))
    if not files:
        raise GaitcamError(f"{DEMO_RECORDINGS}: the demo gallery recordings are missing")
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="gaitcam-demo-"))
    gallery = stack.enter_context(Gallery(Path(folder) / "demo.db"))
    for f in files:
        enroll_recording(gallery, encoder, params, f.stem, f)
    log.info("demo gallery: enrolled %s from %s", ", ".join(f.stem for f in files), DEMO_RECORDINGS)
    return gallery
