"""Sequences -> training windows through the one window rule: trimming, gaps, missing joints
derived or counted, glitches counted, owners kept."""
import numpy as np

from gaitcam.model.data import windows_from_sequences
from gaitcam.skeleton.windows import WindowRule
from gaitcam.skeleton.layouts import CANONICAL, KGBD
from gaitcam.skeleton.sequence import SkeletonSequence


def _seq(n, layout=CANONICAL, seed=0):
    rng = np.random.default_rng(seed)
    pose = rng.random((1, layout.n_joints, 3))
    return SkeletonSequence(pose + 0.01 * rng.standard_normal((n, layout.n_joints, 3)), np.arange(n) / 30, layout)


def test_windows_count_trim_and_owner():
    data = windows_from_sequences([_seq(40), _seq(30, KGBD)], f=6, stride=3, normalization="raw", trim=5)
    # 30 and 20 frames after trimming -> 9 and 5 windows at stride 3
    assert len(data) == 14 and data.windows.shape[1:] == (6, 20, 3)
    assert np.bincount(data.sequence).tolist() == [9, 5]


def test_missing_joints_are_derived_or_dropped_and_counted():
    seq = _seq(24)
    seq.joints[7, 3] = np.nan  # the head, derived from the trunk
    data = windows_from_sequences([SkeletonSequence(seq.joints, seq.timestamps, CANONICAL)], f=6, stride=6,
                                  normalization="body")
    assert len(data) == 4 and data.stats.derived == 1 and np.isfinite(data.windows).all()
    seq.joints[6:18, 13] = np.nan  # a knee, lost for 0.4 s: not derived, too long to bridge
    data = windows_from_sequences([SkeletonSequence(seq.joints, seq.timestamps, CANONICAL)], f=6, stride=6,
                                  normalization="body")
    assert len(data) == 2 and data.stats.incomplete == 12 and np.isfinite(data.windows).all()


def test_no_window_spans_a_gap():
    seq = _seq(24)
    seq.timestamps[12:] += 1.0  # the sensor lost the person for a second
    data = windows_from_sequences([seq], f=6, stride=6, normalization="raw")
    assert len(data) == 4


def test_windows_with_a_tracking_jump_are_dropped_and_counted():
    seq = _seq(24)
    seq.joints[9, 5] += 2.0  # 2 m in one frame: 60 m/s
    data = windows_from_sequences([seq], f=6, stride=6, normalization="raw")
    assert len(data) == 3 and data.stats.glitches == 2 and data.stats.incomplete == 0  # out and back
    no_check = WindowRule(f=6, stride=6, max_joint_speed=None)
    assert len(windows_from_sequences([seq], f=6, stride=6, normalization="raw", rule=no_check)) == 4
