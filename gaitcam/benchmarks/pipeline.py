"""The live pipeline under load: a crowd replayed like a sensor, through stream, encoder and
matcher (no view), with the latency from each frame's capture to the decision that used it.

Three small wrappers around the pipeline's public interfaces measure it, so the pipeline
itself runs unchanged:

- `TimedReplay`, the source: a looping replay that behaves like a live sensor (frames the app
  cannot take in time are dropped and counted, as for a camera) and notes when each frame was
  captured (when `read` handed it over);
- `LatencyProbe`, the matcher: after each `decide`, every frame whose window it has just
  judged, for every track, gets `now - captured`. A track's newest window (the `time` given to
  `observe`) ends at the newest frame it used; the frames since its previous decision are
  the ones first used now. At a stride s > 1 a frame also waits for the s - 1 frames that
  complete its window, so the window latency (its newest frame to the decision) is kept too:
  that is the processing delay, and what says whether a stride keeps up. With n windows over
  those frames, every (frames / n)-th from the newest is a window's newest frame: exact at a
  fixed stride, and at one that adapts to load as long as it held over those frames (a window
  moved for people to take turns, `stream.pipeline`, covers up to s - 1 frames more or fewer,
  once per run and stride). It also times how long the newest AGEs waited between the encoder finishing them and the decision;
- `CountingEncoder`: encoder calls, batch sizes, encode time, when the last call finished; with
  `slowdown` k it computes every call k times, which emulates on this machine an encoder k times
  slower (a smaller machine) without a scheduler's time slices in the way, as sharing a core with
  busy loops would add.
"""
from __future__ import annotations

import bisect
import resource
import threading
import time as clock
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from gaitcam.benchmarks.scene import crowd_recording
from gaitcam.benchmarks.timing import Histogram, ms
from gaitcam.config import DEMO_DIR
from gaitcam.identity.enrollment import track_evidence
from gaitcam.errors import GaitcamError
from gaitcam.identity.matcher import Decision, GalleryIndex, Matcher
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.formats import read_recording
from gaitcam.recording.recording import Recording
from gaitcam.sensors.base import Frame, Source
from gaitcam.sensors.replay import ReplaySource
from gaitcam.skeleton.windows import SEGMENT, WindowRule, track_windows
from gaitcam.stream.pipeline import Pipeline, Snapshot

SCENE_SECONDS = 60.0  # the crowd recording's length; the replay loops it (new people each time)
MAX_LATENCY = 0.1  # seconds: window to decision, p99, for a stride to count as keeping up


def rss_mb() -> float:
    """Resident memory of this process now (Linux), else its peak so far, in MiB."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class CaptureLog:
    """Capture wall times by frame time (increasing), trimmed to the last `keep` source seconds."""

    def __init__(self, keep: float = 60.0) -> None:
        self.keep = keep
        self._times: list[float] = []
        self._walls: list[float] = []
        self._lock = threading.Lock()

    def add(self, t: float, wall: float) -> None:
        with self._lock:
            self._times.append(t)
            self._walls.append(wall)
            if len(self._times) > 4096 and self._times[0] < t - self.keep:
                cut = bisect.bisect_left(self._times, t - self.keep)
                del self._times[:cut], self._walls[:cut]

    def walls(self, after: float, upto: float) -> list[float]:
        """Capture times of the frames with after < time <= upto (both within 1e-6 s)."""
        with self._lock:
            lo = bisect.bisect_right(self._times, after + 1e-6)
            hi = bisect.bisect_right(self._times, upto + 1e-6)
            return self._walls[lo:hi]


class TimedReplay(Source):
    """A recording looped like a live sensor, noting each frame's capture time."""

    name = "replay"
    is_file = False  # the capture thread drops frames rather than wait, as for a camera

    def __init__(self, recording: Recording, speed: float = 1.0) -> None:
        self._replay = ReplaySource(recording, speed=speed, loop=True)
        self.layout, self.fps = self._replay.layout, self._replay.fps
        self.captured = CaptureLog(keep=60.0 * max(speed, 1.0))

    def open(self) -> None:
        self._replay.open()

    def read(self) -> Frame | None:
        frame = self._replay.read()
        if frame is not None:
            self.captured.add(frame.time, clock.monotonic())
        return frame

    def close(self) -> None:
        self._replay.close()


class LatencyProbe:
    """A `TrackMatcher` that passes everything to `matcher` and times capture -> decision."""

    def __init__(self, matcher: Matcher, captured: CaptureLog, stride: int, fps: float,
                 encoded: Callable[[], float | None] = lambda: None,
                 now: Callable[[], float] = clock.monotonic) -> None:
        self.matcher, self.captured, self.now = matcher, captured, now
        self.encoded = encoded  # when the encoder last finished a batch
        self.stride = stride
        self.window_step = stride / fps  # source seconds between a track's windows
        self.latency = Histogram()  # every frame
        self.window_latency = Histogram()  # the newest frame of every window
        self.result_wait = Histogram()  # encoder finished -> decision, per decision
        self._decided: dict[int, float] = {}  # track -> newest window time decided on
        self._observed: dict[int, tuple[float, float, int]] = {}  # track -> frames (after, upto], windows: not decided

    def observe(self, track: int, time: float, ages: np.ndarray, joints: np.ndarray,
                tracked: np.ndarray | None = None) -> None:
        self.matcher.observe(track, time, ages, joints, tracked)
        after = self._decided.get(track, time - len(ages) * self.window_step)
        after, _, windows = self._observed.get(track, (after, time, 0))
        self._observed[track] = (after, time, windows + len(ages))

    def observe_segments(self, segments: dict[int, np.ndarray]) -> None:
        self.matcher.observe_segments(segments)

    def decide(self, time: float, tracks: list[int]) -> dict[int, Decision]:
        decisions = self.matcher.decide(time, tracks)
        now = self.now()
        finished = self.encoded()
        if finished is not None and any(track in self._observed for track in tracks):
            self.result_wait.add(now - finished)
        for track in tracks:
            if track in self._observed:
                after, upto, windows = self._observed.pop(track)
                latencies = [now - wall for wall in self.captured.walls(after, upto)]
                self.latency.add(latencies)
                step = max(1, round(len(latencies) / windows))
                self.window_latency.add(latencies[::-1][::step][:windows])
                self._decided[track] = upto
        return decisions

    def forget(self, track: int) -> None:
        self.matcher.forget(track)
        self._decided.pop(track, None)
        self._observed.pop(track, None)


class CountingEncoder:
    """The encoder, counting its calls and windows and timing each call; every call computed
    `slowdown` times (module docstring)."""

    def __init__(self, encoder: GaitEncoder, slowdown: int = 1) -> None:
        if slowdown < 1:
            raise ValueError(f"slowdown must be at least 1, got {slowdown}")
        self.encoder = encoder
        self.slowdown = slowdown
        self.f = encoder.f
        self.calls = 0
        self.windows = 0
        self.seconds = Histogram()
        self.finished: float | None = None  # monotonic time the last call returned

    def encode(self, windows: np.ndarray, level: str = "frame", mirror: bool = False) -> np.ndarray:
        start = clock.perf_counter()
        for _ in range(self.slowdown):
            out = self.encoder.encode(windows, level=level, mirror=mirror)
        self.seconds.add(clock.perf_counter() - start)
        self.finished = clock.monotonic()
        self.calls += 1
        self.windows += len(windows)
        return out


def demo_matcher(encoder: GaitEncoder, weights: str | Path) -> Matcher:
    """A matcher over the demo gallery (the shipped walks in recordings/demo/), with the matcher
    parameters fitted for `weights`, as the live demo uses."""
    from gaitcam.session import matcher_params_for

    params = matcher_params_for(encoder, weights)
    names, descriptors = [], []
    for path in sorted(DEMO_DIR.glob("*.gaitrec")):
        rec = read_recording(path)
        for tid, seq in rec.tracks.items():
            names.append(path.stem)
            descriptors.append(track_evidence(seq, tid, encoder).evidence().descriptor(params.blocks))
    if not names:
        raise GaitcamError(f"{DEMO_DIR}: the demo gallery recordings are missing")
    return Matcher(GalleryIndex(names, np.stack(descriptors), params), params)


DECIDE_PEOPLE = 30
DECIDE_WINDOWS = (50, 500, 2048)  # evidence per track: 1.7 s, 17 s and 68 s in view at stride 1


def decide_cost(encoder: GaitEncoder, matcher: Matcher, people: int = DECIDE_PEOPLE,
                windows: tuple[int, ...] = DECIDE_WINDOWS, repeats: int = 20) -> dict[str, float]:
    """Milliseconds one `matcher.decide` takes for `people` tracks in view, each with this many
    windows of evidence (real demo windows, encoded once, reused): the matcher runs at every
    frame, so what it costs as people stay in view is frame-to-decision time on every machine."""
    seq = max(crowd_recording(2, seconds=20.0, seed=1).tracks.values(), key=len)
    tw = track_windows(seq, WindowRule(f=encoder.f, stride=1))
    ages = encoder.encode(tw.joints[:64], mirror=True)
    at = np.arange(64)
    out = {}
    for n in windows:
        tracks = list(range(-people, 0))  # ids no live track has
        for t in tracks:
            matcher.forget(t)
            for k in range(0, n, 64):  # 64 at a time, quicker than one per frame: the same evidence
                idx = at[: min(64, n - k)]
                matcher.observe(t, 0.0, ages[idx], tw.joints[idx], tw.tracked[idx])
            matcher.observe_segments({t: np.stack([seq.joints[:SEGMENT], seq.joints[SEGMENT : 2 * SEGMENT]])})
        matcher.decide(0.0, tracks)
        start = clock.perf_counter()
        for _ in range(repeats):
            matcher.decide(0.0, tracks)
        out[str(n)] = ms((clock.perf_counter() - start) / repeats, 2)
        for t in tracks:
            matcher.forget(t)
    return out


@dataclass
class PipelineRun:
    """What one or more runs of the same setting measured (`merge` adds runs up)."""

    people: int
    fps: float
    stride: int
    speed: float
    encoder: str  # "fast" or "reference"
    threads: int
    max_stride: int | None = None  # set: the stride adapted to load, from `stride` up to this
    slowdown: int = 1  # the encoder computed every batch this many times (`CountingEncoder`)
    stride_mean: float = 0.0  # over the frames processed
    wall: float = 0.0
    cpu: float = 0.0
    frames: int = 0
    windows: int = 0
    tracks: int = 0
    dropped: int = 0
    skipped: int = 0
    errors: int = 0
    calls: int = 0
    latency: Histogram = field(default_factory=Histogram)
    window_latency: Histogram = field(default_factory=Histogram)
    result_wait: Histogram = field(default_factory=Histogram)
    encode: Histogram = field(default_factory=Histogram)
    rss_start: float = 0.0
    rss_end: float = 0.0
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    stride_changes: list[tuple[float, int]] = field(default_factory=list)  # (seconds in, stride from then)

    @property
    def keeps_up(self) -> bool:
        """No frame or window dropped, and window-to-decision p99 under `MAX_LATENCY` (at
        stride 1 the same as frame-to-decision)."""
        p99 = self.window_latency.percentile(99)
        return self.dropped == 0 and p99 is not None and p99 < MAX_LATENCY

    @classmethod
    def merge(cls, runs: list[PipelineRun]) -> PipelineRun:
        first = runs[0]
        out = replace(first, latency=Histogram(), window_latency=Histogram(), result_wait=Histogram(),
                      encode=Histogram(), rss_samples=list(first.rss_samples), rss_end=runs[-1].rss_end)
        for name in ("wall", "cpu", "frames", "windows", "tracks", "dropped", "skipped", "errors", "calls"):
            setattr(out, name, sum(getattr(r, name) for r in runs))
        out.stride_mean = sum(r.stride_mean * r.frames for r in runs) / max(out.frames, 1)
        for r in runs:
            out.latency.merge(r.latency)
            out.window_latency.merge(r.window_latency)
            out.result_wait.merge(r.result_wait)
            out.encode.merge(r.encode)
        return out

    def summary(self) -> dict:
        out = {
            "people": self.people, "fps": self.fps, "stride": self.stride, "speed": self.speed,
            "encoder": self.encoder, "threads": self.threads, "duration_s": round(self.wall, 2),
            "frames": self.frames, "windows": self.windows, "windows_per_s": round(self.windows / self.wall, 1),
            "tracks": self.tracks, "dropped": self.dropped, "skipped": self.skipped, "errors": self.errors,
            "latency_ms_p50": ms(self.latency.percentile(50), 1), "latency_ms_p99": ms(self.latency.percentile(99), 1),
            "latency_ms_max": ms(self.latency.max, 1), "latency_samples": self.latency.count,
            "window_latency_ms_p50": ms(self.window_latency.percentile(50), 1),
            "window_latency_ms_p99": ms(self.window_latency.percentile(99), 1),
            "encoder_calls": self.calls, "mean_batch": round(self.windows / max(self.calls, 1), 2),
            "encode_ms_p50": ms(self.encode.percentile(50), 1), "encode_ms_p99": ms(self.encode.percentile(99), 1),
            "result_wait_ms_p50": ms(self.result_wait.percentile(50), 1),
            "result_wait_ms_p99": ms(self.result_wait.percentile(99), 1),
            "cpu_percent": round(100 * self.cpu / self.wall, 1),
            "rss_mb_start": round(self.rss_start, 1), "rss_mb_end": round(self.rss_end, 1),
            "keeps_up": self.keeps_up, "max_stride": self.max_stride, "stride_mean": round(self.stride_mean, 2),
            "slowdown": self.slowdown,
        }
        if self.rss_samples:
            out["rss_mb_samples"] = self.rss_samples
        if self.max_stride is not None:  # where an adapting stride went, and when: what a mean hides
            out["stride_changes"] = self.stride_changes
        return out


def run_pipeline(
    encoder: GaitEncoder,
    matcher: Matcher,
    *,
    people: int = 6,
    fps: float = 30.0,
    stride: int = 1,
    seconds: float = 30.0,
    speed: float = 1.0,
    rss_every: float | None = None,
    max_stride: int | None = None,
    slowdown: int = 1,
) -> PipelineRun:
    """Replay `people` walkers at `fps` x `speed` through the pipeline for `seconds` (wall);
    every `rss_every` seconds, sample the resident memory (for soaks). With `max_stride` the
    stride adapts to load from `stride` up to it, as live (`stream.stride`). `slowdown`: the encoder
    computes every batch this many times (`CountingEncoder`)."""
    source = TimedReplay(crowd_recording(people, seconds=SCENE_SECONDS, fps=fps), speed)
    counting = CountingEncoder(encoder, slowdown)
    probe = LatencyProbe(matcher, source.captured, stride, fps, encoded=lambda: counting.finished)
    run = PipelineRun(people, fps, stride, speed, "reference" if encoder.fast is None else "fast",
                      torch.get_num_threads(), max_stride, slowdown, rss_start=rss_mb(), latency=probe.latency,
                      window_latency=probe.window_latency, result_wait=probe.result_wait, encode=counting.seconds)
    start_wall, start_cpu = clock.monotonic(), clock.process_time()

    def on_frame(snapshot: Snapshot) -> None:
        elapsed = clock.monotonic() - start_wall
        if rss_every and (not run.rss_samples or elapsed - run.rss_samples[-1][0] >= rss_every):
            run.rss_samples.append((round(elapsed, 1), round(rss_mb(), 1)))
        if not run.stride_changes or snapshot.stats.stride != run.stride_changes[-1][1]:
            run.stride_changes.append((round(elapsed, 2), snapshot.stats.stride))

    stats = Pipeline(source, counting, probe, stride=stride, max_stride=max_stride, on_frame=on_frame).run(duration=seconds)
    run.wall, run.cpu = clock.monotonic() - start_wall, clock.process_time() - start_cpu
    run.frames, run.windows, run.tracks = stats.frames, stats.windows, stats.tracks
    run.dropped, run.skipped, run.errors = stats.dropped, stats.skipped, stats.errors
    run.calls, run.rss_end, run.stride_mean = counting.calls, rss_mb(), stats.stride_mean
    return run
