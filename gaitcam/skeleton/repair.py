"""Joints a sensor did not measure, derived from the joints it did.

Many Kinect v2 installations never track some hand and torso joints, and MediaPipe has no trunk
joints at all. Where the body's geometry pins a joint down, it is computed from its tracked
neighbours and flagged DERIVED; a joint that cannot be derived stays MISSING (NaN), and the
window rule (`skeleton.windows`) then bridges it over a short dropout or ends the window. The
encoder never sees a zero or a NaN standing in for a joint.

Each rule is an affine combination of canonical joints (weights summing to 1, so it moves and
turns with the body), fitted by least squares on 98,000 KGBD frames (Kinect v1, every fifth
frame of all 822 walks; `docs/experiments/derivation_rules.py` refits and prints them). Median
error of each rule on those frames, for scale:

| joint          | from                                  | median error |
|----------------|---------------------------------------|--------------|
| HipCenter      | both hips and Spine                   | 1.4 cm       |
| HipCenter      | both hips (when Spine is missing too) | 5.0 cm       |
| ShoulderCenter | both shoulders and Head               | 5.4 cm       |
| Spine          | HipCenter and ShoulderCenter          | 1.6 cm       |
| Head           | ShoulderCenter and Spine              | 8.7 cm       |
| Hand           | Wrist and Elbow (forearm extended)    | 2.8 cm       |
| Foot           | Ankle and Knee (shin extended)        | 8.2 cm       |

Limb joints (shoulders, elbows, wrists, hips, knees, ankles) are never derived: no neighbour
says where an elbow is.
"""
from __future__ import annotations

import numpy as np

from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.sequence import STATE_MISSING, JointState

Rule = tuple[tuple[str, float], ...]

# Canonical joint -> rules tried in order (the first whose inputs are all present wins). The order
# of the joints matters: HipCenter and ShoulderCenter come first, as Spine and Head use them.
RULES: dict[str, tuple[Rule, ...]] = {
    "HipCenter": ((("HipLeft", 0.309), ("HipRight", 0.300), ("Spine", 0.391)),
                  (("HipLeft", 0.489), ("HipRight", 0.511))),
    "ShoulderCenter": ((("ShoulderLeft", 0.283), ("ShoulderRight", 0.294), ("Head", 0.423)),),
    "Spine": ((("HipCenter", 0.834), ("ShoulderCenter", 0.166)),),
    "Head": ((("ShoulderCenter", 1.399), ("Spine", -0.399)),),
    "HandLeft": ((("WristLeft", 1.276), ("ElbowLeft", -0.276)),),
    "HandRight": ((("WristRight", 1.278), ("ElbowRight", -0.278)),),
    "FootLeft": ((("AnkleLeft", 1.119), ("KneeLeft", -0.119)),),
    "FootRight": ((("AnkleRight", 1.124), ("KneeRight", -0.124)),),
}

DERIVABLE = frozenset(RULES)
"""Canonical joints that can be computed from neighbours when a sensor does not track them."""

_PLAN = [(CANONICAL.index(joint), [(np.array([CANONICAL.index(j) for j, _ in rule]),
                                    np.array([w for _, w in rule], dtype=np.float32)) for rule in rules])
         for joint, rules in RULES.items()]


def mark_missing(joints: np.ndarray, states: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Joints [..., 20, 3] and states [..., 20] with every non-finite joint MISSING and NaN.

    An infinite coordinate is as unusable as a NaN one, and a joint flagged MISSING has no
    position, whatever numbers its slot holds.
    """
    joints = np.array(joints, dtype=np.float32)
    states = (np.full(joints.shape[:-1], JointState.TRACKED, np.int8) if states is None
              else np.array(states, dtype=np.int8))
    missing = ~np.isfinite(joints).all(axis=-1) | (states == STATE_MISSING)
    joints[missing] = np.nan
    states[missing] = JointState.MISSING
    return joints, states


def derive_missing(joints: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill MISSING canonical joints [..., 20, 3] from their neighbours where `RULES` allow.

    Returns new arrays; derived joints are flagged DERIVED. Works on one frame or many at once.
    """
    joints, states = joints.copy(), states.copy()
    if not (states == STATE_MISSING).any():  # most frames: nothing to derive (this runs per person per frame)
        return joints, states
    for target, rules in _PLAN:
        todo = states[..., target] == STATE_MISSING
        for index, weight in rules:
            if not todo.any():
                break
            ok = todo & (states[..., index] != STATE_MISSING).all(axis=-1)
            if ok.any():
                joints[ok, target] = np.einsum("nkc,k->nc", joints[ok][:, index], weight)
                states[ok, target] = JointState.DERIVED
                todo &= ~ok
    return joints, states
