"""Retargeting: every source layout lands on a plausible canonical skeleton, copies stay exact,
computed joints are flagged, and a missing input never turns into a made-up position."""
import gzip
import itertools
import re

import numpy as np
import pytest

from gaitcam.skeleton.layouts import (
    AZURE_KINECT, CANONICAL, KGBD, KINECT_V2, LAYOUTS, MEDIAPIPE_POSE, JointLayout,
)
from gaitcam.skeleton.retarget import (
    DERIVED_JOINTS, KINECT_V1_SPINE_FRACTION, TABLES, to_canonical,
)
from gaitcam.skeleton.sequence import JointState, SkeletonSequence

from conftest import KGBD_ROOT

REAL_WALK = KGBD_ROOT / "Data" / "Person001" / "1.txt.gz"
needs_kgbd = pytest.mark.skipif(not REAL_WALK.is_file(), reason="KGBD data not available")

SIDES = ("Left", "Right")
LIMBS = ("Shoulder", "Elbow", "Wrist", "Hand", "Hip", "Knee", "Ankle", "Foot")
SOURCES = (KGBD, KINECT_V2, AZURE_KINECT, MEDIAPIPE_POSE)

# Plausible canonical bone lengths (m). Wide enough for every sensor's idea of a joint: Kinect
# v1's hips sit ~5 cm from HipCenter (MediaPipe's anatomical ones ~9 cm) and its shins measure
# short (KGBD median 0.36 m); v2's SpineMid and Azure's SPINE_NAVEL sit higher than v1's Spine;
# MediaPipe's Foot is the toe tip.
BONE_RANGE = {
    ("HipCenter", "Spine"): (0.03, 0.30),
    ("Spine", "ShoulderCenter"): (0.15, 0.55),
    ("ShoulderCenter", "Head"): (0.10, 0.35),
    **{(a, f"{b}{s}"): r for s in SIDES for a, b, r in (
        ("ShoulderCenter", "Shoulder", (0.08, 0.30)),
        (f"Shoulder{s}", "Elbow", (0.18, 0.40)),  # upper arm
        (f"Elbow{s}", "Wrist", (0.15, 0.35)),  # forearm
        (f"Wrist{s}", "Hand", (0.03, 0.15)),
        ("HipCenter", "Hip", (0.03, 0.20)),
        (f"Hip{s}", "Knee", (0.30, 0.60)),  # thigh
        (f"Knee{s}", "Ankle", (0.25, 0.55)),  # shin
        (f"Ankle{s}", "Foot", (0.04, 0.25)),
    )},
}

# Which source joint each canonical joint copies (written out here, independently of the
# tables under test). MediaPipe's other canonical joints are derived.
COPIES = {
    "kgbd": {
        "HipCenter": "Hip-centro", "Spine": "Spine", "ShoulderCenter": "Shoulder-Center",
        "Head": "Head", **{f"{p}{s}": f"{p}-{s}" for p in LIMBS for s in SIDES},
    },
    "kinect_v2": {
        "HipCenter": "SpineBase", "Spine": "SpineMid", "ShoulderCenter": "SpineShoulder",
        "Head": "Head", **{f"{p}{s}": f"{p}{s}" for p in LIMBS for s in SIDES},
    },
    "azure_kinect": {
        "HipCenter": "PELVIS", "Spine": "SPINE_NAVEL", "ShoulderCenter": "NECK", "Head": "HEAD",
        **{f"{p}{s}": f"{p.upper()}_{s.upper()}" for p in LIMBS for s in SIDES},
    },
    "mediapipe_pose": {
        **{f"{p}{s}": f"{s.lower()}_{p.lower()}"
           for p in ("Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle") for s in SIDES},
        "FootLeft": "left_foot_index", "FootRight": "right_foot_index",
    },
}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return a + t * (b - a)


def _bone_lengths(joints: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    b = CANONICAL.bone_indices()
    lengths = np.linalg.norm(joints[:, b[:, 0]] - joints[:, b[:, 1]], axis=-1)
    return dict(zip(CANONICAL.bones, lengths.T))


def _plausible(joints: np.ndarray) -> np.ndarray:
    """Per frame: every canonical bone within BONE_RANGE."""
    return np.all([(lo <= bl) & (bl <= hi) for bone, bl in _bone_lengths(joints).items()
                   for lo, hi in [BONE_RANGE[bone]]], axis=0)


def _kgbd_canonical(n: int = 4, scan: int = 60) -> np.ndarray:
    """The first n plausible frames of a real KGBD walk, [n, 20, 3] in canonical order.

    A tiny parser of `Name;x;y;z` lines (the real reader is gaitcam.recording.kgbd). The walk's
    first 23 frames hold a tracking glitch (left shoulder up to 0.40 m from ShoulderCenter, then
    shoulders 0.13 m apart), so these are the first frames whose bones are all plausible and
    whose shoulders are at least 0.2 m apart, not simply frames 0..n-1.
    """
    with gzip.open(REAL_WALK, "rt") as f:
        rows = [line.strip().split(";") for line in itertools.islice(f, 20 * scan)]
    names = np.array([r[0] for r in rows]).reshape(scan, 20)
    assert (names == KGBD.joints).all()
    frames = np.array([r[1:] for r in rows], dtype=np.float32).reshape(scan, 20, 3)
    kgbd_name = {"HipCenter": "Hip-centro", "ShoulderCenter": "Shoulder-Center"}
    order = [KGBD.index(kgbd_name.get(j, re.sub(r"(Left|Right)$", r"-\1", j)))
             for j in CANONICAL.joints]
    canonical = frames[:, order]
    shoulders = np.linalg.norm(canonical[:, 4] - canonical[:, 8], axis=-1)
    good = np.flatnonzero(_plausible(canonical) & (shoulders >= 0.2))
    assert len(good) >= n, "too few plausible frames at the start of the walk"
    return canonical[good[:n]]


def _synthesise(canonical: np.ndarray, layout: JointLayout) -> np.ndarray:
    """A realistic [T, J, 3] skeleton in `layout`, joints placed anatomically around a real
    canonical one: copies where the sensor has the same joint, plausible offsets otherwise."""
    c = {name: canonical[:, i] for i, name in enumerate(CANONICAL.joints)}
    up = _unit(c["ShoulderCenter"] - c["HipCenter"])
    lateral = c["ShoulderLeft"] - c["ShoulderRight"] + c["HipLeft"] - c["HipRight"]
    left = _unit(lateral - (lateral * up).sum(-1, keepdims=True) * up)
    fwd = np.cross(left, up)  # right-handed camera space: left x up = the way the body faces
    head = c["Head"]
    p: dict[str, np.ndarray] = {}

    if layout is KGBD:
        p = {kgbd: c[canon] for canon, kgbd in COPIES["kgbd"].items()}
    elif layout is KINECT_V2:
        p = {name: c[name] for name in COPIES["kinect_v2"].values() if name in c}
        p.update(SpineBase=c["HipCenter"], SpineShoulder=c["ShoulderCenter"],
                 SpineMid=_lerp(c["HipCenter"], c["ShoulderCenter"], 0.5),
                 Neck=_lerp(c["ShoulderCenter"], head, 0.45))
        for s in SIDES:
            hand, wrist = c[f"Hand{s}"], c[f"Wrist{s}"]
            p[f"HandTip{s}"] = hand + 0.07 * _unit(hand - wrist)
            p[f"Thumb{s}"] = _lerp(wrist, hand, 0.5) + 0.04 * fwd
    elif layout is AZURE_KINECT:
        p = {azure: c[canon] for canon, azure in COPIES["azure_kinect"].items()}
        p.update(SPINE_NAVEL=_lerp(c["HipCenter"], c["ShoulderCenter"], 0.35),
                 SPINE_CHEST=_lerp(c["HipCenter"], c["ShoulderCenter"], 0.65),
                 NOSE=head + 0.09 * fwd - 0.02 * up)
        for s, out in zip(SIDES, (left, -left)):
            hand, wrist, side = c[f"Hand{s}"], c[f"Wrist{s}"], s.upper()
            p[f"CLAVICLE_{side}"] = _lerp(c["ShoulderCenter"], c[f"Shoulder{s}"], 0.3) - 0.03 * up
            p[f"HANDTIP_{side}"] = hand + 0.07 * _unit(hand - wrist)
            p[f"THUMB_{side}"] = _lerp(wrist, hand, 0.5) + 0.04 * fwd
            p[f"EYE_{side}"] = head + 0.07 * fwd + 0.03 * up + 0.032 * out
            p[f"EAR_{side}"] = head + 0.075 * out
    elif layout is MEDIAPIPE_POSE:
        p = {mp: c[canon] for canon, mp in COPIES["mediapipe_pose"].items()}
        p["nose"] = head + 0.10 * fwd - 0.02 * up
        for s, out in zip(SIDES, (left, -left)):
            hand, wrist, side = c[f"Hand{s}"], c[f"Wrist{s}"], s.lower()
            ankle, along = c[f"Ankle{s}"], _unit(hand - wrist)
            p[f"{side}_hip"] = c[f"Hip{s}"] + 0.04 * out  # anatomical hip: wider than Kinect's
            p[f"{side}_index"] = wrist + 0.09 * along + 0.02 * fwd  # knuckles, ~9 cm out
            p[f"{side}_pinky"] = wrist + 0.08 * along - 0.02 * fwd
            p[f"{side}_thumb"] = wrist + 0.05 * along + 0.04 * fwd
            p[f"{side}_heel"] = ankle - 0.06 * fwd - 0.05 * up
            p[f"{side}_foot_index"] = _lerp(ankle, c[f"Foot{s}"], 1.8)  # the toe tip
            p[f"{side}_ear"] = head + 0.075 * out
            p[f"mouth_{side}"] = head + 0.08 * fwd - 0.06 * up + 0.025 * out
            for eye, dx in (("eye_inner", 0.015), ("eye", 0.03), ("eye_outer", 0.045)):
                p[f"{side}_{eye}"] = head + 0.08 * fwd + 0.03 * up + dx * out
    assert set(p) == set(layout.joints)
    return np.stack([p[name] for name in layout.joints], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def canonical_frames() -> np.ndarray:
    if not REAL_WALK.is_file():
        pytest.skip("KGBD data not available")
    return _kgbd_canonical()


def _seq(joints: np.ndarray, layout: JointLayout, states: np.ndarray | None = None):
    return SkeletonSequence(joints, np.arange(len(joints)) / 30.0, layout, states, source="test")


@needs_kgbd
def test_synthetic_sources_face_forward(canonical_frames):
    """Guards the synthesis: feet point the way the body faces, so face offsets are in front."""
    c = canonical_frames
    up = _unit(c[:, 2] - c[:, 0])
    left = _unit(c[:, 4] - c[:, 8] + c[:, 12] - c[:, 16])
    toes = c[:, [15, 19]] - c[:, [14, 18]]
    assert ((toes * np.cross(left, up)[:, None]).sum(-1) > 0).all()


@needs_kgbd
@pytest.mark.parametrize("layout", SOURCES, ids=lambda layout: layout.name)
def test_every_source_retargets_to_a_plausible_skeleton(canonical_frames, layout):
    source = _synthesise(canonical_frames, layout)
    out = to_canonical(_seq(source, layout))

    assert out.layout is CANONICAL and out.joints.shape == (len(source), 20, 3)
    assert out.joints.dtype == np.float32 and np.isfinite(out.joints).all()
    for bone, lengths in _bone_lengths(out.joints).items():
        lo, hi = BONE_RANGE[bone]
        assert ((lo <= lengths) & (lengths <= hi)).all(), f"{layout.name} {bone}: {lengths}"
    for canon, src in COPIES[layout.name].items():
        assert np.array_equal(out.joints[:, CANONICAL.index(canon)], source[:, layout.index(src)])
        assert (out.states[:, CANONICAL.index(canon)] == JointState.TRACKED).all()
    derived = [CANONICAL.index(j) for j in DERIVED_JOINTS[layout.name]]
    assert (out.states[:, derived] == JointState.DERIVED).all()
    assert set(COPIES[layout.name]) | set(DERIVED_JOINTS[layout.name]) == set(CANONICAL.joints)


@needs_kgbd
def test_mediapipe_derived_joints_follow_their_rules(canonical_frames):
    source = _synthesise(canonical_frames, MEDIAPIPE_POSE)
    out = to_canonical(_seq(source, MEDIAPIPE_POSE))

    def mp(*names):
        return source[:, [MEDIAPIPE_POSE.index(n) for n in names]].mean(axis=1)

    def canon(name):
        return out.joints[:, CANONICAL.index(name)]

    hips, shoulders = mp("left_hip", "right_hip"), mp("left_shoulder", "right_shoulder")
    np.testing.assert_allclose(canon("HipCenter"), hips, atol=1e-6)
    np.testing.assert_allclose(canon("ShoulderCenter"), shoulders, atol=1e-6)
    np.testing.assert_allclose(
        canon("Spine"), _lerp(hips, shoulders, KINECT_V1_SPINE_FRACTION), atol=1e-6)
    np.testing.assert_allclose(canon("Head"), mp("left_ear", "right_ear"), atol=1e-6)
    np.testing.assert_allclose(canon("HandLeft"), mp("left_index", "left_pinky"), atol=1e-6)
    np.testing.assert_allclose(canon("HandRight"), mp("right_index", "right_pinky"), atol=1e-6)
    assert set(DERIVED_JOINTS["mediapipe_pose"]) == {
        "HipCenter", "Spine", "ShoulderCenter", "Head", "HandLeft", "HandRight"}


@needs_kgbd
def test_kgbd_to_canonical_is_an_exact_reorder(canonical_frames):
    source = _synthesise(canonical_frames, KGBD)
    states = np.full(source.shape[:2], JointState.TRACKED, dtype=np.int8)
    states[:, KGBD.index("Knee-Left")] = JointState.INFERRED
    out = to_canonical(_seq(source, KGBD, states))

    order = [KGBD.index(COPIES["kgbd"][j]) for j in CANONICAL.joints]
    assert np.array_equal(out.joints, source[:, order])
    assert np.array_equal(out.states, states[:, order])
    assert np.array_equal(out.joints[:, 0], source[:, KGBD.index("Hip-centro")])
    assert all(DERIVED_JOINTS[name] == () for name in ("kgbd", "kinect_v2", "azure_kinect"))


@needs_kgbd
def test_missing_input_spoils_only_the_joints_that_need_it(canonical_frames):
    source = _synthesise(canonical_frames, MEDIAPIPE_POSE)
    full = to_canonical(_seq(source, MEDIAPIPE_POSE))
    holed = source.copy()
    holed[1, MEDIAPIPE_POSE.index("left_ear")] = np.nan
    holed[2, MEDIAPIPE_POSE.index("left_hip")] = np.nan
    out = to_canonical(_seq(holed, MEDIAPIPE_POSE))

    lost = {(1, "Head"), (2, "HipCenter"), (2, "Spine"), (2, "HipLeft")}
    for t in range(len(source)):
        for j, name in enumerate(CANONICAL.joints):
            if (t, name) in lost:
                assert np.isnan(out.joints[t, j]).all() and out.states[t, j] == JointState.MISSING
            else:
                assert np.array_equal(out.joints[t, j], full.joints[t, j])
                assert out.states[t, j] == full.states[t, j]


@needs_kgbd
def test_copies_keep_the_source_state_and_missing_never_becomes_zeros(canonical_frames):
    source = _synthesise(canonical_frames, AZURE_KINECT)
    states = np.full(source.shape[:2], JointState.TRACKED, dtype=np.int8)
    states[:, AZURE_KINECT.index("ELBOW_LEFT")] = JointState.INFERRED
    source[0, AZURE_KINECT.index("KNEE_RIGHT")] = np.nan
    # A backend that leaves zeros under a MISSING flag still yields NaN, not the origin.
    source[1, AZURE_KINECT.index("NECK")] = 0.0
    states[1, AZURE_KINECT.index("NECK")] = JointState.MISSING
    out = to_canonical(_seq(source, AZURE_KINECT, states))

    assert (out.states[:, CANONICAL.index("ElbowLeft")] == JointState.INFERRED).all()
    for t, name in ((0, "KneeRight"), (1, "ShoulderCenter")):
        assert np.isnan(out.joints[t, CANONICAL.index(name)]).all()
        assert out.states[t, CANONICAL.index(name)] == JointState.MISSING
    assert np.isfinite(out.joints[2:]).all()


def test_canonical_input_is_returned_unchanged():
    seq = _seq(np.zeros((3, 20, 3), np.float32), CANONICAL)
    assert to_canonical(seq) is seq


def test_metadata_is_kept_and_empty_sequences_work():
    seq = _seq(np.zeros((0, 33, 3), np.float32), MEDIAPIPE_POSE)
    out = to_canonical(seq)
    assert out.joints.shape == (0, 20, 3) and out.states.shape == (0, 20)
    assert out.source == "test"
    seq = _seq(np.ones((2, 25, 3), np.float32), KINECT_V2)
    assert np.array_equal(to_canonical(seq).timestamps, seq.timestamps)


def test_layout_without_a_table_raises():
    openpose = JointLayout("openpose_body25", tuple(f"j{i}" for i in range(25)), ())
    with pytest.raises(ValueError, match="no retargeting table for joint layout 'openpose_body25'"):
        to_canonical(_seq(np.zeros((1, 25, 3), np.float32), openpose))
    # Same name as a known layout but another joint order: refused, not mis-mapped.
    lookalike = JointLayout("kgbd", KGBD.joints[::-1], ())
    with pytest.raises(ValueError, match="no retargeting table"):
        to_canonical(_seq(np.zeros((1, 20, 3), np.float32), lookalike))


def test_tables_cover_every_layout_and_joint():
    assert set(TABLES) == set(DERIVED_JOINTS) == set(LAYOUTS) - {CANONICAL.name}
    for name, table in TABLES.items():
        assert set(table) == set(CANONICAL.joints)
        for rule in table.values():
            inputs = [rule] if isinstance(rule, str) else [j for j, _ in rule]
            assert set(inputs) <= set(LAYOUTS[name].joints)
            if not isinstance(rule, str):
                weights = [w for _, w in rule]
                assert min(weights) > 0 and sum(weights) == pytest.approx(1.0)
