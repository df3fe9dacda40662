"""Calibration: the rigid transform from a sensor's camera frame to a floor frame.

The floor frame has y up and the floor at y = 0, with x and z on the floor, the camera above
its origin. Skeletons in it no longer depend on how high the sensor hangs or how far it is
tilted, which is what makes recordings from different set-ups comparable and lets the view
draw the floor. The transform comes from one of three places, best first: a calibration file
written by `python main.py calibrate` (`estimate_floor` on a recording of people walking
round), the floor plane a sensor reports itself (Kinect's FloorClipPlane,
`Frame.extras["floor"]`), or nothing (identity: camera coordinates, which the encoder's body
normalisation copes with).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gaitcam.errors import GaitcamError
from gaitcam.skeleton.sequence import SkeletonSequence

CALIBRATION_DIR = Path("calibration")
FORMAT = "gaitcam-calibration"
VERSION = 1
_FOOT_WORDS = ("foot", "ankle", "heel", "toe")


class CalibrationError(GaitcamError):
    """A calibration file is unreadable or a recording cannot give a floor; names which."""


@dataclass
class Calibration:
    """floor_point = rotation @ camera_point + translation (metres)."""

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))
    sensor: str = ""
    fps: float | None = None  # the sensor's measured frame rate, when calibration measured it
    source: str = "identity"  # how it was made, for whoever reads the file later

    def __post_init__(self) -> None:
        self.rotation = np.asarray(self.rotation, dtype=np.float64).reshape(3, 3)
        self.translation = np.asarray(self.translation, dtype=np.float64).reshape(3)
        if not np.allclose(self.rotation @ self.rotation.T, np.eye(3), atol=1e-6) or np.linalg.det(self.rotation) < 0:
            raise CalibrationError("calibration rotation is not a proper rotation matrix")

    @classmethod
    def from_floor_plane(cls, plane: Iterable[float], sensor: str = "", source: str = "sensor floor plane") -> Calibration:
        """From a floor plane (a, b, c, d) in camera coordinates, a*x + b*y + c*z + d = height
        above the floor (Kinect's FloorClipPlane). The camera's x axis is kept as x, levelled."""
        a, b, c, d = np.asarray(list(plane), dtype=np.float64)
        normal = np.array([a, b, c])
        scale = np.linalg.norm(normal)
        if not np.isfinite([a, b, c, d]).all() or scale < 1e-9:
            raise CalibrationError(f"invalid floor plane {[a, b, c, d]}")
        up = normal / scale
        x = np.array([1.0, 0.0, 0.0]) - up[0] * up
        if np.linalg.norm(x) < 1e-6:  # camera lying on its side: keep its z as z instead
            x = np.cross(up, [0.0, 0.0, 1.0])
        x /= np.linalg.norm(x)
        rotation = np.stack([x, up, np.cross(x, up)])
        return cls(rotation, [0.0, d / scale, 0.0], sensor, None, source)

    @property
    def floor_plane(self) -> np.ndarray:
        """The floor as (a, b, c, d) in camera coordinates (the inverse of `from_floor_plane`)."""
        return np.append(self.rotation[1], self.translation[1])

    def apply(self, joints: np.ndarray) -> np.ndarray:
        """Camera-frame points [..., 3] -> floor frame, float32; NaN stays NaN."""
        return (np.asarray(joints) @ self.rotation.T + self.translation).astype(np.float32)

    def to_dict(self) -> dict:
        """Plain JSON data: the calibration file's content, and a recording's `meta.calibration`
        (whose readers look for "floor")."""
        return {
            "format": FORMAT, "version": VERSION, "sensor": self.sensor, "fps": self.fps,
            "source": self.source, "rotation": self.rotation.tolist(),
            "translation": self.translation.tolist(), "floor": self.floor_plane.tolist(),
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT:
                raise ValueError(f"not a {FORMAT} file")
            if data.get("version") != VERSION:
                raise ValueError(f"unsupported version {data.get('version')!r}")
            return cls(data["rotation"], data["translation"], data.get("sensor", ""), data.get("fps"),
                       data.get("source", str(path)))
        except (OSError, ValueError, KeyError, TypeError, CalibrationError) as e:
            raise CalibrationError(f"{path}: cannot read calibration ({e})") from None


def calibration_path(sensor: str, root: str | Path = CALIBRATION_DIR) -> Path:
    """Where a sensor's calibration lives: calibration/<sensor>.json."""
    return Path(root) / f"{sensor}.json"


def lowest_feet(seq: SkeletonSequence) -> np.ndarray:
    """Each frame's lowest foot point [T', 3] (by camera y), frames without feet left out.

    While walking one foot is always on the floor, so the lowest foot joint traces the floor;
    the swinging foot, above it, never enters the fit.
    """
    feet = [i for i, name in enumerate(seq.layout.joints) if any(w in name.lower() for w in _FOOT_WORDS)]
    if not feet or not len(seq):
        return np.zeros((0, 3))
    points = seq.joints[:, feet].astype(np.float64)
    y = np.where(np.isnan(points[..., 1]), np.inf, points[..., 1])
    lowest = points[np.arange(len(points)), y.argmin(axis=1)]
    return lowest[np.isfinite(lowest).all(axis=1)]


def _plane(points: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Least-squares plane through points: unit normal, offset (n.p + d = 0), singular values."""
    centre = points.mean(axis=0)
    _, s, vt = np.linalg.svd(points - centre, full_matrices=False)
    return vt[2], -float(vt[2] @ centre), s / np.sqrt(len(points))


def estimate_floor(
    sequences: Iterable[SkeletonSequence],
    sensor: str = "",
    tolerance: float = 0.02,
    min_spread: float = 0.15,
    iterations: int = 300,
    seed: int = 0,
) -> Calibration:
    """The floor under people walking round: RANSAC over each frame's lowest foot point, then
    least squares on the inliers (points within `tolerance` metres of the plane). The frame
    rate the recording really ran at (median time step) is kept with it.

    Raises CalibrationError when there are too few foot points or they lie along a line (one
    straight walk fixes no tilt across it): the inliers must spread `min_spread` metres
    (standard deviation) in both floor directions. The floor goes through the foot joints,
    which sensors put a few centimetres above the real floor; all that matters downstream is
    that it is level and the same for every recording of one set-up.
    """
    sequences = list(sequences)
    points = np.concatenate([lowest_feet(s) for s in sequences] or [np.zeros((0, 3))])
    if len(points) < 30:
        raise CalibrationError(f"floor: only {len(points)} frames with feet; record people walking round the room")
    rng = np.random.default_rng(seed)
    best = np.zeros(len(points), dtype=bool)
    for sample in rng.integers(0, len(points), (iterations, 3)):
        a, b, c = points[sample]
        normal = np.cross(b - a, c - a)
        norm = np.linalg.norm(normal)
        if norm < 1e-9:
            continue
        normal /= norm
        inliers = np.abs((points - a) @ normal) < tolerance
        if inliers.sum() > best.sum():
            best = inliers
    for _ in range(2):  # refit on the inliers, then once more on the refit's own inliers
        normal, offset, spread = _plane(points[best])
        best = np.abs(points @ normal + offset) < tolerance
    normal, offset, spread = _plane(points[best])
    if best.sum() < 30 or spread[1] < min_spread:
        raise CalibrationError(
            f"floor: feet cover too little of the floor ({spread[1]:.2f} m across); "
            "walk in several directions and distances from the sensor")
    body = np.concatenate([s.joints.reshape(-1, 3) for s in sequences])
    if np.nanmean(body @ normal + offset) < 0:  # the normal must point up, towards the bodies
        normal, offset = -normal, -offset
    source = f"floor fit: {best.sum()} of {len(points)} foot points within {tolerance * 100:.0f} cm"
    calibration = Calibration.from_floor_plane((*normal, offset), sensor, source)
    steps = np.concatenate([np.diff(s.timestamps) for s in sequences])
    steps = steps[steps > 0]
    calibration.fps = float(1.0 / np.median(steps)) if len(steps) else None
    return calibration
