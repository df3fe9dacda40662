"""Window cutting: strides, gaps, short sequences and the gathered shape."""
import numpy as np
import pytest

from gaitcam.skeleton import windows
from gaitcam.skeleton.windows import DEFAULT_F, cut_windows, gather_windows, train_stride


def _seq(n: int, fps: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    joints = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((1, 20, 3), np.float32)
    return joints, np.arange(n) / fps


def _spans_gap(starts, t, f, max_step):
    return any((np.diff(t[s : s + f]) > max_step).any() or (np.diff(t[s : s + f]) <= 0).any() for s in starts)


def test_strides_and_counts():
    assert DEFAULT_F == 6 and train_stride(6) == 3 and windows.test_stride(6) == 6 and train_stride(1) == 1
    joints, t = _seq(20)
    assert cut_windows(joints, t, f=6, stride=3).tolist() == [0, 3, 6, 9, 12]
    assert cut_windows(joints, t, f=6).tolist() == [0, 6, 12]  # default: test stride
    assert cut_windows(joints, t, f=6, stride=1).tolist() == list(range(15))
    assert cut_windows(*_seq(6), f=6).tolist() == [0]


def test_dropped_frame_restarts_windowing():
    joints, t = _seq(30)
    keep = np.ones(30, bool)
    keep[10] = False  # one dropped frame: step 2/30 between frames 9 and 11
    joints, t = joints[keep], t[keep]
    starts = cut_windows(joints, t, f=6, stride=3)
    # segment [0, 10) gives 0, 3; segment [10, 29) (original frames 11..29) restarts at 10
    assert starts.tolist() == [0, 3, 10, 13, 16, 19, 22]
    assert not _spans_gap(starts, t, 6, 1.5 / 30)
    assert cut_windows(joints, t, f=6, stride=3, max_gap=3 / 30).tolist() == [0, 3, 6, 9, 12, 15, 18, 21]


def test_non_increasing_timestamps_are_gaps():
    joints, t = _seq(24)
    t = t.copy()
    t[8:] -= 1 / 30  # frame 8 repeats frame 7's timestamp
    t[16:] -= 0.1  # the clock jumps back before frame 16
    starts = cut_windows(joints, t, f=4, stride=2)
    assert starts.tolist() == [0, 2, 4, 8, 10, 12, 16, 18, 20]
    assert not _spans_gap(starts, t, 4, 1.5 / 30)


def test_nan_timestamp_is_a_gap():
    joints, t = _seq(12)
    t = t.copy()
    t[6] = np.nan
    assert cut_windows(joints, t, f=3, stride=3).tolist() == [0, 3, 7]


def test_short_sequences_give_no_windows():
    for n in (0, 1, 5):
        starts = cut_windows(*_seq(n), f=6)
        assert starts.shape == (0,) and starts.dtype == np.int64
        assert gather_windows(_seq(n)[0], starts, 6).shape == (0, 6, 20, 3)


def test_gather_windows():
    joints, t = _seq(20)
    starts = cut_windows(joints, t, f=6, stride=3)
    w = gather_windows(joints, starts, 6)
    assert w.shape == (5, 6, 20, 3) and w.dtype == np.float32
    assert np.array_equal(w[:, :, 0, 0], starts[:, None] + np.arange(6))
    with pytest.raises(ValueError):
        gather_windows(joints, np.array([15]), 6)


def test_bad_arguments():
    joints, t = _seq(10)
    with pytest.raises(ValueError):
        cut_windows(joints, t[:-1])
    with pytest.raises(ValueError):
        cut_windows(joints, t, f=6, stride=0)
