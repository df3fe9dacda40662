"""Synthetic walkers: a sensor-free source for trying, testing and demonstrating the whole app.

Each person is an *identity*, drawn from an identity seed: a body (height and the proportions
of trunk, limbs, shoulders and hips) and a gait (cadence, stride, knee lift, arm swing, step
width, pelvis sway and twist, trunk lean, a small left/right asymmetry). Each *walk* of that
person is drawn from a walk seed: where and in which direction each pass crosses the room,
speed jitter, sensor noise and the odd lost joint. Enrolling walks with some walk seeds and
watching others therefore asks the matcher exactly what a real deployment asks: the same body
and gait, seen somewhere else.

Coordinates are those of a Kinect-style depth camera: metres, x to the sensor's left, y up,
z away from the camera, the camera `DEMO_CAMERA_HEIGHT` above the floor and pitched down by
`DEMO_CAMERA_TILT`; every frame carries that floor plane (`extras["floor"]`, Kinect's
FloorClipPlane convention) as a real Kinect does. People walk back and forth across the view
2-4 m away, entering and leaving it; like a sensor, the source gives each appearance a new
body id (`Body.track`).

Poses come from a small parametric gait model evaluated for all visible people at once
(numpy over people or over frames, no per-joint loops), so the live scene costs well under a
millisecond per frame.
"""
from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gaitcam.sensors.base import Body, Frame, Source, SourceError
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.sequence import JointState, SkeletonSequence

DEMO_PEOPLE: dict[str, int] = {"Ada": 1101, "Ben": 2203, "Chloe": 3313, "Dev": 4409}
"""The enrolled identities: name -> identity seed (seeds picked so the shipped weights tell
the four apart window by window; other seeds can draw near-twins)."""
DEMO_STRANGER = "Eve"
"""Walks in the live scene but is never enrolled: the open-set case ("unknown")."""
DEMO_SCENE: tuple[str, ...] = ("Ada", "Ben", "Chloe", DEMO_STRANGER)
"""Who walks in the live demo: three enrolled people (Dev stays away) and the stranger."""
_SEEDS: dict[str, int] = {**DEMO_PEOPLE, DEMO_STRANGER: 5501}

DEMO_CAMERA_HEIGHT = 1.0  # metres above the floor
DEMO_CAMERA_TILT = np.radians(5.0)  # pitched down
DEMO_FLOOR: tuple[float, float, float, float] = (
    0.0, float(np.cos(DEMO_CAMERA_TILT)), float(-np.sin(DEMO_CAMERA_TILT)), DEMO_CAMERA_HEIGHT,
)
"""The floor plane a, b, c, d in camera coordinates: a*x + b*y + c*z + d is height above it."""

_HALF_FOV = np.radians(28.5)  # Kinect v1's 57 degree horizontal field of view
_VIEW_MARGIN = 0.25  # the hip centre must be this far inside the view for the body to show
_MAX_DEPTH = 4.5  # Kinect v1's skeleton range
_OFF_VIEW = 0.4  # metres walked out of view at each end of a pass (turning round)
_NOISE = 0.005  # sensor jitter, metres (standard deviation per coordinate)
_DROPOUT = 0.006  # chance that a body loses one joint in a frame
_SPINE_FRACTION = 0.165  # Kinect v1's Spine, from HipCenter towards ShoulderCenter

_J = {name: i for i, name in enumerate(CANONICAL.joints)}
_LEGS = [_J[f"{part}{side}"] for side in ("Left", "Right") for part in ("Hip", "Knee", "Ankle", "Foot")]


def body_and_gait(name: str) -> dict[str, float]:
    """Body and gait of a named demo identity, drawn from its identity seed.

    Lengths are metres; proportions follow Kinect v1's skeleton (its hip joints sit close to
    HipCenter and high, so its thighs measure long) rather than anatomy.
    """
    if name not in _SEEDS:
        raise SourceError(f"demo: unknown person {name!r}; known: {', '.join(_SEEDS)}")
    rng = np.random.default_rng(_SEEDS[name])
    h = rng.uniform(1.55, 1.95)

    def part(share: float) -> float:
        return h * share * float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.2))

    p = {
        "torso": part(0.285), "neck": part(0.1), "shoulder": part(0.115), "hip": part(0.04),
        "hip_drop": part(0.025), "thigh": part(0.29), "shin": part(0.225), "ankle": part(0.045),
        "foot": part(0.062), "upper_arm": part(0.165), "forearm": part(0.15), "hand": part(0.047),
        "cadence": rng.uniform(96.0, 124.0),  # steps per minute
        "stride": rng.uniform(1.3, 1.7),  # stride length / leg length
        "knee_lift": rng.uniform(0.75, 1.05), "knee_bend": rng.uniform(0.05, 0.2),  # radians
        "arm_swing": rng.uniform(0.15, 0.55), "elbow": rng.uniform(0.15, 0.45),
        "elbow_swing": rng.uniform(0.05, 0.3),
        "step_width": rng.uniform(0.06, 0.2), "sway": rng.uniform(0.01, 0.04),
        "lean": rng.uniform(0.0, 0.12), "twist": rng.uniform(0.03, 0.12),
        "asym": rng.uniform(-0.1, 0.1), "asym_phase": rng.uniform(-0.15, 0.15),
        "arm_asym": rng.uniform(-0.25, 0.25),
    }
    p["leg"] = p["hip_drop"] + p["thigh"] + p["shin"] + p["ankle"]
    p["hip_swing"] = float(np.arcsin(p["stride"] / 4))  # two steps of 2 l sin(swing) per stride
    return p


def _stack(people: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
    """Parameters of several people as arrays over people, for one vectorised pose call."""
    return {k: np.array([p[k] for p in people]) for k in people[0]}


def _limb(length: np.ndarray, angle: np.ndarray, side: np.ndarray | float = 0.0) -> np.ndarray:
    """Segment vectors [N, 3] of `length`, `angle` forward from straight down, leaning `side`
    sideways (as a share of the length)."""
    return length[:, None] * np.stack(np.broadcast_arrays(side, -np.cos(angle), np.sin(angle)), axis=-1)


def _point(x: np.ndarray | float, y: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


def _pose(params: Mapping[str, np.ndarray | float], phase: np.ndarray, arm: np.ndarray | float) -> np.ndarray:
    """Joints [N, 20, 3] in the walker's own frame (x: their left, y: up, z: forward).

    The origin is the floor under the hip centre; the lower ankle rests `ankle` above the floor.
    `phase` [N] is the gait cycle in radians (left heel strike at pi / 2); `arm` scales arm
    swing. Parameters are scalars (one person over N frames) or [N] (N people at one instant).
    """
    n = len(phase)
    p = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)) for k, v in params.items()}
    out = np.empty((n, 20, 3))
    ankle_y = []
    twist = p["twist"] * np.sin(phase)  # the pelvis turns with the stride
    for side, sign, phi, amp in (
        ("Left", 1.0, phase, 1.0),
        ("Right", -1.0, phase + np.pi + p["asym_phase"], 1.0 + p["asym"]),
    ):
        flex = amp * p["hip_swing"] * np.sin(phi) + 0.04
        shin = flex - p["knee_bend"] - p["knee_lift"] * np.maximum(0.0, np.cos(phi + 0.3)) ** 2
        inward = sign * (p["step_width"] / 2 - p["hip"]) / 2  # feet step_width apart, not hip width
        hip = _point(sign * p["hip"], -p["hip_drop"], sign * p["hip"] * twist)
        knee = hip + _limb(p["thigh"], flex, inward / p["thigh"])
        ankle = knee + _limb(p["shin"], shin, inward / p["shin"])
        out[:, _J[f"Hip{side}"]], out[:, _J[f"Knee{side}"]], out[:, _J[f"Ankle{side}"]] = hip, knee, ankle
        out[:, _J[f"Foot{side}"]] = ankle + _limb(p["foot"], np.clip(1.2 + 0.6 * shin, 0.6, 1.9), sign * 0.15)
        ankle_y.append(ankle[:, 1])
    pelvis = _point(p["sway"] * np.sin(phase), p["ankle"] - np.minimum(*ankle_y), 0.0)  # stance ankle carries the body
    out[:, _LEGS] += pelvis[:, None]

    lean = p["lean"] + 0.02 * np.sin(2 * phase)
    shoulder_centre = pelvis + _limb(p["torso"], np.pi - lean)
    out[:, _J["HipCenter"]], out[:, _J["ShoulderCenter"]] = pelvis, shoulder_centre
    out[:, _J["Spine"]] = pelvis + _SPINE_FRACTION * (shoulder_centre - pelvis)
    out[:, _J["Head"]] = shoulder_centre + _limb(p["neck"], np.pi - lean / 2)
    counter = -0.7 * twist  # the shoulders turn against the pelvis
    for side, sign, phi, amp in (
        ("Left", 1.0, phase + np.pi, 1.0),  # each arm swings with the opposite leg
        ("Right", -1.0, phase, 1.0 + p["arm_asym"]),
    ):
        swing = arm * amp * p["arm_swing"] * np.sin(phi) + 0.05
        forearm = swing + p["elbow"] + p["elbow_swing"] * (0.5 + 0.5 * np.sin(phi))
        shoulder = shoulder_centre + _point(sign * p["shoulder"], -0.1 * p["shoulder"], sign * p["shoulder"] * counter)
        elbow = shoulder + _limb(p["upper_arm"], swing, sign * 0.12)
        wrist = elbow + _limb(p["forearm"], forearm, sign * 0.06)
        out[:, _J[f"Shoulder{side}"]], out[:, _J[f"Elbow{side}"]], out[:, _J[f"Wrist{side}"]] = shoulder, elbow, wrist
        out[:, _J[f"Hand{side}"]] = wrist + _limb(p["hand"], forearm, sign * 0.06)
    return out


def _to_camera(local: np.ndarray, position: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """Walker-frame joints [N, 20, 3] -> camera coordinates, given floor positions [N, 2] (x, z)
    and unit headings [N, 2]. The walker's left is up x heading, which keeps the frame right-handed."""
    dx, dz = heading[:, 0, None], heading[:, 1, None]
    lx, ly, lz = local[..., 0], local[..., 1], local[..., 2]
    x = position[:, 0, None] + lx * dz + lz * dx
    z = position[:, 1, None] - lx * dx + lz * dz
    y = ly - DEMO_CAMERA_HEIGHT
    c, s = np.cos(DEMO_CAMERA_TILT), np.sin(DEMO_CAMERA_TILT)
    return np.stack([x, c * y + s * z, -s * y + c * z], axis=-1)


def _visible(hip: np.ndarray) -> np.ndarray:
    """Which camera-space hip centres [N, 3] a Kinect would see a whole body around."""
    x, z = hip[:, 0], hip[:, 2]
    return (np.abs(x) < z * np.tan(_HALF_FOV) - _VIEW_MARGIN) & (z > 0.8) & (z < _MAX_DEPTH)


@dataclass
class _Pass:
    """One straight walk across the room, at a steady pace."""

    start: float  # seconds
    end: float
    origin: np.ndarray  # floor (x, z) where the pass starts
    heading: np.ndarray  # unit (x, z)
    speed: float  # metres per second
    cadence: float  # gait cycles per second
    phase: float  # gait phase at `start`


class _Walker:
    """One identity walking back and forth across the room; passes are drawn from the walk seed."""

    def __init__(self, name: str, rng: np.random.Generator, first_entry: float) -> None:
        self.params = body_and_gait(name)
        self.rng = rng
        self.arm = float(np.clip(rng.normal(1.0, 0.08), 0.8, 1.2))
        self.direction = float(rng.choice([-1.0, 1.0]))
        self.passes = [self._pass(first_entry)]

    def _pass(self, entry: float) -> _Pass:
        """The next pass, timed so the walker comes into view at about `entry`."""
        depth = self.rng.uniform(2.3, 3.8)
        angle = self.rng.uniform(-0.35, 0.35)
        heading = self.direction * np.array([np.cos(angle), np.sin(angle)])
        factor = float(np.clip(self.rng.normal(1.0, 0.04), 0.9, 1.1))
        cadence = self.params["cadence"] * factor / 120.0  # two steps per gait cycle
        speed = cadence * self.params["stride"] * self.params["leg"]
        # Walk from just outside the view on one side to just outside it on the other.
        half_path = (depth * np.tan(_HALF_FOV) - _VIEW_MARGIN) / np.cos(angle) + _OFF_VIEW
        start = entry - _OFF_VIEW / speed
        self.direction = -self.direction  # back and forth
        return _Pass(start, start + 2 * half_path / speed, np.array([0.0, depth]) - half_path * heading,
                     heading, speed, cadence, self.rng.uniform(0, 2 * np.pi))

    def at(self, t: float) -> tuple[np.ndarray, float, np.ndarray] | None:
        """Floor position, gait phase and heading at time t, or None between passes."""
        while t >= self.passes[-1].end:
            self.passes.append(self._pass(self.passes[-1].end + self.rng.uniform(0.5, 2.5)))
            if len(self.passes) > 2:
                self.passes.pop(0)
        for p in self.passes:
            if p.start <= t < p.end:
                dt = t - p.start
                return p.origin + p.heading * p.speed * dt, p.phase + 2 * np.pi * p.cadence * dt, p.heading
        return None


def _sense(joints: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Add sensor jitter and the occasional lost joint: joints [N, 20, 3] -> (float32, states)."""
    joints = (joints + rng.normal(0.0, _NOISE, joints.shape)).astype(np.float32)
    states = np.full(joints.shape[:2], JointState.TRACKED, dtype=np.int8)
    lost = np.flatnonzero(rng.random(len(joints)) < _DROPOUT)
    joint = rng.integers(0, 20, len(lost))
    joints[lost, joint] = np.nan
    states[lost, joint] = JointState.MISSING
    return joints, states


def _walk_rng(name: str, walk_seed: int, live: bool) -> np.random.Generator:
    """The walk's generator; live and enrolment walks use different seed paths, so never repeat."""
    return np.random.default_rng([_SEEDS[name], walk_seed, int(live)])


def demo_walk(identity: str, walk_seed: int, seconds: float, fps: float = 30.0) -> SkeletonSequence:
    """One person's walk for `seconds` (canonical layout, camera coordinates): what an enrolment
    recording of them holds. Only frames with the person in view are kept, so the timestamps
    have a gap wherever they stepped out of view to turn round."""
    rng = _walk_rng(identity, walk_seed, live=False)
    walker = _Walker(identity, rng, first_entry=0.0)
    times = np.arange(int(round(seconds * fps))) / fps
    where = [walker.at(float(t)) for t in times]
    walking = np.array([w is not None for w in where], dtype=bool)
    placed = [w for w in where if w is not None]
    if not placed:
        return SkeletonSequence(np.zeros((0, 20, 3)), np.zeros(0), CANONICAL, source=f"demo:{identity}:{walk_seed}")
    position, phase, heading = (np.array([w[k] for w in placed]) for k in range(3))
    joints = _to_camera(_pose(walker.params, phase, walker.arm), position, heading)
    seen = _visible(joints[:, _J["HipCenter"]])
    joints, states = _sense(joints[seen], rng)
    return SkeletonSequence(joints, times[walking][seen], CANONICAL, states, source=f"demo:{identity}:{walk_seed}")


DEMO_ENROL_SECONDS = 30.0
DEMO_ENROL_SEED = 1  # the enrolment walks' seed: the live scene draws its walks elsewhere


def write_demo_recordings(folder: str | Path) -> list[Path]:
    """The demo gallery's enrolment recordings, `folder/<Name>.gaitrec`, one walk per enrolled
    person (what ships in recordings/demo/, and what the demo enrols at start-up)."""
    from gaitcam.recording.formats import write_recording
    from gaitcam.recording.recording import Recording, RecordingMeta

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in DEMO_PEOPLE:
        seq = demo_walk(name, DEMO_ENROL_SEED, DEMO_ENROL_SECONDS)
        meta = RecordingMeta(sensor="demo", layout=CANONICAL.name, fps=30.0, calibration={"floor": list(DEMO_FLOOR)},
                             subject=name, created="2026-11-24T00:00:00+00:00")
        write_recording(Recording(meta, {1: seq}), folder / f"{name}.gaitrec")
        paths.append(folder / f"{name}.gaitrec")
    return paths


class DemoSource(Source):
    """The live demo scene (`DEMO_SCENE` by default): several people walking at once.

    `realtime` paces `read` at `fps` like a camera; without it frames come as fast as asked
    for (tests, benchmarks). With a `duration` the source ends like a file after that many
    seconds of scene time; without one it runs forever.
    """

    name = "demo"

    def __init__(
        self,
        people: Sequence[str] = DEMO_SCENE,
        seed: int = 0,
        fps: float = 30.0,
        duration: float | None = None,
        realtime: bool = True,
    ) -> None:
        if not people:
            raise SourceError("demo: no people to show")
        for name in people:
            body_and_gait(name)  # unknown names fail here, at start-up
        if not fps > 0:
            raise SourceError(f"demo: fps must be positive, got {fps}")
        self.people = tuple(people)
        self.seed = seed
        self.fps = float(fps)
        self.layout = CANONICAL
        self.duration = duration
        self.realtime = realtime
        self.is_file = duration is not None  # type: ignore[misc]  # a timed demo ends like a file
        self._frames = None if duration is None else int(round(duration * fps))
        self._rng = np.random.default_rng([seed, 7])  # jitter and lost joints of the live scene
        self._walkers = [
            _Walker(name, _walk_rng(name, seed, live=True), first_entry=1.2 * k)
            for k, name in enumerate(self.people)
        ]
        self._params = _stack([w.params for w in self._walkers])
        self._arm = np.array([w.arm for w in self._walkers])
        self._ids = np.zeros(len(self._walkers), dtype=np.int64)  # sensor body id, 0 when unseen
        self._next_id = 1
        self._index = 0
        self._paced_from: tuple[float, int] | None = None  # (monotonic time, frame index)

    def open(self) -> None:
        """Start (or, after a close, resume) pacing; the scene itself carries on where it was."""
        self._paced_from = None

    def read(self) -> Frame | None:
        if self.realtime:
            self._pace()
        if self._frames is not None and self._index >= self._frames:
            return None
        t = self._index / self.fps
        bodies = self._bodies(t)
        # Ground truth, which no real sensor has: who each body id is (for tests and the view).
        who = {int(i): name for i, name in zip(self._ids, self.people) if i}
        frame = Frame(t, bodies, self.layout, index=self._index, extras={"floor": DEMO_FLOOR, "who": who})
        self._index += 1
        return frame

    def _pace(self) -> None:
        """Wait for the frame's time like a camera; if the reader fell behind, skip to the frame
        due now (a gap in `Frame.index`, as a sensor drops frames) rather than burst."""
        now = time.monotonic()
        if self._paced_from is None:
            self._paced_from = (now, self._index)
        start, first = self._paced_from
        due = first + (now - start) * self.fps
        if due >= self._index + 2:
            self._index = int(due)
        elif (wait := (self._index - due) / self.fps) > 0:
            time.sleep(wait)

    def _bodies(self, t: float) -> list[Body]:
        placed = [(k, s) for k, s in enumerate(w.at(t) for w in self._walkers) if s is not None]
        seen = np.zeros(len(self._walkers), dtype=bool)
        bodies: list[Body] = []
        if placed:
            who = np.array([k for k, _ in placed])
            params = {key: v[who] for key, v in self._params.items()}
            local = _pose(params, np.array([s[1] for _, s in placed]), self._arm[who])
            joints = _to_camera(local, np.array([s[0] for _, s in placed]), np.array([s[2] for _, s in placed]))
            visible = _visible(joints[:, _J["HipCenter"]])
            who, joints = who[visible], joints[visible]
            joints, states = _sense(joints, self._rng)
            seen[who] = True
            for k, body_joints, body_states in zip(who, joints, states):
                if self._ids[k] == 0:  # a new appearance gets a new sensor id, as on a Kinect
                    self._ids[k] = self._next_id
                    self._next_id += 1
                bodies.append(Body(int(self._ids[k]), body_joints, body_states))
        self._ids[~seen] = 0
        return bodies
