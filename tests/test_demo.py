"""Demo source: distinct, repeatable identities; plausible walking bodies on the floor; a scene
where people overlap, enter and leave with new sensor ids; lost joints; pacing and cost."""
import time

import numpy as np
import pytest

from gaitcam.errors import GaitcamError
from gaitcam.sensors.base import SENSORS, source_class
from gaitcam.sensors.demo import (
    DEMO_FLOOR, DEMO_PEOPLE, DEMO_SCENE, DEMO_STRANGER, DemoSource, body_and_gait, demo_walk,
)
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.normalize import body_frames
from gaitcam.skeleton.sequence import JointState

BONES = CANONICAL.bone_indices()


def _bones(joints: np.ndarray) -> np.ndarray:
    """Median bone lengths [B] over frames."""
    return np.nanmedian(np.linalg.norm(joints[:, BONES[:, 0]] - joints[:, BONES[:, 1]], axis=-1), axis=0)


def _height(joints: np.ndarray) -> np.ndarray:
    a, b, c, d = DEMO_FLOOR
    return joints @ np.array([a, b, c]) + d


def _read_all(source: DemoSource) -> list:
    with source:
        return list(iter(source.read, None))


def test_cast():
    assert len(DEMO_PEOPLE) == 4 and DEMO_STRANGER not in DEMO_PEOPLE
    assert len(set(DEMO_PEOPLE.values())) == 4
    assert DEMO_STRANGER in DEMO_SCENE and len([p for p in DEMO_SCENE if p in DEMO_PEOPLE]) == 3
    assert source_class("demo") is DemoSource and SENSORS["demo"].endswith(":DemoSource")
    with pytest.raises(GaitcamError, match="unknown person 'Zoe'"):
        DemoSource(people=["Ada", "Zoe"])


def test_identity_is_the_body_and_walk_seeds_only_vary_the_walk():
    a1, a2, b1 = demo_walk("Ada", 1, 20), demo_walk("Ada", 2, 20), demo_walk("Ben", 1, 20)
    again = demo_walk("Ada", 1, 20)
    np.testing.assert_array_equal(a1.joints, again.joints)  # reproducible
    assert a1.layout == CANONICAL and a1.source.startswith("demo:Ada")
    assert not np.allclose(a1.joints[:50, 0], a2.joints[:50, 0], atol=0.05)  # another path
    same = np.abs(_bones(a1.joints) - _bones(a2.joints)).max()
    other = np.abs(_bones(a1.joints) - _bones(b1.joints)).max()
    assert same < 0.01 < 0.03 < other
    assert body_and_gait("Ada") == body_and_gait("Ada") != body_and_gait("Ben")


def test_walk_is_a_plausible_walk_in_view():
    seq = demo_walk("Chloe", 3, 30)
    j = seq.joints
    steps = np.diff(seq.timestamps)
    assert np.allclose(steps.min(), 1 / 30) and steps.max() > 0.5  # out of view while turning
    assert 2.0 < np.nanmin(j[:, 0, 2]) and np.nanmax(j[:, 0, 2]) < 4.5  # 2-4 m away
    heights = _height(j)
    ankles = np.nanmin(heights[:, [CANONICAL.index("AnkleLeft"), CANONICAL.index("AnkleRight")]], axis=1)
    assert np.nanmedian(np.abs(ankles - body_and_gait("Chloe")["ankle"])) < 0.02  # stance foot on the floor
    assert 1.4 < np.nanmedian(heights[:, CANONICAL.index("Head")]) < 2.0
    # The body faces where it walks (a right-handed, non-mirrored skeleton).
    hip = j[:, 0]
    moving = np.flatnonzero(np.isclose(steps, 1 / 30) & ~np.isnan(j[:-1]).any((1, 2)) & ~np.isnan(j[1:]).any((1, 2)))
    _, rotation = body_frames(np.stack([j[moving], j[moving + 1]], axis=1))
    velocity = hip[moving + 1] - hip[moving]
    assert np.mean(np.einsum("nc,nc->n", rotation[:, 2], velocity) > 0) > 0.95


def test_lost_joints_are_nan_and_missing():
    seq = demo_walk("Dev", 5, 60)
    lost = np.isnan(seq.joints).any(axis=2)
    assert 0 < lost.any(axis=1).mean() < 0.05
    assert (seq.states[lost] == JointState.MISSING).all() and (seq.states[~lost] == JointState.TRACKED).all()


def test_scene_people_overlap_enter_and_leave_with_new_ids():
    frames = _read_all(DemoSource(seed=3, realtime=False, duration=30))
    assert len(frames) == 900 and frames[-1].time == pytest.approx(899 / 30)
    assert [f.index for f in frames] == list(range(900))
    assert all(f.extras["floor"] == DEMO_FLOOR and f.layout == CANONICAL for f in frames)
    counts = np.array([len(f.bodies) for f in frames])
    assert counts.max() >= 3 and (counts == 0).any()
    # A body id is one continuous appearance: once gone, it never comes back.
    last_seen = {}
    for k, f in enumerate(frames):
        for b in f.bodies:
            assert b.track not in last_seen or last_seen[b.track] == k - 1
            last_seen[b.track] = k
            assert b.joints.shape == (20, 3) and b.joints.dtype == np.float32
    assert len(last_seen) > 2 * len(DEMO_SCENE)  # people came back for several passes


def test_scene_is_repeatable_and_seeded():
    def hips(seed):
        return [b.joints[0].tolist() for f in _read_all(DemoSource(seed=seed, realtime=False, duration=3))
                for b in f.bodies]

    assert hips(1) == hips(1) != hips(2)


def test_realtime_paces_reads_and_forever_without_duration():
    source = DemoSource(fps=50, duration=0.3)
    start = time.monotonic()
    frames = _read_all(source)
    assert len(frames) == 15 and time.monotonic() - start >= 14 / 50 - 0.01
    endless = DemoSource(realtime=False)
    with endless:
        assert all(endless.read() is not None for _ in range(2000))


def test_four_people_cost_well_under_a_millisecond_per_frame():
    source = DemoSource(people=list(DEMO_PEOPLE), realtime=False)
    with source:
        for _ in range(60):  # everyone in view
            source.read()
        start = time.perf_counter()
        bodies = sum(len(source.read().bodies) for _ in range(300))
    per_frame = (time.perf_counter() - start) / 300
    assert bodies > 300 and per_frame < 2e-3  # ~0.5 ms on one loaded core; generous for CI


def test_a_late_reader_gets_the_current_frame_not_a_burst():
    source = DemoSource(fps=50)
    with source:
        assert source.read().index == 0
        time.sleep(0.2)
        late = source.read()
        start = time.monotonic()
        following = [source.read().index for _ in range(5)]
    assert late.index >= 9 and following == list(range(late.index + 1, late.index + 6))
    assert time.monotonic() - start > 0.06  # back at the camera's pace: 5 frames take ~100 ms


def test_the_shipped_demo_recordings_are_what_the_code_writes(tmp_path):
    from gaitcam.config import DEMO_DIR
    from gaitcam.sensors.demo import write_demo_recordings

    for path in write_demo_recordings(tmp_path):
        shipped = DEMO_DIR / path.name
        assert shipped.read_bytes() == path.read_bytes(), path.name
