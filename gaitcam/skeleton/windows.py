"""The one window rule: how a track of skeleton frames becomes the encoder's windows.

Live tracks, replays, enrolment, `identify`, `evaluate` and training all cut windows here, with
the same `TrackWindower`, so a template enrolled from a file means what a live track's evidence
means, and the encoder trains on what it will see. Frame by frame:

1. **Clean**: a non-finite joint is MISSING (`repair.mark_missing`); a frame whose hip and
   shoulder centres are less than `MIN_SPINE` apart holds no body (an all-zero glitch, a
   collapsed pose) and is treated as a frame with every joint missing (counted `implausible`).
2. **Derive**: a missing joint that its neighbours pin down (hand, head, trunk joints) is
   computed from them and flagged DERIVED (`repair.derive_missing`).
3. **Bridge**: a frame still missing a joint is held; if the joint is back within `bridge`
   seconds (0.3 s) the held frames are filled by linear interpolation and flagged DERIVED, else
   they are dropped and the run ends (counted as frames with too few joints).
4. **Glitch check**: a joint moving faster than `max_joint_speed` (15 m/s, faster than any limb of a
   walking or running person) is the sensor jumping to a wrong pose: the run restarts there.
5. **Resample** to `rate` (30 fps, what the encoder learned from), interpolating across dropped
   frames up to `bridge` seconds; a longer gap restarts the run.
6. **Smooth**: each frame is the mean of the last `smooth` resampled frames of the run, which
   damps sensor jitter (independent from frame to frame) and keeps the motion of a stride.
7. **Cut**: within a run, a window of `f` frames every `stride` frames, and a gait-cycle
   segment of `segment` frames every `segment_hop` frames (`skeleton.cycle`). The live
   pipeline may change a track's stride as it goes (`TrackWindower.stride`, under load): the
   next window then comes `stride` frames after the last one; segments keep their own hop. It
   may also move a track's next window a few frames earlier or later, once per run and stride
   (`TrackWindower.move`), so that people in view take turns instead of all completing windows
   in the same frame.

Strides: training uses f // 2 (overlapping windows), the paper's test f (disjoint windows), live
`LIVE_STRIDE`. A window never spans a restart.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.repair import derive_missing, mark_missing
from gaitcam.skeleton.resample import MODEL_FPS, Resampler
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import STATE_DERIVED, STATE_MISSING, STATE_TRACKED, SkeletonSequence

DEFAULT_F = 6  # SGE-LA's window length (spec §1.6)
# Frames between live windows (and enrolment's, so templates match what live sees): a fresh AGE
# every 0.1 s per person at 30 fps.
LIVE_STRIDE = 3
# Faster than any joint of a walking (or running) person moves: above it the sensor has jumped
# to a wrong pose. On KGBD 2 % of windows hold such a jump (some of 2.9 m in one frame); left in,
# the top 1 % of training windows carried 37 % of the reconstruction loss.
MAX_JOINT_SPEED = 15.0  # m/s
# Hip centre to shoulder centre is 0.4-0.6 m in adults; under this the frame is not a body.
MIN_SPINE = 0.1  # m
BRIDGE_SECONDS = 0.3  # the longest dropout (of a joint or of whole frames) filled by interpolation
SEGMENT = 32  # frames of a gait-cycle segment (1.07 s at 30 fps, about one stride)
SEGMENT_HOP = 8
SMOOTH = 1  # resampled frames averaged into each frame


def train_stride(f: int) -> int:
    """Half-overlapping training windows, as the original."""
    return max(1, f // 2)


def test_stride(f: int) -> int:
    """Disjoint test windows, as the original."""
    return f


@dataclass(frozen=True)
class WindowRule:
    """Everything that decides which windows a track gives (module docstring)."""

    f: int = DEFAULT_F
    stride: int = LIVE_STRIDE
    rate: float = MODEL_FPS
    bridge: float = BRIDGE_SECONDS
    max_joint_speed: float | None = MAX_JOINT_SPEED
    segment: int = SEGMENT
    segment_hop: int = SEGMENT_HOP
    smooth: int = SMOOTH

    def __post_init__(self) -> None:
        if self.f < 1 or self.stride < 1 or self.segment < 2 or self.segment_hop < 1 or self.smooth < 1:
            raise ValueError(f"window length, stride and segment must be positive, got {self}")
        if not self.rate > 0 or not self.bridge >= 0:
            raise ValueError(f"rate must be positive and bridge non-negative, got {self}")

    def max_step(self, source_fps: float) -> float:
        """The longest step between source frames interpolated across: `bridge`, or 2.5 frames
        of a slow source (so one dropped frame is always bridged)."""
        return max(self.bridge, 2.5 / source_fps) if source_fps > 0 else self.bridge


class Window(NamedTuple):
    """One window: joints [f, 20, 3] (metres); `derived` [f, 20] joints computed, not measured;
    `tracked` [f, 20] joints the sensor tracked (not inferred, derived or interpolated)."""

    time: float  # of its last frame
    joints: np.ndarray
    derived: np.ndarray
    tracked: np.ndarray


@dataclass
class WindowStats:
    """What became of a track's frames; the reasons a track gives no usable evidence."""

    frames: int = 0  # pushed
    incomplete: int = 0  # dropped: a joint missing for longer than `bridge`
    implausible: int = 0  # no body: hip and shoulder centres closer than MIN_SPINE
    bridged: int = 0  # filled by interpolation over a short dropout
    derived: int = 0  # with a joint computed from its neighbours
    glitches: int = 0  # runs restarted by an impossibly fast joint
    gaps: int = 0  # runs restarted by a gap in time longer than `bridge`
    windows: int = 0
    segments: int = 0

    def add(self, other: WindowStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


_HIP, _SHOULDER = CANONICAL.index("HipCenter"), CANONICAL.index("ShoulderCenter")
# Per-joint channels carried through resampling beside x, y, z: derived, tracked (0 or 1).
_DERIVED, _TRACKED = 3, 4


class TrackWindower:
    """The window rule for one track: push its frames in time order, get its windows and
    gait-cycle segments as they complete (module docstring)."""

    def __init__(self, rule: WindowRule = WindowRule(), source_fps: float = MODEL_FPS) -> None:
        self.rule = rule
        self.stats = WindowStats()
        self._resampler = Resampler(rule.rate, rule.max_step(source_fps))
        self._size = max(rule.f, rule.segment)
        self._ring = np.empty((self._size, 20, 5), dtype=np.float32)
        self._raw = np.empty((rule.smooth, 20, 5), dtype=np.float32)  # the last resampled frames, to smooth
        self._raw_count = 0  # resampled frames in the current run
        self._count = 0  # smoothed frames in the current run
        self._cut = 0  # `_count` at the run's last window, or as `move` set it (0: no window yet)
        self._grid_time = 0.0  # time of the run's last grid frame
        self._stride = rule.stride
        self._started = False  # the track has had a run (a later restart is a gap)
        self._last: tuple[float, np.ndarray] | None = None  # last complete source frame
        self._held: list[tuple[float, np.ndarray, np.ndarray]] = []  # frames waiting for a bridge

    @property
    def stride(self) -> int:
        """Frames between this track's windows: the rule's, unless the live pipeline changed it."""
        return self._stride

    @stride.setter
    def stride(self, value: int) -> None:
        if value < 1:
            raise ValueError(f"stride must be positive, got {value}")
        self._stride = value

    def next_window_time(self) -> float | None:
        """When (source time, on this track's 30 fps grid) the run's next window completes at its
        stride, if frames keep coming; None while the run has no window yet (its first comes at
        `f` frames). The grid is the run's own, so this does not move with the jitter of the
        source's timestamps: only with a window cut, a stride changed or a `move`."""
        if not self._cut:
            return None
        return self._grid_time + max(self._cut + self._stride - self._count, 1) / self.rule.rate

    def move(self, frames: int) -> None:
        """The run's next window `frames` grid frames later (negative: earlier, but not before the
        next grid frame) than the stride says, once: the ones after it follow `stride` frames
        apart again. No effect before the run's first window."""
        if self._cut:
            due = max(self._cut, self._count + 1 - self._stride)  # an overdue window comes next
            # (at least 1: 0 means no window yet; at a stride over f that is a frame later, once)
            self._cut = max(due + frames, self._count + 1 - self._stride, 1)

    def push(self, time: float, joints: np.ndarray, states: np.ndarray | None = None
             ) -> tuple[list[Window], list[np.ndarray]]:
        """One canonical frame: joints [20, 3], states [20] (None: all tracked). Returns the
        windows and segments [segment, 20, 3] it completes (usually none)."""
        self.stats.frames += 1
        joints, states = derive_missing(*mark_missing(joints, states))
        if np.linalg.norm(joints[_SHOULDER] - joints[_HIP]) < MIN_SPINE:  # False when either is NaN
            self.stats.implausible += 1
            joints, states = np.full_like(joints, np.nan), np.full_like(states, STATE_MISSING)
        if (states == STATE_MISSING).any():
            if self._last is None:  # nothing to bridge from: the track starts incomplete
                self.stats.incomplete += 1
            else:
                self._held.append((time, joints, states))
                if time - self._last[0] > self.rule.bridge:
                    self._drop_held()
            return [], []
        windows: list[Window] = []
        segments: list[np.ndarray] = []
        if self._held:
            if time - self._last[0] <= self.rule.bridge:
                for t, j, s in self._bridge(time, joints):
                    self._process(t, j, s, windows, segments)
            else:
                self._drop_held()
        self._process(time, joints, states, windows, segments)
        return windows, segments

    def _bridge(self, time: float, joints: np.ndarray) -> list[tuple[float, np.ndarray, np.ndarray]]:
        """The held frames with their missing joints interpolated between the frames around them."""
        t0, j0 = self._last
        out = []
        for t, j, s in self._held:
            gone = s == STATE_MISSING
            w = (t - t0) / (time - t0) if time > t0 else 1.0
            j = j.copy()
            j[gone] = j0[gone] + np.float32(w) * (joints[gone] - j0[gone])
            out.append((t, j, np.where(gone, np.int8(STATE_DERIVED), s)))
        self.stats.bridged += len(out)
        self._held.clear()
        return out

    def _drop_held(self) -> None:
        self.stats.incomplete += len(self._held)
        self._held.clear()
        self._last = None  # the next complete frame starts afresh
        self._restart()

    def _restart(self) -> None:
        self._resampler.reset()
        self._count = self._raw_count = self._cut = 0

    def _process(self, time: float, joints: np.ndarray, states: np.ndarray,
                 windows: list[Window], segments: list[np.ndarray]) -> None:
        rule = self.rule
        self.stats.derived += bool((states == STATE_DERIVED).any())
        if self._last is not None and rule.max_joint_speed is not None:
            dt = time - self._last[0]
            if dt > 0 and np.linalg.norm(joints - self._last[1], axis=-1).max() > rule.max_joint_speed * dt:
                self.stats.glitches += 1
                self._restart()
        self._last = (time, joints)
        data = np.concatenate([joints, (states == STATE_DERIVED)[:, None],
                               (states == STATE_TRACKED)[:, None]], axis=1).astype(np.float32)
        out = self._resampler.push(time, data)
        if out.restart:
            self.stats.gaps += self._started and self._raw_count > 0
            self._started = True
            self._count = self._raw_count = self._cut = 0
        for t, raw in zip(out.times, out.joints):
            self._raw_count += 1
            if rule.smooth == 1:  # the default: no averaging, no copy
                frame = raw
            else:
                self._raw[(self._raw_count - 1) % rule.smooth] = raw
                if self._raw_count < rule.smooth:
                    continue
                frame = np.concatenate([self._raw[..., :_DERIVED].mean(axis=0),
                                        self._raw[..., _DERIVED:_TRACKED].max(axis=0),
                                        self._raw[..., _TRACKED:].min(axis=0)], axis=1)
            self._ring[self._count % self._size] = frame
            self._count += 1
            self._grid_time = float(t)
            n = self._count
            # The first window at f frames, then one `stride` frames after the last: at a fixed
            # stride the same as every `stride` frames from f, and a stride changed between two
            # windows takes effect from the last one, never skipping or repeating frames.
            if n >= rule.f and (self._cut == 0 or n - self._cut >= self._stride):
                self._cut = n
                w = self._recent(rule.f)
                windows.append(Window(float(t), w[..., :3].copy(), w[..., _DERIVED] > 0, w[..., _TRACKED] >= 1))
                self.stats.windows += 1
            if n >= rule.segment and (n - rule.segment) % rule.segment_hop == 0:
                segments.append(self._recent(rule.segment)[..., :3].copy())
                self.stats.segments += 1

    def _recent(self, n: int) -> np.ndarray:
        """The last n grid frames of the run, oldest first (a copy)."""
        return self._ring[(self._count - n + np.arange(n)) % self._size]


@dataclass
class TrackWindows:
    """All windows and segments of one whole track, stacked."""

    times: np.ndarray  # [N] time of each window's last frame
    joints: np.ndarray  # [N, f, 20, 3]
    derived: np.ndarray  # [N, f, 20] bool
    tracked: np.ndarray  # [N, f, 20] bool
    segments: np.ndarray  # [M, segment, 20, 3]
    stats: WindowStats = field(default_factory=WindowStats)

    def __len__(self) -> int:
        return len(self.joints)


def source_fps(timestamps: np.ndarray) -> float:
    """A recording's frame rate from its timestamps (median step); the model's rate if unknown."""
    steps = np.diff(np.asarray(timestamps, dtype=np.float64))
    steps = steps[np.isfinite(steps) & (steps > 0)]
    return float(1.0 / np.median(steps)) if len(steps) else MODEL_FPS


def track_windows(seq: SkeletonSequence, rule: WindowRule = WindowRule()) -> TrackWindows:
    """A whole track (any layout) through the window rule: what the same track live would give."""
    seq = to_canonical(seq)
    windower = TrackWindower(rule, source_fps(seq.timestamps))
    windows: list[Window] = []
    segments: list[np.ndarray] = []
    for t, j, s in zip(seq.timestamps, seq.joints, seq.states):
        w, g = windower.push(float(t), j, s)
        windows += w
        segments += g
    f, n = rule.f, seq.layout.n_joints
    return TrackWindows(
        np.array([w.time for w in windows], dtype=np.float64),
        np.stack([w.joints for w in windows]) if windows else np.zeros((0, f, n, 3), np.float32),
        np.stack([w.derived for w in windows]) if windows else np.zeros((0, f, n), bool),
        np.stack([w.tracked for w in windows]) if windows else np.zeros((0, f, n), bool),
        np.stack(segments) if segments else np.zeros((0, rule.segment, n, 3), np.float32),
        windower.stats,
    )
