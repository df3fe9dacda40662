"""The live pipeline: a source's frames in, identity decisions per tracked person out.

    Capture thread ─► retarget ─► calibrate ─► track ─► window rule ────────► EncodeWorker
    (owns source)     (canonical   (floor       (app     (derive, bridge,        (thread: one
                       20 joints)   frame)       ids)     30 fps, f frames       batch, all tracks)
                                                          every stride)                │ AGEs
                                                               │ gait-cycle segments   ▼
                              on_frame / on_decision ◄── matcher.decide ◄── matcher.observe

Three threads: capture (paced by the source), this loop (everything cheap, vectorised per
frame), the encoder (batched). Queues between them are bounded and what they drop is counted,
so a slow screen or model never stalls the sensor. Bad input never stops the loop: a body with
the wrong joint count or a layout that cannot be retargeted is skipped and counted, a joint
the sensor lost is derived, bridged or ends the track's window run (`skeleton.windows`, the
same rule every offline path uses); a lost source is reopened by the capture thread.

Given a `max_stride`, a live source's stride adapts to load (`stream.stride`): the loop
measures each window's lag (its newest frame read -> its AGE back here) and the frames waiting,
and widens every track's stride while the encoder falls behind, narrowing it again when there
is room. A file source waits for the loop anyway and keeps its stride, so a replay cuts the
windows an offline run cuts.

At a stride of s, a live source's people take turns: when a track's run cuts its first window, or
the stride changes, the loop moves that track's next window into the least busy of the s frames
(`TrackWindower.move`) and leaves it there: earlier if it can while the encoder has room (an
earlier window costs a little encoder work once, a later one makes its frames wait longer), only
later when the stride control finds it saturated; then by the fewest frames. After a spell at
stride 1 (a window every frame for everyone) all are placed again.
People who walked in together otherwise all complete windows in one frame of every s, and the
encoder gets one batch s times the size, every s frames: each window waits for the whole batch
(measured in `BENCHMARKS.md`, "pipeline_auto"). The frames are counted on the tracks' 30 fps
grids (`TrackWindower.next_window_time`), which the jitter of a source's timestamps does not move:
a placed track stays in its frame.

The matcher is only ever called from this loop's thread, so it needs no locking.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time as clock
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gaitcam.sensors.base import Body, Frame, Source
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import SkeletonSequence
from gaitcam.skeleton.windows import DEFAULT_F, LIVE_STRIDE, TrackWindower, Window, WindowRule
from gaitcam.stream.calibration import Calibration, CalibrationError
from gaitcam.stream.capture import Capture
from gaitcam.stream.encode import EncodedWindow, EncodeStats, EncodeWorker, WindowEncoder
from gaitcam.stream.stride import ROOM, StrideControl
from gaitcam.stream.tracker import Tracker

log = logging.getLogger(__name__)

_HIP = CANONICAL.index("HipCenter")
_POLL = 0.05  # seconds the loop waits for a frame or encoded windows before checking stop again


class Decision(Protocol):
    """A matcher's current verdict on one track."""

    @property
    def identity(self) -> str | None: ...  # a gallery name, or None for unknown

    @property
    def score(self) -> float: ...


def _pending(decision: Decision | None) -> bool:
    """Not a verdict yet: too little evidence (the matcher gives no score)."""
    return decision is None or not np.isfinite(decision.score)


def _verdict(decision: Decision | None) -> tuple[bool, str | None]:
    """What a decision says, for telling when it changes: pending, or a name / unknown."""
    return (True, None) if _pending(decision) else (False, decision.identity)


class TrackMatcher(Protocol):
    """What the pipeline needs of the matcher (gallery search, per-track voting, open set)."""

    def observe(self, track: int, time: float, ages: np.ndarray, joints: np.ndarray,
                tracked: np.ndarray | None = None) -> None:
        """New window AGEs [n, D] of one track, with their windows' joints [n, f, 20, 3]
        (canonical metres) and which joints the sensor tracked [n, f, 20]."""

    def observe_segments(self, segments: dict[int, np.ndarray]) -> None:
        """New gait-cycle segments [m, L, 20, 3] by track (`skeleton.cycle`), all those one
        frame completed: one call, so their spectra are computed as one batch."""

    def decide(self, time: float, tracks: list[int]) -> dict[int, Decision]:
        """Decisions for the tracks now in view."""

    def forget(self, track: int) -> None:
        """The track ended; drop what is kept for it."""


class FrameRecorder(Protocol):
    def write(self, frame: Frame) -> None: ...


@dataclass
class Stats:
    frames: int = 0  # read from the source
    frames_with_pose: int = 0  # processed with at least one usable body
    windows: int = 0  # encoded
    tracks: int = 0  # people tracked (app track ids handed out)
    dropped: int = 0  # frames and windows dropped by full queues
    skipped: int = 0  # bodies unused: wrong joint count, unknown layout, joints missing too long
    gaps: int = 0  # window runs restarted: gaps in time and tracking glitches
    errors: int = 0  # source read/reopen failures and failed encodes
    source_restarts: int = 0
    stride: int = 0  # frames between a track's windows now (adapts to load with a max_stride)
    stride_mean: float = 0.0  # over the frames processed
    lag: float | None = None  # seconds, frame read -> AGE, p95 over the stride control's last
    # interval; None while the stride is fixed (nothing measures it then)
    behind: int | None = None  # times even the widest stride fell behind (warned once each); None: fixed


@dataclass
class Snapshot:
    """What a view draws for one frame. Joints are canonical, in the calibrated frame."""

    time: float
    tracks: dict[int, np.ndarray]  # track -> joints [20, 3], NaN where missing
    decisions: dict[int, Decision]
    stats: Stats
    image: np.ndarray | None = None


@dataclass
class _Track:
    """Per-track stream state: its window rule, and the rule's counts already in `Stats`."""

    windower: TrackWindower
    incomplete: int = 0
    restarts: int = 0


class Pipeline:
    """Run a source through the model and a matcher. The live default stride is `LIVE_STRIDE`
    (3 frames): overlapping windows, a new AGE per person every 0.1 s.

    `calibration` maps camera to floor coordinates; without one, a floor plane the source
    reports (`Frame.extras["floor"]`) is used from the first frame that has it, else camera
    coordinates. `on_frame(snapshot)` is called for every processed frame and must return at
    once (hand the snapshot to the view's thread); `on_decision(track, time, decision)` when a
    track's verdict changes (a first verdict once it has enough evidence, then every change of
    name or to unknown; pending decisions are not reported); `on_track("started" | "ended",
    track, time)` when a track gets its first frame, and when it has ended and its last windows
    have been decided (so its last verdict comes before its end); `on_source("lost" | "restarted",
    detail)` from the capture thread when a live source vanishes and comes back. `recorder.write` gets each frame
    with app track ids, in the source's own layout. `max_stride` above `stride` lets a live
    source's stride widen under load up to it (`stream.stride`); None or at most `stride`: fixed.
    `worker`: an encoder thread shared with other sources (see `EncodeWorker.client`).
    """

    def __init__(
        self,
        source: Source,
        encoder: WindowEncoder,
        matcher: TrackMatcher,
        *,
        calibration: Calibration | None = None,
        stride: int = LIVE_STRIDE,
        max_stride: int | None = None,
        queue_size: int = 64,
        recorder: FrameRecorder | None = None,
        on_frame: Callable[[Snapshot], None] | None = None,
        on_decision: Callable[[int, float, Decision], None] | None = None,
        on_track: Callable[[str, int, float], None] | None = None,
        on_source: Callable[[str, str], None] | None = None,
        worker: EncodeWorker | None = None,
    ) -> None:
        self.source, self.encoder, self.matcher = source, encoder, matcher
        self.calibration = calibration
        self.stride = stride
        self.recorder, self.on_frame, self.on_decision, self.on_track = recorder, on_frame, on_decision, on_track
        self.stats = Stats()
        self.tracker = Tracker()
        self._capture = Capture(source, queue_size, on_status=on_source)
        self._results: queue.SimpleQueue[list[EncodedWindow]] = queue.SimpleQueue()
        # Its own encoder thread, or a share of one that serves several sources (`worker`, started
        # and closed by its owner): their windows then go through the network in the same batches.
        self._owns_worker = worker is None
        self._worker = EncodeWorker(encoder, self._encoded) if worker is None else worker.client(self._encoded)
        self.rule = WindowRule(f=getattr(encoder, "f", DEFAULT_F), stride=stride)
        self._tracks: dict[int, _Track] = {}
        self._ending: dict[int, int] = {}  # ended track -> windows submitted when it ended
        self._decisions: dict[int, Decision] = {}
        self._visible: dict[int, np.ndarray] = {}  # tracks in the latest frame -> their joints
        self._time = 0.0
        self._warned: set[str] = set()
        self._stop = threading.Event()
        adapts = max_stride is not None and max_stride > stride and not source.is_file
        self.control = StrideControl(stride, max_stride, frame=1 / self.rule.rate) if adapts else None
        self._take_turns = not source.is_file  # spread the tracks' windows over a stride (module docstring)
        self._placed: set[int] = set()  # tracks whose turn is set at `_placed_stride` (`_spread`)
        self._placed_stride = 0
        self._stride_sum = 0  # the stride at each processed frame, summed: for `Stats.stride_mean`
        self._processed = 0

    def stop(self) -> None:
        """End `run` soon (from any thread, e.g. the view's close button)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """`stop` was asked for."""
        return self._stop.is_set()

    @property
    def frames_read(self) -> int:
        """Frames read from the source so far (live; `stats` is brought up to date per frame)."""
        return self._capture.stats.frames

    @property
    def frames_dropped(self) -> int:
        """Frames the capture queue threw away unprocessed so far."""
        return self._capture.stats.dropped

    @property
    def queue_depth(self) -> int:
        """Frames captured and not yet processed."""
        return self._capture.depth

    @property
    def encoder_stats(self) -> EncodeStats:
        """The encoder thread's counts (windows, batches, seconds spent encoding)."""
        return self._worker.stats

    @property
    def source_ended(self) -> bool:
        """The source itself ended (a file played to its end, or a source that gave up)."""
        return self._capture.done

    @property
    def current_stride(self) -> int:
        """Frames between a track's windows now: the adapted stride, or the fixed one."""
        return self.stride if self.control is None else self.control.stride

    def run(self, duration: float | None = None) -> Stats:
        """Process until the source ends, `duration` seconds (wall clock) pass, or `stop`."""
        deadline = None if duration is None else clock.monotonic() + duration
        self._capture.start()
        if self._owns_worker:
            self._worker.start()
        try:
            while not self._stop.is_set() and not self._capture.done:
                if deadline is not None and clock.monotonic() >= deadline:
                    break
                stamped = self._capture.get_stamped(timeout=_POLL)  # (frame, when it was read)
                if stamped is not None:
                    self._process(*stamped)
                self._collect()
                if stamped is not None and self.on_frame is not None:
                    self.on_frame(self._snapshot(stamped[0]))
        finally:
            self._capture.stop()
            if self._owns_worker:
                self._worker.close()
            else:
                self._worker.drain()
        self._collect()  # the last windows, and decisions on whoever is still in view
        for track in list(self._tracks):
            self._end(track)
        self._collect()  # the worker has finished: every ended track is forgotten here
        self._sync_stats()
        return self.stats

    def _encoded(self, results: list[EncodedWindow]) -> None:
        """The encoder thread's results: queued, and the loop woken to collect them now."""
        self._results.put(results)
        self._capture.wake()

    def _process(self, frame: Frame, captured: float) -> None:
        """One frame, read at monotonic time `captured`, through tracking and the window rule."""
        self._time = frame.time
        self._processed += 1
        self._stride_sum += self.current_stride
        if self.calibration is None and "floor" in frame.extras:
            self._sensor_floor(frame.extras["floor"])
        bodies, joints, states = self._canonical(frame)
        # Track by the hip centre, or by the mean of the joints seen when it is missing.
        finite = ~np.isnan(joints).any(axis=2)  # [n, 20]
        seen = finite.sum(axis=1)
        mean = np.where(finite[..., None], joints, 0.0).sum(axis=1) / np.maximum(seen, 1)[:, None]
        centre = np.where(finite[:, _HIP, None], joints[:, _HIP], mean)
        placed = seen > 0
        self.stats.skipped += int((~placed).sum())
        bodies = [b for b, p in zip(bodies, placed) if p]
        joints, states, centre = joints[placed], states[placed], centre[placed]
        if bodies:
            self.stats.frames_with_pose += 1
        update = self.tracker.update(frame.time, centre, [b.track for b in bodies], self.source.name)
        for track in update.ended:
            self._end(track)
        self._visible = dict(zip(update.ids, joints))
        if self.recorder is not None:
            self.recorder.write(dataclasses.replace(
                frame, bodies=[Body(i, b.joints, b.states) for i, b in zip(update.ids, bodies)]))
        if self._take_turns and self.current_stride > 1:
            self._spread(update.ids, frame.time)
        else:  # at stride 1 everyone cuts a window every frame: all to be placed again after it
            self._placed_stride = 0
        windows: list[tuple[int, float, Window]] = []
        segments: dict[int, np.ndarray] = {}
        for track_id, body_joints, body_states in zip(update.ids, joints, states):
            windows += self._advance(track_id, frame.time, body_joints, body_states, segments)
        if segments:  # gait-cycle segments need no model: to the matcher at once
            self.matcher.observe_segments(segments)
        self._worker.submit(windows, captured)  # one submission: the frame's windows share a batch

    def _spread(self, ids: list[int], now: float) -> None:
        """Give each track in view with a window phase a turn: once, when it first has one (its
        run's first window cut) or the stride changed, its next window is moved into the least
        busy frame of the stride, counted over the tracks already placed: earlier if it can while
        the encoder has room, only later when it is saturated, then by the fewest frames; placed
        tracks are not moved again, so the timestamps' jitter cannot move anyone twice (module
        docstring). `now`: the time of the frame about to be processed."""
        stride = self.current_stride
        if stride != self._placed_stride:
            self._placed.clear()
            self._placed_stride = stride
        busy = [0] * stride  # placed tracks completing a window k frames from now, by k mod stride
        unplaced: list[tuple[int, TrackWindower, int]] = []
        for track_id in ids:
            state = self._tracks.get(track_id)
            if state is None:  # new this frame: its first window comes at f frames
                continue
            state.windower.stride = stride  # (the stride may have just changed)
            due = state.windower.next_window_time()
            if due is None:  # no window in this run yet (a new track, or one that restarted)
                self._placed.discard(track_id)
                continue
            # Frames from now, each time rounded on its own: a window's time is fixed on its grid,
            # and the jitter of `now` is the same for every track, so no placed track changes frame.
            frame = max(round(due * self.rule.rate) - round(now * self.rule.rate), 0)
            if track_id in self._placed:
                busy[frame % stride] += 1
            else:
                unplaced.append((track_id, state.windower, frame))
        # Earlier rather than later while the encoder has room: an earlier window costs a little
        # encoder work once, a later one makes its frames wait longer once. A saturated encoder
        # (the stride control's demand at ROOM or over, as after a widening) has no work to spare.
        sooner = self.control is None or self.control.demand < ROOM
        for track_id, windower, frame in unplaced:
            # Frames it may move to: a stride's worth later, and while sooner, earlier too (not
            # before this frame).
            options = range(max(frame - stride + 1, 0) if sooner else frame, frame + stride)
            turn = min(options, key=lambda t: (busy[t % stride], t != frame and (t > frame) == sooner, abs(t - frame)))
            windower.move(turn - frame)
            busy[turn % stride] += 1
            self._placed.add(track_id)

    def _sensor_floor(self, plane: tuple[float, float, float, float]) -> None:
        """Calibrate from the floor plane the sensor reports; Kinect reports zeros until it
        has seen the floor, so an unusable plane just means: not yet."""
        try:
            self.calibration = Calibration.from_floor_plane(plane, self.source.name)
        except CalibrationError:
            if "floor" not in self._warned:
                self._warned.add("floor")
                log.info("the sensor reports no usable floor plane yet: camera coordinates until it does")
            return
        log.info("using the floor plane the sensor reports")

    def _canonical(self, frame: Frame) -> tuple[list[Body], np.ndarray, np.ndarray]:
        """The frame's usable bodies, their canonical calibrated joints [n, 20, 3] and states [n, 20].

        All bodies of a frame are retargeted in one call, as the frames of one sequence."""
        shape = (frame.layout.n_joints, 3)
        bodies = []
        for b in frame.bodies:
            if np.shape(b.joints) == shape and (b.states is None or np.shape(b.states) == shape[:1]):
                bodies.append(b)
            else:
                self._skip("body", f"bodies with {np.shape(b.joints)} joints (layout {frame.layout.name} has {shape})")
        none = [], np.zeros((0, CANONICAL.n_joints, 3), np.float32), np.zeros((0, CANONICAL.n_joints), np.int8)
        if not bodies:
            return none
        states = None if any(b.states is None for b in bodies) else np.stack([b.states for b in bodies])
        seq = SkeletonSequence(np.stack([b.joints for b in bodies]), np.full(len(bodies), frame.time),
                               frame.layout, states)
        try:
            seq = to_canonical(seq)
        except ValueError as e:
            self._skip("layout", str(e), len(bodies))
            return none
        joints = seq.joints if self.calibration is None else self.calibration.apply(seq.joints)
        return bodies, joints, seq.states

    def _skip(self, kind: str, why: str, n: int = 1) -> None:
        """Count skipped bodies; say why once per kind (a bad source repeats itself every frame)."""
        self.stats.skipped += n
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("skipping %s (counted in stats.skipped; said once)", why)

    def _advance(self, track_id: int, time: float, joints: np.ndarray, states: np.ndarray,
                 segments: dict[int, np.ndarray]) -> list[tuple[int, float, Window]]:
        """One body's frame through its track's window rule: the windows it completes, for the
        encoder; the gait-cycle segments it completes go into `segments`."""
        state = self._tracks.get(track_id)
        if state is None:
            state = self._tracks[track_id] = _Track(TrackWindower(self.rule, self.source.fps))
            if self.on_track is not None:
                self.on_track("started", track_id, time)
        state.windower.stride = self.current_stride
        windows, completed = state.windower.push(time, joints, states)
        ws = state.windower.stats
        self.stats.skipped += ws.incomplete - state.incomplete
        self.stats.gaps += ws.gaps + ws.glitches - state.restarts
        state.incomplete, state.restarts = ws.incomplete, ws.gaps + ws.glitches
        if completed:
            segments[track_id] = np.stack(completed)
        return [(track_id, w.time, w) for w in windows]

    def _collect(self) -> None:
        """Hand encoded windows to the matcher, pass on changed decisions, and let the matcher
        forget ended tracks once their last windows are through."""
        done = self._worker.stats.done  # read first: these windows' results are already queued
        by_track: dict[int, list[EncodedWindow]] = {}
        while True:
            try:
                results = self._results.get_nowait()
            except queue.Empty:
                break
            self.stats.windows += len(results)
            for r in results:
                by_track.setdefault(r.track, []).append(r)
        self._adapt([r.captured for rs in by_track.values() for r in rs])
        for track, results in by_track.items():
            self.matcher.observe(track, results[-1].time, np.stack([r.age for r in results]),
                                 np.stack([r.window.joints for r in results]),
                                 np.stack([r.window.tracked for r in results]))
        visible = [t for t in self._visible if t in self._tracks]
        if by_track:
            # People in view are decided jointly (one name, one person); a track whose windows
            # were encoded after it left the view (replay outruns the encoder) on its own.
            groups = [visible] if visible else []
            groups += [[t] for t in by_track if t not in visible]
            for group in groups:
                for track, decision in self.matcher.decide(self._time, group).items():
                    self._publish(track, decision)
        for track, submitted in list(self._ending.items()):
            if submitted <= done:
                del self._ending[track]
                if self.on_track is not None:  # before the matcher forgets it: its evidence is still there
                    self.on_track("ended", track, self._time)
                self.matcher.forget(track)
                self._decisions.pop(track, None)

    def _adapt(self, captured: list[float]) -> None:
        """Feed the stride control the lags of the windows just back, and the frames waiting."""
        if self.control is None:
            return
        now = clock.monotonic()
        self.control.add(now - c for c in captured)
        capture, worker = self._capture.stats, self._worker.stats
        self.control.update(now, self._capture.depth + self._worker.queued, capture.dropped + worker.dropped,
                            self._worker.load())

    def _publish(self, track: int, decision: Decision) -> None:
        before = self._decisions.get(track)
        self._decisions[track] = decision
        if self.on_decision is not None and _verdict(decision) != _verdict(before) and not _pending(decision):
            self.on_decision(track, self._time, decision)

    def _end(self, track: int) -> None:
        """The tracker ended a track: stop feeding it; forget it after its queued windows."""
        if self._tracks.pop(track, None) is not None:
            self._ending[track] = self._worker.stats.submitted
            self._placed.discard(track)

    def _sync_stats(self) -> None:
        capture, worker = self._capture.stats, self._worker.stats
        self.stats.frames = capture.frames
        self.stats.dropped = capture.dropped + worker.dropped
        self.stats.errors = capture.errors + worker.errors
        self.stats.source_restarts = capture.source_restarts
        self.stats.tracks = self.tracker.created
        self.stats.stride = self.current_stride
        self.stats.stride_mean = self._stride_sum / self._processed if self._processed else float(self.stride)
        if self.control is not None:
            self.stats.lag, self.stats.behind = self.control.lag, self.control.episodes

    def _snapshot(self, frame: Frame) -> Snapshot:
        self._sync_stats()
        decisions = {t: self._decisions[t] for t in self._visible if t in self._decisions}
        return Snapshot(frame.time, self._visible, decisions, dataclasses.replace(self.stats), frame.image)
