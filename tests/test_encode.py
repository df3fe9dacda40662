"""Encoder worker: batches what has queued, hands each result back with its track and time,
drops (and counts) when full instead of blocking, and survives a failing batch."""
import threading

import numpy as np
import pytest

from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.skeleton.windows import Window
from gaitcam.stream.encode import CallCost, EncodeWorker


class GatedEncoder:
    """Says when a batch has come (`entered`), then waits for `gate`; the 'AGE' of a window is
    its per-frame sums."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.batches: list[int] = []

    def encode(self, windows, level="frame", mirror=False):
        assert level == "window" and mirror  # the matcher pools each window's AGEs with its mirror image's
        self.entered.set()
        assert self.gate.wait(5)
        self.batches.append(len(windows))
        return windows.reshape(len(windows), windows.shape[1], -1).sum(axis=2)


def _window(k: float, joints: np.ndarray | None = None) -> Window:
    joints = np.full((6, 20, 3), k, dtype=np.float32) if joints is None else joints
    return Window(float(k), joints, np.zeros((6, 20), bool), np.ones((6, 20), bool))


def test_batches_drops_and_results_keep_track_and_time():
    encoder, results = GatedEncoder(), []
    with EncodeWorker(encoder, results.extend, max_batch=4, queue_size=10) as worker:
        worker.submit([(0, 0.0, _window(0))])  # taken at once, held at the gate
        assert encoder.entered.wait(5)
        held = worker.load()  # the batch in progress counts as busy, not yet as done
        assert held.busy > 0 and (held.offered, held.done) == (1, 0)
        accepted = [worker.submit([(k % 3, k / 30, _window(k))]) for k in range(1, 16)]
        encoder.gate.set()
    assert accepted == [True] * 10 + [False] * 5  # full queue: refused, never waited on
    assert worker.stats.dropped == 5 and worker.stats.submitted == 11 and worker.stats.encoded == 11
    load = worker.load()  # refused windows were offered too: the stride control's demand counts them
    assert (load.offered, load.done) == (16, 11) and load.busy == worker.stats.seconds > 0
    assert encoder.batches == [1, 4, 4, 2]
    assert [(r.track, r.time) for r in results] == [(0, 0.0)] + [(k % 3, k / 30) for k in range(1, 11)]
    for r in results:
        np.testing.assert_array_equal(r.age, r.window.joints.reshape(6, -1).sum(1))
        assert r.window.joints[0, 0, 0] == round(r.time * 30)


def test_a_frames_windows_are_encoded_in_one_batch():
    encoder, results = GatedEncoder(), []
    with EncodeWorker(encoder, results.extend, max_batch=8, queue_size=2) as worker:
        worker.submit([(0, 0.0, _window(0))])  # taken at once, held at the gate
        assert encoder.entered.wait(5)
        assert worker.submit([(k, 0.1, _window(k)) for k in range(1, 6)])  # one frame, five people
        assert worker.submit([(k, 0.2, _window(k)) for k in range(1, 6)])
        assert not worker.submit([(k, 0.3, _window(k)) for k in range(1, 6)])  # full: all five dropped
        assert worker.submit([])
        encoder.gate.set()
    # 8 windows at most per call, but a frame is never split: 1, then 5 (5 + 5 > 8), then 5.
    assert encoder.batches == [1, 5, 5]
    assert worker.stats.submitted == 11 and worker.stats.dropped == 5 and worker.stats.encoded == 11
    assert [r.time for r in results] == [0.0] + [0.1] * 5 + [0.2] * 5


def test_a_failing_batch_is_counted_and_the_worker_goes_on(one_thread):
    encoder = GaitEncoder(SGELA(SGELAConfig(hidden=8)), "body", device="cpu")
    results = []
    bad = _window(1.0)
    bad.joints[2, 5] = np.nan  # the encoder refuses windows with missing joints
    worker = EncodeWorker(encoder, results.extend)
    worker.start()
    worker.submit([(1, 0.1, bad)])
    worker.close()
    assert worker.stats.errors == 1 and results == []
    worker = EncodeWorker(encoder, results.extend)
    with worker:
        good = np.random.default_rng(0).normal(size=(6, 20, 3)).astype(np.float32)
        worker.submit([(2, 0.2, _window(0.2, good))])
    assert worker.stats.encoded == 1 and results[0].age.shape == (2, 6 * 3 * 8)
    np.testing.assert_allclose(results[0].age, encoder.encode(good[None], level="window", mirror=True)[0],
                               rtol=1e-5)


def test_a_failing_callback_is_counted():
    def broken(results):
        raise RuntimeError("view gone")

    encoder = GatedEncoder()
    encoder.gate.set()
    with EncodeWorker(encoder, broken) as worker:
        worker.submit([(0, 0.0, _window(0))])
    assert worker.stats.errors == 1 and worker.stats.done == 1


def test_close_encodes_everything_queued():
    encoder, results = GatedEncoder(), []
    worker = EncodeWorker(encoder, results.extend, max_batch=3)
    for k in range(7):
        worker.submit([(0, k, _window(k))])
    encoder.gate.set()
    worker.start()
    worker.close()
    assert len(results) == 7 and encoder.batches == [3, 3, 1]
    worker.close()  # twice is fine


@pytest.mark.parametrize("n", [1, 50])
def test_real_encoder_in_the_worker_matches_a_direct_call(one_thread, n):
    encoder = GaitEncoder(SGELA(SGELAConfig(hidden=8)), "body", device="cpu")
    windows = np.random.default_rng(n).normal(size=(n, 6, 20, 3)).astype(np.float32)
    results = []
    with EncodeWorker(encoder, results.extend) as worker:
        for k, w in enumerate(windows):
            worker.submit([(k, k, _window(k, w))])
    ages = np.stack([r.age for r in sorted(results, key=lambda r: r.track)])
    np.testing.assert_allclose(ages, encoder.encode(windows, level="window", mirror=True), rtol=1e-4, atol=1e-6)


def test_sources_sharing_a_worker_share_batches_and_keep_their_own_results_and_counts():
    encoder, a, b = GatedEncoder(), [], []

    def broken(results):
        raise RuntimeError("consumer gone")

    with EncodeWorker(encoder, max_batch=8) as worker:
        ca, cb, cc = worker.client(a.extend), worker.client(b.extend), worker.client(broken)
        with pytest.raises(TypeError, match="clients only"):
            worker.submit([(0, 0.0, _window(0))])
        ca.submit([(0, 0.0, _window(0))])  # taken at once, held at the gate
        assert encoder.entered.wait(5)
        ca.submit([(1, 0.1, _window(1)), (2, 0.1, _window(2))])
        cb.submit([(1, 0.1, _window(11))])  # another camera's track 1
        cc.submit([(5, 0.1, _window(5))])
        assert worker.queued == 3
        encoder.gate.set()
        assert ca.drain(5) and cb.drain(5) and cc.drain(5)
        assert encoder.batches == [1, 4]  # both cameras' windows in one call
    assert [(r.track, r.window.joints[0, 0, 0]) for r in a] == [(0, 0), (1, 1), (2, 2)]
    assert [(r.track, r.window.joints[0, 0, 0]) for r in b] == [(1, 11)]
    assert (ca.stats.submitted, ca.stats.encoded, cb.stats.encoded, cc.stats.errors) == (3, 3, 1, 1)
    assert worker.stats.submitted == 5 and worker.stats.encoded == 4 and worker.stats.errors == 1
    assert ca.load() == cb.load() == worker.load() and worker.load()[1:4] == (5, 5, 2)  # every client's, together


def test_call_cost_fits_a_fixed_and_a_per_window_part_from_the_calls_made():
    cost = CallCost()
    for _ in range(CallCost.MIN_CALLS - 1):
        cost.add(1, 0.0025)
        cost.add(3, 0.0035)
    cost.add(1, 0.0025)
    assert cost.line() is None  # one size with MIN_CALLS calls: no line yet
    cost.add(3, 0.0035)
    assert cost.line() == pytest.approx((0.002, 0.0005))  # 2 ms a call, 0.5 ms a window
    for i in range(500):  # noise, and a stalled call, do not move a size's median
        cost.add(3, 0.0035 + 0.00001 * (-1) ** i + (0.05 if i == 495 else 0.0))
    for _ in range(CallCost.MIN_CALLS):
        cost.add(2, 0.003)
    assert cost.line() == pytest.approx((0.002, 0.0005), rel=0.05)
    neighbours = CallCost()  # two sizes side by side: their noise is no slope
    for _ in range(CallCost.MIN_CALLS):
        neighbours.add(3, 0.0035)
        neighbours.add(4, 0.004)
    assert neighbours.line() is None
    falling = CallCost()  # a line that would fall (noise) is flat: never a negative cost
    for _ in range(CallCost.MIN_CALLS):
        falling.add(1, 0.004)
        falling.add(3, 0.003)
    assert falling.line() == pytest.approx((0.0035, 0.0))
    for _ in range(CallCost.STALE):  # sizes not called for a while no longer count
        falling.add(2, 0.003)
    assert falling.line() is None
