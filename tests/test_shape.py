"""Body shape: per-bone medians that ignore unmeasured lengths, as np.nanmedian, by one sort."""
import warnings

import numpy as np
import pytest

from gaitcam.skeleton.shape import N_BONES, SHAPE_BONES, RunningShape, body_shape, column_nanmedian


def test_column_nanmedian_is_nanmedian_on_random_gaps():
    rng = np.random.default_rng(0)
    for _ in range(500):
        t, c = int(rng.integers(1, 40)), int(rng.integers(1, 8))
        x = rng.normal(size=(t, c)).astype(np.float32)
        x[rng.random((t, c)) < rng.random()] = np.nan  # any share missing, even and odd counts
        if rng.random() < 0.2:
            x[:, 0] = np.nan  # a column never measured
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # numpy's all-NaN slice warning
            expected = np.nanmedian(x, axis=0)
        got = column_nanmedian(x)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, equal_nan=True)


def test_column_nanmedian_edges():
    assert np.isnan(column_nanmedian(np.zeros((0, 3), np.float32))).all()
    x = np.array([[1.0, np.inf], [3.0, 2.0], [np.nan, np.nan], [2.0, 4.0]], np.float32)
    np.testing.assert_array_equal(column_nanmedian(x), [2.0, 3.0])  # infinity counts as unmeasured


def test_body_shape_pools_mirror_twins_and_marks_bones_never_seen():
    rng = np.random.default_rng(1)
    lengths = rng.uniform(0.1, 0.5, size=(30, N_BONES)).astype(np.float32)
    lengths[:, 3] = np.nan
    shape = body_shape(lengths)
    assert np.isnan(shape[3]) and not np.isnan(np.delete(shape, 3)).any()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert shape == pytest.approx(np.nanmedian(lengths, axis=0), nan_ok=True)
    mirrored = body_shape(lengths, mirror=True)
    assert mirrored.shape == (N_BONES,)


def test_running_shape_is_body_shape_of_the_rows_kept_to_the_bit():
    """Rows one at a time and in bulk, gaps, infinities, bones never measured, rows dropped."""
    rng = np.random.default_rng(2)
    for _ in range(200):
        keep = int(rng.integers(1, 200))
        running, kept = RunningShape(keep), np.zeros((0, N_BONES), np.float32)
        for _ in range(int(rng.integers(1, 25))):
            rows = rng.uniform(0.1, 0.5, size=(int(rng.integers(0, keep // 4 + 3)), N_BONES)).astype(np.float32)
            rows[rng.random(rows.shape) < rng.random() * 0.6] = np.nan
            if len(rows) and rng.random() < 0.1:
                rows[0, 2] = np.inf
            if rng.random() < 0.2:
                rows[:, 4] = np.nan
            running.extend(rows)
            kept = np.concatenate([kept, rows])[-keep:]
            assert len(running) == len(kept)
            np.testing.assert_array_equal(running.rows, kept)
            np.testing.assert_array_equal(running.shape(), body_shape(kept, mirror=True)[SHAPE_BONES])
    assert np.isnan(RunningShape(8).shape()).all()


def test_running_shape_keeps_its_own_copy_and_refuses_to_keep_nothing():
    rows = np.full((3, N_BONES), 0.3, np.float32)
    running = RunningShape(2)
    running.extend(rows[:1])
    rows[0] = 0.7  # the caller reuses its array: what was added stays as it was
    running.extend(rows[1:])
    np.testing.assert_array_equal(running.shape(), np.full(len(SHAPE_BONES), 0.3, np.float32))
    with pytest.raises(ValueError):
        RunningShape(0)
