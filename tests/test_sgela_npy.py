"""The original SGE-LA .npy layout: round trip, ids only on request and never unpickled while
reading (`convert-ids` converts a legacy pickle once, admitting numpy's constructors only), file errors."""
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from gaitcam.errors import FormatError
from gaitcam.cli import main
from gaitcam.recording.sgela_npy import convert_ids, load_sgela_npy


def _write_split(data_dir: Path, dataset: str, f: int, windows: np.ndarray, test: bool = False,
                 ids: object = None) -> None:
    """Files as the original preprocessing wrote them: one [N*f, J] array per axis."""
    data_dir.mkdir(parents=True, exist_ok=True)
    prefix = "t_" if test else ""
    n, _, j, _ = windows.shape
    for a, axis in enumerate("xyz"):
        np.save(data_dir / f"{prefix}source_{axis}_{dataset}_{f}.npy", windows[..., a].reshape(n * f, j))
        np.save(data_dir / f"{prefix}target_{axis}_{dataset}_{f}.npy", windows[:, ::-1, :, a].reshape(n * f, j))
    if ids is not None:
        np.save(data_dir / f"ids_{dataset}_{f}.npy", np.array(ids, dtype=object), allow_pickle=True)


def _windows(n=5, f=6, j=20, seed=0):
    return np.random.default_rng(seed).standard_normal((n, f, j, 3))


def test_round_trip_train_and_test(tmp_path):
    w = _windows()
    _write_split(tmp_path / "KGBD_train_npy_data", "KGBD", 6, w)
    _write_split(tmp_path / "KGBD_test_npy_data", "KGBD", 6, w[:2] + 1, test=True)
    train = load_sgela_npy(tmp_path, "KGBD")
    assert train.windows.dtype == np.float32 and train.windows.shape == (5, 6, 20, 3)
    assert np.allclose(train.windows, w) and train.ids is None
    test = load_sgela_npy(tmp_path, "KGBD", split="test")
    assert np.allclose(test.windows, w[:2] + 1)


def test_tpami_layout_and_ias_test_names(tmp_path):
    w = _windows(n=3, f=4, j=20)
    _write_split(tmp_path / "IAS" / "4" / "IAS_test_npy_data", "IAS-B", 4, w, test=True)
    assert np.allclose(load_sgela_npy(tmp_path, "IAS-B", f=4, split="test").windows, w)


def test_ids_only_with_ids_and_only_once_converted(tmp_path, caplog, capsys):
    w = _windows()
    ids = {"p1": [0, 1, 2], "p2": np.array([3, 4])}
    data_dir = tmp_path / "BIWI_train_npy_data"
    _write_split(data_dir, "BIWI", 6, w, ids=ids)
    # The legacy pickle is never read while loading: the error says how to convert it.
    with pytest.raises(FormatError, match=r"ids_BIWI_6\.json: missing; .*convert-ids .*ids_BIWI_6\.npy"):
        load_sgela_npy(tmp_path, "BIWI", with_ids=True)
    assert main(["convert-ids", str(data_dir / "ids_BIWI_6.npy")]) == 0
    assert "numpy's array constructors only" in capsys.readouterr().out
    assert (data_dir / "ids_BIWI_6.json").stat().st_mode & 0o777 == 0o600
    assert load_sgela_npy(tmp_path, "BIWI", with_ids=True).ids == {"p1": [0, 1, 2], "p2": [3, 4]}
    with pytest.raises(FormatError, match="already exists"):
        convert_ids(data_dir / "ids_BIWI_6.npy")

    # Without with_ids the ids file is never opened: garbage there goes unnoticed.
    (data_dir / "ids_BIWI_6.json").write_text("not json")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert load_sgela_npy(tmp_path, "BIWI").ids is None
    assert not caplog.records
    with pytest.raises(FormatError, match="ids_BIWI_6.json: not a readable"):
        load_sgela_npy(tmp_path, "BIWI", with_ids=True)


class _Payload:
    """Unpickles by calling os.system: what a hostile ids file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_an_ids_file_that_would_run_code_is_refused_unrun(tmp_path):
    marker = tmp_path / "ran"
    legacy = tmp_path / "ids_KGBD_6.npy"
    np.save(legacy, np.array({"p1": _Payload(marker)}, dtype=object), allow_pickle=True)
    with pytest.raises(FormatError, match="ids_KGBD_6.npy.*system"):
        convert_ids(legacy)
    assert not marker.exists() and not legacy.with_suffix(".json").exists()
    np.save(legacy, np.arange(3))  # numbers, not a dict
    with pytest.raises(FormatError, match="pickled dict"):
        convert_ids(legacy)


def test_ids_out_of_range(tmp_path):
    data_dir = tmp_path / "KGBD_train_npy_data"
    _write_split(data_dir, "KGBD", 6, _windows(), ids={"p1": [0, 7]})
    convert_ids(data_dir / "ids_KGBD_6.npy")
    with pytest.raises(FormatError, match="window indices"):
        load_sgela_npy(tmp_path, "KGBD", with_ids=True)
    (data_dir / "ids_KGBD_6.json").write_text('{"p1": [0.5]}')
    with pytest.raises(FormatError, match="not whole numbers"):
        load_sgela_npy(tmp_path, "KGBD", with_ids=True)


def test_missing_and_inconsistent_files(tmp_path):
    with pytest.raises(FormatError, match=r"KGBD_train_npy_data/source_x_KGBD_6\.npy: missing"):
        load_sgela_npy(tmp_path, "KGBD")

    data_dir = tmp_path / "KGBD_train_npy_data"
    _write_split(data_dir, "KGBD", 6, _windows())
    (data_dir / "source_z_KGBD_6.npy").unlink()
    with pytest.raises(FormatError, match=r"source_z_KGBD_6\.npy: missing"):
        load_sgela_npy(tmp_path, "KGBD")

    np.save(data_dir / "source_z_KGBD_6.npy", np.zeros((24, 20)))
    with pytest.raises(FormatError, match=r"source_z_KGBD_6\.npy: shape"):
        load_sgela_npy(tmp_path, "KGBD")

    np.save(data_dir / "source_z_KGBD_6.npy", np.zeros((29, 20)))
    np.save(data_dir / "source_y_KGBD_6.npy", np.zeros((29, 20)))
    np.save(data_dir / "source_x_KGBD_6.npy", np.zeros((29, 20)))
    with pytest.raises(FormatError, match="not a whole number"):
        load_sgela_npy(tmp_path, "KGBD")

    np.save(data_dir / "source_x_KGBD_6.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(FormatError, match=r"source_x_KGBD_6\.npy: not a readable"):
        load_sgela_npy(tmp_path, "KGBD")

    with pytest.raises(ValueError):
        load_sgela_npy(tmp_path, "KGBD", split="val")
