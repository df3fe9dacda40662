"""The soak: the live pipeline on the demo as fast as it goes, for a long time, with people
enrolled and removed while it runs (`python main.py soak`, BENCHMARKS.md).

A service runs for weeks, so what must not happen is slow accumulation: memory, file
descriptors or threads that each enrolment, removal or passing track leaves behind. The soak
drives everything the service does, through the same `Session` API: the demo scene (people
coming and going, new tracks all the time) through stream, encoder and matcher; every
`churn_every` seconds a live track enrolled from its last 30 s (a recording written, the
gallery written, the index recalibrated and swapped into the running matcher) and the
previous such enrolment removed with its recording (the gallery scrubbed); the events
drained as a subscriber would. After a warm-up (caches, thread pools and allocator arenas
filling up once) the process's resident memory, open fds and threads are compared with the
end of the run.

The demo source is unpaced ("speed 0") and ends only after far more scene time than any run
reaches, so it behaves like a file: the capture thread waits for the loop instead of dropping
frames, and the run is as fast as the pipeline itself. Windows the encoder cannot take in time
are still dropped and counted (a live source at full speed would drop its frames instead).
"""
from __future__ import annotations

import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from gaitcam.config import DEMO_DIR
from gaitcam.errors import GaitcamError
from gaitcam.events import Subscription
from gaitcam.identity.gallery import Gallery
from gaitcam.recording.native import SUFFIX as NATIVE_SUFFIX
from gaitcam.sensors.demo import DemoSource
from gaitcam.session import LiveRun, Models, Session

RSS_LIMIT = 0.05  # resident memory may grow this much (share) from the end of the warm-up
SCENE_SECONDS = 1e9  # the demo's length in scene time: a "file" no run reaches the end of
_TICK = 0.25  # seconds between looks at the run (events drained, samples, churn)
_CANDIDATES = 16  # newest tracks of the live history the churn chooses from
_PASS_SECONDS = 3.0  # a track this long is a whole pass across the view: enough walking to enrol


@dataclass(frozen=True)
class Sample:
    """The process and the run at one moment."""

    seconds: float  # since the run started
    rss_mb: float
    fds: int
    threads: int  # the process's threads, native ones (onnxruntime, torch) included
    py_threads: int  # Python threads (threading.active_count)
    frames: int
    windows: int
    decisions: int
    dropped: int
    errors: int


def _status(key: str) -> int:
    """One number from /proc/self/status (`VmRSS` in kB, `Threads`), Linux's view of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise GaitcamError(f"/proc/self/status has no {key}: the soak needs Linux")


def sample(run: LiveRun, seconds: float) -> Sample:
    """What the process holds and the run has done now; taken from the thread that churns, so
    never in the middle of an enrolment (whose open files would count)."""
    stats = run.latest.stats if run.latest is not None else None  # a copy, made by the loop's thread
    return Sample(
        seconds=round(seconds, 1), rss_mb=round(_status("VmRSS") / 1024, 1), fds=len(os.listdir("/proc/self/fd")),
        threads=_status("Threads"), py_threads=threading.active_count(),
        frames=stats.frames if stats else 0, windows=stats.windows if stats else 0, decisions=run.decisions,
        dropped=stats.dropped if stats else 0, errors=stats.errors if stats else 0,
    )


class Churn:
    """Remove the previous churn enrolment, then enrol a live track: the gallery changes under
    the running matcher, and its size stays the same."""

    def __init__(self, session: Session, run: LiveRun, folder: Path) -> None:
        self.session, self.run, self.folder = session, run, folder
        self.enrolled = self.removed = self.refused = 0
        self.last_refusal: str | None = None
        self._last: str | None = None

    def _ready_track(self) -> int | None:
        """Of the newest tracks the live history keeps, the one with the most frames, if that
        is a whole pass. Chosen from the history, not the matcher: at full speed the encoder
        lags the scene, so a track the matcher has evidence on may already have left the history."""
        history = self.run.history
        frames = {t: len(rec.tracks[t]) for t in history.tracks()[-_CANDIDATES:]
                  if (rec := history.recording(t)) is not None}
        best = max(frames, key=frames.__getitem__, default=None)
        return best if best is not None and frames[best] >= _PASS_SECONDS * history.fps else None

    def step(self) -> bool:
        """One remove/enrol step; False when no track is ready yet (try again soon)."""
        track = self._ready_track()
        if track is None:
            return False
        if self._last is not None:
            self.session.remove(self._last, delete_recordings=True)
            self.removed += 1
            self._last = None
        name = f"soak-{self.enrolled + self.refused + 1}"
        try:
            self.run.enroll_track(name, track, self.folder)
        except GaitcamError as e:  # too little usable walking, as a live enrolment can be; nothing kept
            self.refused += 1
            self.last_refusal = str(e)
            return True
        self.enrolled += 1
        self._last = name
        return True


@dataclass
class SoakResult:
    """A soak's counts and its verdict: the end of the run against the end of the warm-up."""

    seconds: float
    warmup: float
    start: Sample  # at the end of the warm-up
    end: Sample
    samples: list[Sample]  # the progress samples
    enrolled: int
    removed: int
    refused: int  # live enrolments refused (too little usable walking)
    last_refusal: str | None
    events: int
    run_error: str | None  # what ended the live run early, if anything

    @property
    def rss_growth(self) -> float:
        return self.end.rss_mb / self.start.rss_mb - 1

    @property
    def errors(self) -> int:
        return self.end.errors + (self.run_error is not None)

    @property
    def passed(self) -> bool:
        """Nothing accumulates, nothing failed, and the gallery really changed under the run.
        Fewer fds at the end than at the warm-up's end is not accumulation: another thread held
        one for a moment when the warm-up ended (seen once, on a loaded machine: 18 -> 17)."""
        return (self.rss_growth < RSS_LIMIT and self.end.fds <= self.start.fds
                and (self.end.threads, self.end.py_threads) == (self.start.threads, self.start.py_threads)
                and self.errors == 0 and self.removed >= 1)

    def verdict(self) -> list[str]:
        s, e = self.start, self.end
        return [
            f"soak: {self.seconds:.0f} s, warm-up {self.warmup:.0f} s; {e.frames} frames, {e.windows} windows, "
            f"{e.decisions} decisions, {self.events} events; churn: {self.enrolled} enrolled, {self.removed} removed, "
            f"{self.refused} refused" + (f" (last: {self.last_refusal})" if self.last_refusal else ""),
            f"RSS growth {100 * self.rss_growth:.2f} % (limit {100 * RSS_LIMIT:.0f} %): "
            f"{s.rss_mb:.1f} -> {e.rss_mb:.1f} MiB",
            f"fds {s.fds} -> {e.fds}",
            f"threads {s.threads} -> {e.threads} (Python {s.py_threads} -> {e.py_threads})",
            f"dropped {e.dropped} ({s.dropped} by the end of the warm-up)",
            f"errors {self.errors}" + (f" (the live run ended: {self.run_error})" if self.run_error else ""),
            "PASSED" if self.passed else "FAILED",
        ]

    def to_json(self) -> dict:
        s, e = self.start, self.end
        return {
            "seconds": round(self.seconds, 1), "warmup_s": round(self.warmup, 1),
            "rss_mb_start": s.rss_mb, "rss_mb_end": e.rss_mb, "rss_growth": round(self.rss_growth, 4),
            "fds_start": s.fds, "fds_end": e.fds, "threads_start": s.threads, "threads_end": e.threads,
            "py_threads_start": s.py_threads, "py_threads_end": e.py_threads,
            "frames": e.frames, "windows": e.windows, "decisions": e.decisions, "events": self.events,
            "dropped": e.dropped, "errors": self.errors, "enrolled": self.enrolled, "removed": self.removed,
            "refused": self.refused, "last_refusal": self.last_refusal, "passed": self.passed,
            "samples": [asdict(x) for x in self.samples],
        }


def _drain(events: Subscription) -> int:
    """Take every queued event, as a service's subscriber does; how many."""
    n = 0
    while events.get(timeout=0) is not None:
        n += 1
    return n


def _demo_session(models: Models, folder: Path) -> Session:
    """A session on a new gallery in `folder` with the demo people enrolled, as the demo has
    them: the live scene's people are named, so decisions and identity events flow as there."""
    session = Session(models, Gallery(folder / "soak.db"), "demo", keep_events=False)
    try:
        for path in sorted(DEMO_DIR.glob(f"*{NATIVE_SUFFIX}")):
            session.enroll(path.stem, path)
    except BaseException:
        session.close()
        raise
    return session


def check_budget(seconds: float, warmup: float, churn_every: float) -> None:
    """Refuse, before anything loads, a run that could not compare anything."""
    if not 0 <= warmup < seconds:
        raise GaitcamError(f"soak: the warm-up ({warmup:g} s) must end before the run does ({seconds:g} s); "
                           "lengthen --minutes or shorten --warmup")
    if churn_every <= 0:
        raise GaitcamError(f"soak: --churn-every must be positive, got {churn_every:g}")


def run_soak(models: Models, seconds: float, *, warmup: float, churn_every: float, stride: int | None = None,
             say: Callable[[str], None] = lambda _: None) -> SoakResult:
    """Soak for `seconds` (wall clock); the comparison starts `warmup` seconds in. Progress
    goes to `say` about ten times over the run, at least once a minute."""
    check_budget(seconds, warmup, churn_every)
    models.encoder.settle()  # a fast path's one-off thread would otherwise end after the warm-up
    progress_every = min(60.0, seconds / 10)
    with tempfile.TemporaryDirectory(prefix="gaitcam-soak-") as tmp, _demo_session(models, Path(tmp)) as session:
        events = session.bus.subscribe(maxsize=100_000)
        run = session.live(DemoSource(realtime=False, duration=SCENE_SECONDS), stride=stride)
        churn = Churn(session, run, Path(tmp) / "recordings")
        count, start, samples = 0, None, []
        began = time.monotonic()
        next_churn, next_progress = churn_every, progress_every
        run.start()
        try:
            while run.error is None and (now := time.monotonic() - began) < seconds:
                count += _drain(events)
                if now >= next_churn and churn.step():
                    next_churn = now + churn_every
                if start is None and now >= warmup:
                    start = sample(run, time.monotonic() - began)
                    say(f"soak {now:.0f} s: warm-up over; RSS {start.rss_mb:.1f} MiB, fds {start.fds}, "
                        f"threads {start.threads}")
                if now >= next_progress:
                    samples.append(s := sample(run, time.monotonic() - began))
                    next_progress = now + progress_every
                    say(f"soak {now:.0f}/{seconds:.0f} s: RSS {s.rss_mb:.1f} MiB, fds {s.fds}, threads {s.threads}, "
                        f"{s.frames} frames, {s.windows} windows, {s.decisions} decisions, dropped {s.dropped}, "
                        f"errors {s.errors}; {churn.enrolled} enrolled, {churn.removed} removed")
                time.sleep(_TICK)
            end = sample(run, time.monotonic() - began)  # while the run's threads are still there
        finally:
            run.stop()
            final = run.join(timeout=60)
        count += _drain(events)
        if final is not None:  # errors as the run ended, shutdown included (not its drops: stopping drops a frame)
            end = replace(end, errors=final.errors)
        return SoakResult(end.seconds, warmup, start or end, end, samples, churn.enrolled, churn.removed,
                          churn.refused, churn.last_refusal, count, None if run.error is None else str(run.error))
