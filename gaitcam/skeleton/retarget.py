"""Retargeting: any source layout to the canonical 20-joint Kinect v1 layout the model reads.

Each source layout has a declarative table: every canonical joint is either a COPY of one
source joint (keeping its TRACKED / INFERRED / MISSING state) or DERIVED as a weighted mean of
source joints (state DERIVED, or MISSING and NaN as soon as one input is missing, never zeros),
so the app can always tell measured joints from computed ones (`DERIVED_JOINTS`).

Retargeting only maps joints; it never changes axes, units or origin. Sources disagree:
Kinect v1/v2 camera space has y up and x to the sensor's left (metres), Azure Kinect's depth
camera y down (millimetres), MediaPipe world landmarks y down around the hip centre. Bringing
each source into one frame is the sensor backends' and calibration's job, before retargeting.
"""
from __future__ import annotations

from functools import cache

import numpy as np

from gaitcam.skeleton.layouts import (
    AZURE_KINECT, CANONICAL, KGBD, KINECT_V2, LAYOUTS, MEDIAPIPE_POSE,
)
from gaitcam.skeleton.sequence import JointState, SkeletonSequence

Mix = tuple[tuple[str, float], ...]  # (source joint, weight) pairs, weights summing to 1
Rule = str | Mix  # a source joint name is a copy; a Mix is a derived joint

# Kinect v1 puts Spine 0.165 of the way from HipCenter to ShoulderCenter (projected onto that
# segment): the median over all 491,747 KGBD frames, and 0.163-0.168 in each of its 822 walks
# (v1 fits a fixed-proportion body model). Using v1's own proportion rather than an anatomical
# guess puts a derived Spine where the model saw Spine during training.
KINECT_V1_SPINE_FRACTION = 0.165

_SIDES = ("Left", "Right")


def _mean(*joints: str) -> Mix:
    return tuple((j, 1.0 / len(joints)) for j in joints)


def _lerp(a: Mix, b: Mix, t: float) -> Mix:
    """The point a fraction t of the way from mix a to mix b."""
    return tuple((j, (1 - t) * w) for j, w in a) + tuple((j, t * w) for j, w in b)


def _limbs(pattern: str, parts: tuple[str, ...]) -> dict[str, str]:
    """Copies of left and right limb joints whose source names follow a pattern.

    The pattern spells the part and side as {Part} {Side} (as given), {PART} {SIDE} (upper
    case) or {part} {side} (lower case): "{PART}_{SIDE}" maps ElbowLeft to ELBOW_LEFT.
    """
    return {
        f"{part}{side}": pattern.format(
            Part=part, Side=side, PART=part.upper(), SIDE=side.upper(),
            part=part.lower(), side=side.lower(),
        )
        for side in _SIDES for part in parts
    }


_LIMBS = ("Shoulder", "Elbow", "Wrist", "Hand", "Hip", "Knee", "Ankle", "Foot")

_MP_HIPS = _mean("left_hip", "right_hip")
_MP_SHOULDERS = _mean("left_shoulder", "right_shoulder")

TABLES: dict[str, dict[str, Rule]] = {
    # Same 20 joints, the authors' order and names: a pure reorder.
    KGBD.name: {
        "HipCenter": "Hip-centro", "Spine": "Spine", "ShoulderCenter": "Shoulder-Center",
        "Head": "Head", **_limbs("{Part}-{Side}", _LIMBS),
    },
    # v2 keeps v1's limb joints and names, and its trunk joints stand in for v1's: SpineShoulder
    # is v1's ShoulderCenter (base of the neck, between the shoulders). SpineMid sits nearer
    # mid-trunk than v1's low Spine but is a measurement, so it is copied, not re-derived.
    # Neck, hand tips and thumbs are dropped.
    KINECT_V2.name: {
        "HipCenter": "SpineBase", "Spine": "SpineMid", "ShoulderCenter": "SpineShoulder",
        "Head": "Head", **_limbs("{Part}{Side}", _LIMBS),
    },
    # ShoulderCenter = NECK, not SPINE_CHEST: Azure's NECK sits at the base of the neck, level
    # with the shoulders, where v1's ShoulderCenter is; SPINE_CHEST is mid-chest, some 0.2 m
    # lower (it would stretch ShoulderCenter -> Head to about twice v1's). Spine = SPINE_NAVEL,
    # copied like v2's SpineMid. Clavicles, hand tips, thumbs and face points are dropped.
    AZURE_KINECT.name: {
        "HipCenter": "PELVIS", "Spine": "SPINE_NAVEL", "ShoulderCenter": "NECK",
        "Head": "HEAD", **_limbs("{PART}_{SIDE}", _LIMBS),
    },
    # MediaPipe has no trunk joints and no hand or head centre: those are derived. Foot is
    # foot_index (the toe tip, further forward than v1's Foot, but the only forefoot point).
    MEDIAPIPE_POSE.name: {
        "HipCenter": _MP_HIPS,
        "Spine": _lerp(_MP_HIPS, _MP_SHOULDERS, KINECT_V1_SPINE_FRACTION),
        "ShoulderCenter": _MP_SHOULDERS,
        "Head": _mean("left_ear", "right_ear"),
        **_limbs("{side}_{part}", ("Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle")),
        **_limbs("{side}_foot_index", ("Foot",)),
        "HandLeft": _mean("left_index", "left_pinky"),
        "HandRight": _mean("right_index", "right_pinky"),
    },
}

DERIVED_JOINTS: dict[str, tuple[str, ...]] = {
    layout: tuple(j for j in CANONICAL.joints if not isinstance(table[j], str))
    for layout, table in TABLES.items()
}
"""Layout name -> canonical joints that source does not measure (retargeting computes them)."""


@cache
def _plan(layout_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A layout's table as arrays: source indices [20, K], weights [20, K], derived mask [20].

    Short rules are padded with their own first input at weight 0, so padding adds nothing
    yet never brings in a NaN from an unrelated joint.
    """
    layout, table = LAYOUTS[layout_name], TABLES[layout_name]
    rules = [((rule, 1.0),) if isinstance(rule, str) else rule
             for rule in (table[j] for j in CANONICAL.joints)]
    k = max(len(r) for r in rules)
    index = np.array([[layout.index(s) for s, _ in r] + [layout.index(r[0][0])] * (k - len(r))
                      for r in rules], dtype=np.int64)
    weight = np.array([[w for _, w in r] + [0.0] * (k - len(r)) for r in rules], dtype=np.float32)
    derived = np.array([not isinstance(table[j], str) for j in CANONICAL.joints])
    return index, weight, derived


def to_canonical(seq: SkeletonSequence) -> SkeletonSequence:
    """The same frames in the canonical layout (seq itself if already canonical).

    Raises ValueError for a layout with no retargeting table.
    """
    if seq.layout == CANONICAL:
        return seq
    # Compare whole layouts, not just names: a look-alike with another joint order would
    # otherwise be mapped with the wrong indices.
    if seq.layout.name not in TABLES or LAYOUTS[seq.layout.name] != seq.layout:
        raise ValueError(
            f"no retargeting table for joint layout {seq.layout.name!r} "
            f"({seq.layout.n_joints} joints); supported: {', '.join(sorted(TABLES))}"
        )
    index, weight, derived = _plan(seq.layout.name)
    # A joint flagged MISSING counts as missing even if its coordinates are not NaN.
    src = np.where((seq.states == JointState.MISSING)[..., None], np.nan, seq.joints)
    joints = np.einsum("tjkc,jk->tjc", src[:, index], weight)  # [T, 20, K, 3] -> [T, 20, 3]
    states = np.where(derived, np.int8(JointState.DERIVED), seq.states[:, index[:, 0]])
    # SkeletonSequence marks every NaN joint MISSING, whichever rule produced it.
    return SkeletonSequence(joints, seq.timestamps, CANONICAL, states, seq.source)
