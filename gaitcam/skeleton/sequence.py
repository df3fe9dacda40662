"""A skeleton sequence: what every reader and sensor produces, whatever its joint layout."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from functools import cache

import numpy as np

from gaitcam.skeleton.layouts import JointLayout


@cache  # called for every batch the live encoder averages with its mirror image
def mirror_index(layout: JointLayout) -> np.ndarray:
    """For each joint of `layout`, the index of its other-side twin (itself for centre joints)."""
    def twin(name: str) -> str:
        for left, right in (("Left", "Right"), ("left", "right"), ("LEFT", "RIGHT")):
            name = name.replace(left, "#").replace(right, left).replace("#", right)
        return name
    return np.array([layout.joints.index(twin(j)) for j in layout.joints])


def mirror_joints(joints: np.ndarray, layout: JointLayout) -> np.ndarray:
    """Joints [..., J, 3] as a mirrored camera reports them: x negated, and each left joint named
    right and vice versa (a pose estimator names the mirror image's limbs)."""
    return np.asarray(joints)[..., mirror_index(layout), :] * np.array([-1, 1, 1], np.float32)


class JointState(IntEnum):
    """How much to trust one joint of one frame.

    Kinect-style sensors report tracked / inferred / not tracked; retargeting adds DERIVED for
    canonical joints a source does not measure (computed from neighbours), so nothing invented
    is ever mistaken for a measurement.
    """

    MISSING = 0  # no position (NaN in `joints`)
    INFERRED = 1  # the sensor's guess (Kinect "Inferred", low MediaPipe visibility)
    TRACKED = 2  # measured
    DERIVED = 3  # not measured by this source: computed from measured neighbours


# The states as plain ints for the comparisons made for every person in every frame (the window
# rule, joint repair): comparing an array with an IntEnum member converts the member each time.
STATE_MISSING, STATE_TRACKED, STATE_DERIVED = int(JointState.MISSING), int(JointState.TRACKED), int(JointState.DERIVED)


@dataclass
class SkeletonSequence:
    """Frames of one person: joints [T, J, 3] float32 metres, timestamps [T] seconds, states [T, J].

    Missing joints are NaN in `joints` and MISSING in `states`, never zeros.
    """

    joints: np.ndarray
    timestamps: np.ndarray
    layout: JointLayout
    states: np.ndarray = field(default=None)  # type: ignore[assignment]
    source: str = ""

    def __post_init__(self) -> None:
        self.joints = np.asarray(self.joints, dtype=np.float32)
        self.timestamps = np.asarray(self.timestamps, dtype=np.float64)
        t, j = self.joints.shape[:2]
        if self.joints.ndim != 3 or self.joints.shape[2] != 3:
            raise ValueError(f"joints must be [T, J, 3], got {self.joints.shape}")
        if j != self.layout.n_joints:
            raise ValueError(f"{self.layout.name} has {self.layout.n_joints} joints, got {j}")
        if self.timestamps.shape != (t,):
            raise ValueError(f"timestamps must be [{t}], got {self.timestamps.shape}")
        if self.states is None:
            self.states = np.full((t, j), JointState.TRACKED, dtype=np.int8)
        self.states = np.asarray(self.states, dtype=np.int8)
        self.states[np.isnan(self.joints).any(axis=2)] = JointState.MISSING

    def __len__(self) -> int:
        return len(self.joints)

    def mirrored(self) -> SkeletonSequence:
        """The walk as a mirrored camera would report it (`mirror_joints`)."""
        swap = mirror_index(self.layout)
        return SkeletonSequence(mirror_joints(self.joints, self.layout), self.timestamps, self.layout,
                                self.states[:, swap], self.source)

    @property
    def missing_fraction(self) -> float:
        """Share of joint positions that are MISSING (a quality measure for enrolment)."""
        return float((self.states == JointState.MISSING).mean()) if len(self) else 1.0
