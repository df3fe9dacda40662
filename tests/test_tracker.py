"""Tracker: walkers without sensor ids keep their ids through crossings and short losses, new
people get new ids that are never re-used, sensor ids are kept apart per sensor and per use."""
import numpy as np
import pytest

from gaitcam.stream.tracker import Tracker

DT = 1 / 30


def _run(tracker, frames, sensor_ids=None, sensor=""):
    """Update once per frame (a list of positions, possibly empty); the ids and ended lists."""
    ids, ended = [], []
    for k, positions in enumerate(frames):
        sid = [None] * len(positions) if sensor_ids is None else sensor_ids[k]
        update = tracker.update(k * DT, np.array(positions, dtype=float).reshape(-1, 3), sid, sensor)
        ids.append(update.ids)
        ended.append(update.ended)
    return ids, ended


@pytest.mark.parametrize("depth_offset", [0.0, 0.1])
def test_crossing_walkers_keep_their_ids(depth_offset):
    t = np.arange(90) * DT
    a = np.stack([-1.5 + 1.3 * t, np.zeros(90), np.full(90, 3.0)], 1)  # left to right
    b = np.stack([1.53 - 1.2 * t, np.zeros(90), np.full(90, 3.0 + depth_offset)], 1)  # right to left
    assert np.abs(a - b).sum(axis=1).min() < 0.04 + depth_offset  # they pass within 4 cm
    frames = [[a[k], b[k]] if k % 2 else [b[k], a[k]] for k in range(90)]  # input order changes
    ids, _ = _run(Tracker(), frames)
    a_ids = {row[0] if k % 2 else row[1] for k, row in enumerate(ids)}
    b_ids = {row[1] if k % 2 else row[0] for k, row in enumerate(ids)}
    assert a_ids == {2} and b_ids == {1}  # b came first in frame 0


def test_leaving_ends_the_track_and_a_newcomer_gets_a_new_id():
    tracker = Tracker(max_missed=5)
    walk = [[[x, 0.0, 3.0]] for x in np.arange(20) * 0.04]
    ids, ended = _run(tracker, walk + [[]] * 8 + [[[0.75, 0.0, 3.0]]] * 3)
    assert {i for row in ids[:20] for i in row} == {1}
    assert [k for k, e in enumerate(ended) if e] == [25] and ended[25] == [1]  # after 6 missed frames
    assert ids[-1] == [2] and tracker.active == [2] and tracker.created == 2


def test_a_short_loss_is_bridged_by_the_predicted_motion():
    frames = [[[x, 0.0, 3.0]] for x in np.arange(30) * 0.05]
    for k in range(10, 15):
        frames[k] = []  # 5 frames occluded: 0.3 m travelled meanwhile, beyond a static gate
    ids, ended = _run(Tracker(max_distance=0.2, max_missed=10), frames)
    assert {i for row in ids for i in row} == {1} and not any(ended)


def test_someone_far_away_is_someone_else():
    ids, _ = _run(Tracker(), [[[0, 0, 3]], [[0.02, 0, 3]], [[2.0, 0, 3]]])
    assert ids == [[1], [1], [2]]


def test_sensor_ids_are_mapped_per_sensor_and_never_collide():
    tracker = Tracker()
    a = tracker.update(0.0, np.array([[0, 0, 3], [1, 0, 3]]), [7, 8], "kinect")
    b = tracker.update(0.0, np.array([[0, 0, 3]]), [7], "azure")  # same sensor id, other sensor
    c = tracker.update(DT, np.array([[1.01, 0, 3], [0.01, 0, 3]]), [8, 7], "kinect")
    assert a.ids == [1, 2] and b.ids == [3] and c.ids == [2, 1]


def test_a_reused_sensor_id_starts_a_new_track():
    tracker = Tracker(max_missed=3)
    frames = [[[0.05 * k, 0, 3]] for k in range(5)] + [[]] * 4 + [[[0.3, 0, 3]]]
    ids, ended = _run(tracker, frames, [[4]] * 5 + [[]] * 4 + [[4]], "kinect")
    assert ids[0] == [1] and ended[8] == [1] and ids[-1] == [2]
    # Re-used at once for someone elsewhere: the jump gives it away.
    update = tracker.update(1.0, np.array([[-2.0, 0, 3]]), [4], "kinect")
    assert update.ids == [3] and update.ended == [2]


def test_duplicate_sensor_ids_in_one_frame_get_distinct_tracks():
    update = Tracker().update(0.0, np.array([[0, 0, 3], [1, 0, 3]]), [5, 5], "kinect")
    assert len(set(update.ids)) == 2


def test_sensor_and_position_tracks_coexist():
    tracker = Tracker()
    first = tracker.update(0.0, np.array([[0, 0, 3], [0.1, 0, 3]]), [9, None])
    second = tracker.update(DT, np.array([[0.11, 0, 3], [0.01, 0, 3]]), [None, 9])
    assert first.ids == [1, 2] and second.ids == [2, 1]
