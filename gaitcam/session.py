"""gaitcam as a library: `open_session` wires weights, encoder, matcher and gallery once.

    import gaitcam

    with gaitcam.open_session(gallery="site.db") as session:
        session.enroll("ada", "ada-walk.gaitrec")
        for decision in session.identify("visitor.gaitrec"):
            print(decision["track"], decision["identity"], decision["score"])
        for event in session.events():  # what happened, as schema events (gaitcam.events)
            print(event)

`load_models` is the one place weights become an encoder and its matcher parameters; the
command line, the live view and the benchmarks call it too.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gaitcam.config import WEIGHTS_DIR
from gaitcam.errors import GaitcamError
from gaitcam.events import EventBus

if TYPE_CHECKING:
    from gaitcam.identity.enrollment import EnrollResult
    from gaitcam.sensors.base import Source
    from gaitcam.stream.calibration import Calibration
    from gaitcam.stream.encode import EncodeWorker
    from gaitcam.stream.pipeline import FrameRecorder, Snapshot, Stats
    from gaitcam.identity.gallery import Gallery
    from gaitcam.identity.handoff import Linker
    from gaitcam.identity.matcher import Evidence, GalleryIndex, MatcherParams
    from gaitcam.identity.sightings import SightingWriter
    from gaitcam.model.encoder import GaitEncoder

log = logging.getLogger(__name__)
_warned_blas = False  # open_session's OpenBLAS warning: once a process

DEFAULT_WEIGHTS = WEIGHTS_DIR / "sgela"


@dataclass
class Models:
    """An encoder and the matcher parameters fitted for exactly it."""

    encoder: GaitEncoder
    params: MatcherParams


def load_encoder(weights: str | Path | None = None, device: str = "auto", threads: int | None = None,
                 f: int | None = None, precision: str = "float32") -> GaitEncoder:
    """The encoder of `weights` (default: the shipped SGE-LA) on `device` ("auto": CUDA when
    present). `threads` sets torch's CPU threads; `f` checks the window length the weights use;
    `precision`: "float32", "int8" (the CPU kernel), "float16" or "bfloat16" (the GPU path;
    `GaitEncoder` says when it falls back to float32)."""
    import torch

    from gaitcam.model.encoder import GaitEncoder

    weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    if threads is not None:
        torch.set_num_threads(threads)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GaitcamError(f"device {device}: no CUDA device here (torch {torch.__version__}); use auto or cpu")
    encoder = GaitEncoder.from_weights(weights, device=device, precision=precision)
    if f is not None and encoder.f != f:
        raise GaitcamError(f"{weights}: the weights use {encoder.f}-frame windows, the config says f = {f}")
    return encoder


def load_models(weights: str | Path | None = None, device: str = "auto", threads: int | None = None,
                f: int | None = None, threshold: float | None = None, fpir: float | None = None,
                precision: str = "float32") -> Models:
    """`load_encoder`, and the matcher parameters fitted for exactly that encoder
    (`WEIGHTS.matcher.json`, refused for any other). `threshold` (the score that names someone,
    0.5 = calibrated) and `fpir` (the share of strangers allowed a name) override the defaults."""
    weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    encoder = load_encoder(weights, device, threads, f, precision)
    params = matcher_params_for(encoder, weights)
    if threshold is not None:
        params.min_score = threshold
    if fpir is not None:
        params.fpir = fpir
    return Models(encoder, params)


def matcher_params_for(encoder: GaitEncoder, weights: str | Path) -> MatcherParams:
    """The matcher parameters beside `weights` (`WEIGHTS.matcher.json`), refused unless fitted
    for exactly this encoder."""
    from gaitcam.identity.matcher import MatcherParams

    path = Path(f"{weights}.matcher.json")
    if not path.is_file():
        raise GaitcamError(f"{path}: no matcher parameters for these weights; "
                           f"run `gaitcam fit-matcher --train DIR --weights {weights}`")
    params = MatcherParams.load(path)
    if params.encoder_version != encoder.version:
        raise GaitcamError(f"{path}: fitted for encoder {params.encoder_version}, the weights are "
                           f"{encoder.version}; run fit-matcher again")
    return params


def open_gallery(path: str | Path, models: Models, rebuild: bool = True) -> Gallery:
    """The gallery at `path`, with templates of an older encoder rebuilt from their recordings
    (and plain vectors, where a PostgreSQL gallery has them on, kept in step with the matcher)."""
    from gaitcam.identity import plain_vectors
    from gaitcam.identity.enrollment import reenroll_stale
    from gaitcam.identity.gallery import open_store

    gallery = open_store(path)
    plain_vectors.attach(gallery, models.params, rebuild)
    if rebuild and gallery.stale(models.params.template_version):
        names = reenroll_stale(gallery, models.encoder, models.params)
        log.warning("re-enrolled %s for %s", ", ".join(names), models.params.template_version)
    return gallery


class Session:
    """Enrol and identify recordings against one gallery, and run live sources on it
    (`live`); every change and verdict is also an event on `bus` (`events()` drains the
    session's own subscription). Close it (or use `with`) to close the gallery."""

    def __init__(self, models: Models, gallery: Gallery, camera: str = "library", keep_events: bool = True,
                 site_links: bool = False) -> None:
        """`keep_events`: keep the events for `events()` (programs that subscribe to `bus`
        themselves, like the command line and the service, leave it off). `site_links`: this
        process is one camera of a site linked by `gaitcam link` (`identity.sightings`): its ended
        tracks are stored in the gallery for that linker, and it links none itself."""
        self.models = models
        self.gallery = gallery
        self.bus = EventBus(camera)
        self._own = self.bus.subscribe(maxsize=100_000) if keep_events else None
        self._index: GalleryIndex | None = None
        self._generation = -1  # the gallery's generation `_index` was read at
        self._lock = threading.RLock()  # enrolments from several threads (the service) one at a time
        self._runs: list[LiveRun] = []
        self._closing = threading.Event()
        self._watcher: threading.Thread | None = None
        self._worker: EncodeWorker | None = None  # one encoder thread for all live sources (`live`)
        self._linker: Linker | None = None  # site ids across this session's cameras, from its second source
        self._link_lock = threading.Lock()
        self._link_due = 0.0  # wall-clock time of the next `decide`
        self._sightings: SightingWriter | None = None  # with site links: the ended tracks' way to the site's linker
        if site_links:
            from gaitcam.identity.sightings import SightingStore, SightingWriter

            self._sightings = SightingWriter(SightingStore(gallery))

    @property
    def index(self) -> GalleryIndex:
        """The gallery as the matcher sees it (reloaded, and recalibrated, after every change,
        this session's or another process's: `_watch`)."""
        from gaitcam.identity import plain_vectors
        from gaitcam.identity.enrollment import load_index

        with self._lock:
            if self._index is None:
                generation = self.gallery.generation()  # read first: a change meanwhile is seen again
                # searched by the database where the gallery has plain vectors on
                self._index = plain_vectors.searching(self.gallery, load_index(self.gallery, self.models.params))
                self._generation = generation
                if self._watcher is None:
                    self._watcher = threading.Thread(target=self._watch, name="gaitcam-gallery-watch", daemon=True)
                    self._watcher.start()
            return self._index

    def _watch(self) -> None:
        """Reload the index when another process (another camera) enrols, renames or removes
        someone: within a second, and a removed person's templates leave memory with the old
        index. While the gallery cannot be read (a lost server), matching goes on with the
        index last read, and the watch retries with backoff."""
        from gaitcam.identity.gallery import RETRY_S

        retry = RETRY_S[0]
        while not self._closing.is_set():
            try:
                seen = self._generation
                if self.gallery.wait_for_change(seen, timeout=0.5) != seen and not self._closing.is_set():
                    self._changed()
                retry = RETRY_S[0]
            except Exception as e:  # noqa: BLE001 (the watch must outlive any one failure)
                if self.gallery.closed:  # closed under it (by whoever opened it): nothing left to follow
                    return
                log.warning("%s; matching goes on with the gallery as last read (retrying in %.0f s)", e, retry)
                self._closing.wait(retry)
                retry = min(2 * retry, RETRY_S[1])

    def _changed(self) -> None:
        """The gallery changed: recalibrate, and let live runs match against it from now on
        (when it cannot be read, everything keeps the index it has)."""
        with self._lock:
            last, self._index = self._index, None
            try:
                index = self.index
            except BaseException:
                self._index = last
                raise
        for run in self._runs:
            run.pipeline.matcher.index = index

    def people(self) -> list[str]:
        return [p.name for p in self.gallery.people()]

    def enroll(self, name: str, recording_path: str | Path, track: int | None = None, replace: bool = False
               ) -> EnrollResult:
        """Enrol `name` from one recording (a multi-person one needs `track`); refused, with the
        reason, when it holds too little usable walking. Emits `enrolled`."""
        from gaitcam.identity.enrollment import enroll_recordings

        with self._lock:
            (result,) = enroll_recordings(self.gallery, self.models.encoder, self.models.params, name,
                                          [str(recording_path)], track, replace=replace)
            self._changed()
        self.bus.publish("enrolled", name=result.name, walks=1, windows=result.windows, seconds=round(result.seconds, 2))
        return result

    def rename(self, old: str, new: str) -> None:
        with self._lock:
            self.gallery.rename(old, new)
            self._changed()

    def remove(self, name: str, delete_recordings: bool = False) -> list[Path]:
        """Delete `name` and their templates for good (scrubbed from the gallery file); returns
        the recordings only they appeared in, deleted too with `delete_recordings`. Emits `removed`."""
        with self._lock:
            info = next((p for p in self.gallery.people() if p.name == name), None)
            own = self.gallery.remove(name, delete_recordings)
            self._changed()
        self.bus.publish("removed", name=name, templates=info.n_templates if info else 0)
        return own

    def identify(self, recording_path: str | Path) -> list[dict[str, Any]]:
        """One decision per track of the recording: `identity` (a name, or None for a stranger
        or a track too poor to tell), `score` (0.5 = the calibrated threshold; None when too
        poor), `track`, `nearest`, `windows` and `failure` (why it could not tell, else None).
        Emits an `identity` event per decided track."""
        from gaitcam.identity.enrollment import identify_recording
        from gaitcam.recording.formats import read_recording

        rec = read_recording(recording_path)
        threshold = self.models.params.min_score
        out = []
        for track, r in identify_recording(rec, self.models.encoder, self.models.params, self.index).items():
            d = r.decision
            score = None if d.pending else round(float(d.score), 4)
            out.append({"track": track, "identity": d.identity, "score": score, "nearest": d.candidate,
                        "windows": d.windows, "failure": r.failure})
            if score is not None:
                self.bus.publish("identity", track=track, identity=d.identity, score=score, threshold=threshold,
                                 margin=round(score - threshold, 4), nearest=d.candidate, recording=str(recording_path))
        return out

    def events(self) -> Iterator[dict[str, Any]]:
        """The events since the last call, oldest first (each one is yielded once)."""
        if self._own is None:
            raise GaitcamError("this session does not keep its events (keep_events=False); subscribe to its bus")
        while (event := self._own.get(timeout=0)) is not None:
            yield event

    def live(self, source: Source, *, camera: str | None = None, calibration: Calibration | None = None,
             recorder: FrameRecorder | None = None, stride: int | None = None, max_stride: int | None = None,
             queue_size: int = 64) -> LiveRun:
        """The live pipeline on `source`, matching against this gallery and publishing on `bus`
        as `camera` (default: the bus's); `run()` it here or `start()` it in a thread. Several
        live runs of one session are several cameras in one process: one encoder thread serves
        them all, their windows batched together, and a person who walks from one camera's view
        into another's keeps one site id (`identity.handoff`: `link` events, camera "site").
        `max_stride`: how wide the stride may grow under load (None: fixed, `Pipeline`)."""
        from gaitcam.stream.encode import EncodeWorker

        with self._lock:
            if self._worker is None:
                self._worker = EncodeWorker(self.models.encoder)
                self._worker.start()
            run = LiveRun(self, source, camera=camera, calibration=calibration, recorder=recorder, stride=stride,
                          max_stride=max_stride, queue_size=queue_size, worker=self._worker)
            self._runs.append(run)
            if len(self._runs) == 2 and self._sightings is None:
                from gaitcam.identity.handoff import Linker

                self._linker = Linker(self.models.params, publish=functools.partial(self.bus.publish, camera="site"))
        return run

    def _handoff(self, camera: str, track: int, start: float, end: float, evidence: Evidence | None,
                 identity: str | None) -> None:
        """A track of one of this session's cameras ended (wall-clock `start`, `end`): offer it to
        the linker, which decides, once its wait is over, whether it is the person of a track that
        ended on another camera shortly before (`link` events, camera "site"); with site links,
        store it for the site's linker instead. A track with too little walking to compare gets
        no link."""
        if evidence is None or (self._linker is None and self._sightings is None):
            return
        from gaitcam.identity.sightings import Sighting, report

        sighting = Sighting(camera, track, start, end, self.models.params.template_version, identity,
                            evidence.descriptor())
        if self._sightings is not None:
            self._sightings.put(sighting)
            return
        with self._link_lock:
            report(self._linker, sighting)

    def _link_tick(self, now: float) -> None:
        """Decide the tracks whose wait is over (called by the live runs as frames pass)."""
        if self._linker is None or now < self._link_due:
            return
        with self._link_lock:
            self._link_due = now + 0.5
            self._linker.decide(now)

    def flush_links(self) -> None:
        """Decide every track still waiting for its cross-camera link (with site links: store
        every sighting still queued): at the end of the runs, before the bus closes."""
        if self._sightings is not None:
            self._sightings.flush()
        if self._linker is not None:
            with self._link_lock:
                self._linker.flush()

    def close(self) -> None:
        for run in self._runs:
            run.stop()
        self._closing.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        for run in self._runs:
            run.join(timeout=30)
        if self._worker is not None:
            self._worker.close()
        self.flush_links()
        if self._sightings is not None:
            self._sightings.close()
        self.bus.close()
        self.gallery.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def summary(stats: Stats) -> dict[str, int | float]:
    """A live run's counts, as the `summary` event carries them, and its stride: at the end, the
    mean over its frames and, when it adapts to load, the last lag measured and how often it fell
    behind at the widest (a fixed stride measures neither, so they are left out, not 0)."""
    out = {"frames": stats.frames, "frames_with_pose": stats.frames_with_pose, "windows": stats.windows,
           "tracks": stats.tracks, "dropped": stats.dropped, "skipped": stats.skipped, "errors": stats.errors,
           "stride": stats.stride, "stride_mean": round(stats.stride_mean, 2)}
    if stats.lag is not None:
        out.update(lag_ms=round(1e3 * stats.lag, 1), behind=stats.behind)
    return out


class LiveRun:
    """A source through the live pipeline against a session's gallery. Publishes on the session's
    bus: `sensor_status` (started; lost and restarted when a live source vanishes and comes back;
    ended or stopped), `track_started`, `identity` each time
    a track's verdict changes, `track_ended`, and the `summary` last."""

    def __init__(self, session: Session, source: Source, *, camera: str | None = None,
                 calibration: Calibration | None = None, recorder: FrameRecorder | None = None,
                 stride: int | None = None, max_stride: int | None = None, queue_size: int = 64,
                 worker: EncodeWorker | None = None) -> None:
        from gaitcam.identity.matcher import Matcher
        from gaitcam.skeleton.windows import LIVE_STRIDE
        from gaitcam.stream.history import TrackHistory
        from gaitcam.stream.pipeline import Pipeline

        self.session, self.source = session, source
        self.camera = camera or session.bus.stream.camera
        models = session.models
        # The last 30 s of every track, for enrolling someone who is in view (or just left it).
        self.history = TrackHistory(source.name, float(source.fps), downstream=recorder)
        self.pipeline = Pipeline(source, models.encoder, Matcher(session.index, models.params), calibration=calibration,
                                 stride=stride or LIVE_STRIDE, max_stride=max_stride, queue_size=queue_size,
                                 recorder=self.history, on_frame=self._frame, on_decision=self._decision,
                                 on_track=self._track, on_source=self._source, worker=worker)
        self.decisions = 0
        self._starts: dict[int, float] = {}  # track -> wall-clock start, for the cross-camera linker
        self._names: dict[int, str | None] = {}  # track -> its latest verdict
        self.latest: Snapshot | None = None  # the last frame's tracks and verdicts
        self.stats: Stats | None = None
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def _frame(self, snapshot: Snapshot) -> None:
        self.latest = snapshot
        self.session._link_tick(time.time())

    def _decision(self, track: int, at: float, decision) -> None:
        self.decisions += 1
        self._names[track] = decision.identity
        threshold = self.session.models.params.min_score
        score = round(float(decision.score), 4)
        self.session.bus.publish("identity", camera=self.camera, track=track, identity=decision.identity, score=score,
                                 threshold=threshold, margin=round(score - threshold, 4), nearest=decision.candidate)

    def _source(self, status: str, detail: str) -> None:
        self.session.bus.publish("sensor_status", camera=self.camera, status=status, detail=detail)

    def _track(self, kind: str, track: int, at: float) -> None:
        self.session.bus.publish(f"track_{kind}", camera=self.camera, track=track)
        now = time.time()  # the clock every camera of the site shares (source times need not)
        if kind == "started":
            self._starts[track] = now
            return
        matcher = self.pipeline.matcher
        evidence = matcher.tracks.get(track) if matcher.ready(track) else None
        self.session._handoff(self.camera, track, self._starts.pop(track, now), now, evidence,
                              self._names.pop(track, None))

    def tracks(self) -> list[dict[str, Any]]:
        """The tracks in view now, with their current verdicts."""
        snap = self.latest
        if snap is None:
            return []
        out = []
        for track in sorted(snap.tracks):
            d = snap.decisions.get(track)
            pending = d is None or d.pending
            out.append({"track": track, "identity": None if d is None else d.identity,
                        "score": None if pending else round(float(d.score), 4),
                        "nearest": None if d is None else d.candidate})
        return out

    def enroll_track(self, name: str, track: int, folder: str | Path, replace: bool = False) -> EnrollResult:
        """Enrol `name` from the last 30 s of live `track` (in view now, or recently): its frames
        are written to a recording in `folder` (the gallery refers to it) and enrolled with the
        same checks as any file; a refused enrolment keeps no recording."""
        from gaitcam.recording.native import new_recording_path, write_native
        from gaitcam.recording.sealed import writing_key

        rec = self.history.recording(track)
        if rec is None:
            raise GaitcamError(f"track {track} is not in view and was not seen in the last 30 s")
        path = new_recording_path(folder, f"live-{self.source.name}-track{track}")
        write_native(rec, path, writing_key())  # encrypted when the config's encrypt_recordings says so
        path.chmod(0o600)
        try:
            return self.session.enroll(name, path, track, replace)
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def run(self, duration: float | None = None) -> Stats:
        """Run until the source ends, `duration` seconds pass, or `stop`; the summary comes last."""
        bus = self.session.bus
        bus.publish("sensor_status", camera=self.camera, status="started", detail=self.source.name)
        try:
            self.stats = stats = self.pipeline.run(duration=duration)
        finally:
            ended = self.pipeline.source_ended and not self.pipeline.stopping
            bus.publish("sensor_status", camera=self.camera, status="ended" if ended else "stopped",
                        detail=self.source.name)
        bus.publish("summary", camera=self.camera, summary=summary(stats) | {"decisions": self.decisions})
        return stats

    def start(self, duration: float | None = None) -> None:
        """`run` in a background thread (`join` waits for it; an error that ended it is `error`)."""
        def target() -> None:
            try:
                self.run(duration)
            except BaseException as e:  # kept for whoever joins; the thread must not die silently
                log.error("live run ended: %s", e)
                self.error = e
        self._thread = threading.Thread(target=target, name="gaitcam-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.pipeline.stop()

    def join(self, timeout: float | None = None) -> Stats | None:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.stats


def open_session(gallery: str | Path | None = None, weights: str | Path | None = None, device: str = "auto", *,
                 fpir: float | None = None, threshold: float | None = None, threads: int | None = None,
                 camera: str = "library", site_links: bool = False, precision: str = "float32") -> Session:
    """A session on the gallery `gallery`, a SQLite file or a postgresql:// URL shared by a
    site's cameras (default: the user's file, as the app uses), with the
    encoder `weights` (default: the shipped SGE-LA) on `device`. `fpir`: the share of strangers
    allowed a name (default 0.01); the gallery calibrates its threshold for it. `site_links`: its
    ended tracks go to the site's linker process (`Session`). `precision`: the encoder's
    arithmetic (`load_encoder`)."""
    import gaitcam
    from gaitcam.config import default_gallery

    global _warned_blas
    if gaitcam.BLAS_ON_EVERY_CORE and (os.cpu_count() or 1) > 1 and not _warned_blas:
        _warned_blas = True
        log.warning("numpy was imported before gaitcam, so its OpenBLAS keeps a thread per core spinning "
                    "after the matcher's small products (on a GPU machine at 30 people: 1,400 % CPU and "
                    "a slower p99); set OPENBLAS_NUM_THREADS=1 in the environment, or import gaitcam first")
    models = load_models(weights, device, threads, threshold=threshold, fpir=fpir, precision=precision)
    path = Path(gallery) if gallery is not None and "://" not in str(gallery) else gallery
    return Session(models, open_gallery(path or default_gallery(), models), camera, site_links=site_links)
