"""MediaPipe poses (`pose2d.Pose2D`) as 3-D bodies in Kinect camera space, with or without depth.

Two routes, one per kind of camera:

- Plain colour cameras (webcam, video): MediaPipe's world landmarks are metric but centred on
  the person's own hips, so on their own every person would stand at the camera's origin and
  nothing could tell two people apart, or show one walking across the room. `BodyPlacer`
  puts them where the image says they are: the translation that makes the world landmarks
  project onto the image landmarks through a pinhole camera (linear least squares), with each
  person's distance smoothed over frames. With the real focal length unknown (a guessed field
  of view) and MediaPipe's metric scale coming from an average body, that position is
  approximate: good enough to follow people and see them move, with distances off by the
  field-of-view guess (and a tall person looks nearer). Joint positions relative to the hips,
  what the gait model reads, do not depend on it.
- RGB-D cameras (realsense, orbbec): `depth_body` lifts each image landmark with the aligned
  depth (rs2_deproject_pixel_to_point), so positions are measured. A landmark with no valid
  depth under it, outside the image, or far in front of or behind the torso (a thin arm
  missed, the wall behind seen instead) is MISSING rather than guessed. The joints lie on the
  body's visible surface, a few centimetres nearer the camera than a Kinect's skeleton.

States: seen landmarks (visibility and presence >= 0.5) are TRACKED, landmarks inside the image
but occluded are INFERRED (MediaPipe's guess, like Kinect's inferred joints), landmarks outside
the image are MISSING. A body's `track` is the estimator's person number: like a Kinect's body
id, it follows one person from frame to frame in the image, which stays reliable where a placed
body's depth jitters (people far away and small).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gaitcam.sensors.base import Body, Frame
from gaitcam.sensors.camera import Intrinsics, deproject, optical_to_kinect
from gaitcam.sensors.pose2d import VISIBLE, Pose2D
from gaitcam.skeleton.layouts import MEDIAPIPE_POSE
from gaitcam.skeleton.sequence import JointState

# The torso's landmarks (shoulders and hips): the depth every other landmark is checked against.
_TORSO = [MEDIAPIPE_POSE.index(j) for j in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]
# No joint of a standing or walking person is further than this in front of or behind the torso.
MAX_DEPTH_OFFSET = 0.8  # metres
# Depth is read as the median of the valid pixels in a (2r+1)^2 window: single pixels at a
# landmark are often holes or edge noise.
_DEPTH_WINDOW = 2
# At least this many seen landmarks to solve for a body's position from its image.
_MIN_PLACED = 6


def joint_states(pose: Pose2D) -> np.ndarray:
    """[33] int8 JointState from MediaPipe's visibility and presence."""
    states = np.where(pose.seen, JointState.TRACKED, JointState.INFERRED).astype(np.int8)
    states[pose.presence < VISIBLE] = JointState.MISSING
    return states


class BodyPlacer:
    """World landmarks placed in Kinect camera space, frame after frame.

    The distance read off a small person's image jitters by a few per cent from frame to frame
    (+- 0.5 m at 15 m, +- 1 m at 25 m for the people in vtest.avi): far more than anyone walks
    in a frame, and enough for the app's tracker to take one person for two. So each person's
    body is slid along its viewing ray to an exponentially smoothed distance (`weight`: the
    newest reading's share) that moves at most `max_step` metres a frame (None: no limit; a
    walker covers 0.15 m a frame at 10 fps); where it appears in the image does not change.
    A person no longer followed is remembered for `keep` frames (`keep_only` once a frame), so
    someone found again after a moment carries on from their distance (the limit growing with
    the frames missed) instead of jumping to a fresh reading.
    """

    def __init__(self, weight: float = 0.3, max_step: float | None = None, keep: int = 0) -> None:
        if not 0 < weight <= 1:
            raise ValueError(f"weight must be in (0, 1], got {weight}")
        if max_step is not None and not max_step > 0:
            raise ValueError(f"max_step must be > 0 metres, got {max_step}")
        if keep < 0:
            raise ValueError(f"keep must be >= 0 frames, got {keep}")
        self.weight, self.max_step, self.keep = weight, max_step, keep
        self._distance: dict[int, float] = {}  # person -> smoothed distance of the hip centre
        self._missed: dict[int, int] = {}  # person -> frames since they were last followed

    def place(self, pose: Pose2D, intrinsics: Intrinsics) -> Body | None:
        """The pose's body, or None if too little of it is seen to place it."""
        seen = pose.seen
        if seen.sum() < _MIN_PLACED:
            return None
        shift = _translation(pose.world[seen], pose.pixels[seen], intrinsics)
        if shift is None:
            return None
        if pose.person:
            last = self._distance.get(pose.person, shift[2])
            distance = last + self.weight * (shift[2] - last)
            if self.max_step is not None:
                limit = self.max_step * (1 + self._missed.get(pose.person, 0))
                distance = min(max(distance, last - limit), last + limit)
            self._distance[pose.person] = distance
            shift = shift * (distance / shift[2])
        return _body(pose, pose.world + shift)

    def keep_only(self, people: set[int]) -> None:
        """A frame has passed in which `people` were followed: forget whoever has not been
        followed for more than `keep` frames."""
        for person in list(self._distance):
            missed = 0 if person in people else self._missed.get(person, 0) + 1
            if missed > self.keep:
                del self._distance[person]
                self._missed.pop(person, None)
            else:
                self._missed[person] = missed

    def distance(self, person: int) -> float | None:
        """The smoothed distance of `person`'s hip centre (metres), if they are remembered."""
        return self._distance.get(person)


def depth_body(pose: Pose2D, depth: np.ndarray, intrinsics: Intrinsics) -> Body | None:
    """Image landmarks lifted with a depth image [H, W] in metres (0 or NaN where none) that is
    aligned to the colour image; None if no torso landmark has depth."""
    z = _depth_at(depth, pose.pixels)
    torso = z[_TORSO]
    if np.isnan(torso).all():
        return None
    z[np.abs(z - np.nanmedian(torso)) > MAX_DEPTH_OFFSET] = np.nan
    return _body(pose, deproject(pose.pixels, z, intrinsics))


def pose_frame(
    poses: list[Pose2D], lift: Callable[[Pose2D], Body | None], time: float, index: int, image: np.ndarray,
) -> Frame:
    """A Frame of the poses that lift to bodies, in the MEDIAPIPE_POSE layout.

    `extras["image_points"]` [n, 33, 2] holds each body's landmarks in image pixels, for drawing
    on the camera image and for telling people apart by where they are in it.
    """
    kept = [(pose, body) for pose in poses if (body := lift(pose)) is not None]
    points = np.array([pose.pixels for pose, _ in kept], dtype=np.float32).reshape(-1, MEDIAPIPE_POSE.n_joints, 2)
    return Frame(time, [body for _, body in kept], MEDIAPIPE_POSE, image=image, index=index,
                 extras={"image_points": points})


def _body(pose: Pose2D, optical: np.ndarray) -> Body:
    """Optical-axis points [33, 3] metres -> a Body in Kinect camera space; NaN where MISSING."""
    states = joint_states(pose)
    states[np.isnan(optical).any(axis=1)] = JointState.MISSING
    joints = optical_to_kinect(optical).astype(np.float32)
    joints[states == JointState.MISSING] = np.nan
    return Body(pose.person or None, joints, states)


def _translation(world: np.ndarray, pixels: np.ndarray, k: Intrinsics) -> np.ndarray | None:
    """t minimising the reprojection error of world + t onto pixels, linearised:
    fx (X + tx) = (u - cx)(Z + tz) and fy (Y + ty) = (v - cy)(Z + tz) for every landmark."""
    u, v = pixels[:, 0] - k.cx, pixels[:, 1] - k.cy
    n = len(world)
    a = np.zeros((2 * n, 3))
    a[:n, 0], a[:n, 2] = k.fx, -u
    a[n:, 1], a[n:, 2] = k.fy, -v
    b = np.concatenate([u * world[:, 2] - k.fx * world[:, 0], v * world[:, 2] - k.fy * world[:, 1]])
    shift = np.linalg.lstsq(a, b, rcond=None)[0]
    return shift if shift[2] > 0 else None  # a body behind the camera is no solution


def _depth_at(depth: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """[33] median valid depth round each pixel; NaN outside the image or with no valid depth."""
    h, w = depth.shape
    r = _DEPTH_WINDOW
    z = np.full(len(pixels), np.nan)
    for j, (x, y) in enumerate(np.round(pixels).astype(np.int64)):
        if 0 <= x < w and 0 <= y < h:
            patch = depth[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1]
            valid = patch[np.isfinite(patch) & (patch > 0)]
            if valid.size:
                z[j] = np.median(valid)
    return z
