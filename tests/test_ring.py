"""Ring buffer: the windows of `cut_windows`, emitted live at exact frames; missing joints and
breaks in time restart it and are counted."""
import numpy as np
import pytest

from gaitcam.skeleton.windows import cut_windows
from gaitcam.stream.ring import RingBuffer

STEP = 1 / 30


def _frames(n: int, start: int = 0) -> np.ndarray:
    """Frame k is filled with k, so a window shows which frames it holds."""
    return np.arange(start, start + n, dtype=np.float32)[:, None, None] * np.ones((1, 20, 3), np.float32)


def _push_all(ring, times, frames):
    return [(k, w) for k, (t, f) in enumerate(zip(times, frames)) if (w := ring.push(float(t), f)) is not None]


@pytest.mark.parametrize("stride, expected", [(1, list(range(5, 20))), (3, [5, 8, 11, 14, 17])])
def test_emission_frames_and_contents(stride, expected):
    frames, times = _frames(20), np.arange(20) * STEP
    out = _push_all(RingBuffer(f=6, stride=stride), times, frames)
    assert [k for k, _ in out] == expected
    starts = cut_windows(frames, times, f=6, stride=stride)
    assert [k - 5 for k, _ in out] == starts.tolist()  # the windows a recording would give
    for k, window in out:
        assert window.shape == (6, 20, 3)
        assert window[:, 0, 0].tolist() == list(range(k - 5, k + 1))  # oldest first


def test_windows_are_copies():
    ring = RingBuffer(f=3, stride=1)
    frames = _frames(5)
    first = [w for t, f in enumerate(frames) if (w := ring.push(t * STEP, f)) is not None][0]
    assert first[:, 0, 0].tolist() == [0, 1, 2]  # later pushes did not overwrite it


def test_missing_joint_restarts_and_is_counted():
    frames, times = _frames(20), np.arange(20) * STEP
    frames[7, 4, 1] = np.nan
    ring = RingBuffer(f=6, stride=3)
    out = _push_all(ring, times, frames)
    assert [k for k, _ in out] == [5, 13, 16, 19]  # restarts at frame 8
    assert ring.skipped_missing == 1 and ring.gaps == 0 and ring.windows == 4
    assert all(not np.isnan(w).any() for _, w in out)


@pytest.mark.parametrize("jump", [2.5 * STEP, -STEP, 0.0])
def test_break_in_time_restarts_and_is_counted(jump):
    times = np.arange(20) * STEP
    times[10:] += jump - STEP  # the step from frame 9 to 10 is `jump`
    ring = RingBuffer(f=6, stride=3)
    out = _push_all(ring, times, _frames(20))
    assert [k for k, _ in out] == [5, 8, 15, 18]  # restarts with frame 10
    assert ring.gaps == 1 and ring.skipped_missing == 0


def test_reset():
    ring = RingBuffer(f=4, stride=2)
    frames = _frames(12)
    assert [k for k, _ in _push_all(ring, np.arange(5) * STEP, frames[:5])] == [3]
    ring.reset()
    out = [k for k in range(5, 12) if ring.push(k * STEP, frames[k]) is not None]
    assert out == [8, 10] and ring.gaps == 0


def test_bad_settings():
    with pytest.raises(ValueError):
        RingBuffer(f=0)
    with pytest.raises(ValueError):
        RingBuffer(stride=0)
