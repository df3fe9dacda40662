"""The original SGE-LA preprocessed windows (spec §1.1-1.2), to train or test on exactly its data.

Layout: `{folder}/{D}_{train|test}_npy_data/` (IJCAI code) or `{folder}/{D}/{f}/{D}_…_npy_data/`
(TPAMI code). One file per axis, `[N·f, J]`: `source_{x|y|z}_{D}_{f}.npy` for training,
`t_source_…` for testing (IAS tests name `IAS-A` / `IAS-B` as D inside the `IAS_…` folder).
Targets are the sources reversed in time (spec §1.2), so they are not read.

The original code saved each split's {label: [window indices]} as a pickled object array
(`ids_{D}_{f}.npy`), which numpy can load only by running whatever the pickle names. gaitcam
never unpickles while reading: the ids are read from `ids_{D}_{f}.json` beside it, which
`python main.py convert-ids FILE` writes once from the legacy file (`convert_ids`: it admits
only numpy's array constructors, so a hostile pickle is refused before anything runs).
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaitcam.errors import FormatError

AXES = ("x", "y", "z")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class SgelaWindows:
    """Source windows [N, f, J, 3] float32, and {label: [window indices]} when asked for."""

    windows: np.ndarray
    ids: dict | None = None


def load_sgela_npy(
    folder: str | Path, dataset: str, f: int = 6, split: str = "train", with_ids: bool = False
) -> SgelaWindows:
    """Windows of one dataset split; the ids file is read only when `with_ids`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    prefix = "t_" if split == "test" else ""
    names = {a: f"{prefix}source_{a}_{dataset}_{f}.npy" for a in AXES}
    folder_name = "IAS" if dataset.startswith("IAS-") else dataset
    sub = f"{folder_name}_{split}_npy_data"
    candidates = [Path(folder) / sub, Path(folder) / folder_name / str(f) / sub]
    data_dir = next((d for d in candidates if (d / names["x"]).is_file()), None)
    if data_dir is None:
        raise FormatError(candidates[0] / names["x"], f"missing SGE-LA file (nor in {candidates[1]})")

    axes = [_load_axis(data_dir / names[a], f) for a in AXES]
    for a, arr in zip(AXES[1:], axes[1:]):
        if arr.shape != axes[0].shape:
            raise FormatError(data_dir / names[a], f"shape {arr.shape} differs from the x file's {axes[0].shape}")
    rows, joints = axes[0].shape
    windows = np.stack(axes, axis=-1).reshape(rows // f, f, joints, 3).astype(np.float32)
    ids = _load_ids(data_dir / f"ids_{dataset}_{f}.json", len(windows)) if with_ids else None
    return SgelaWindows(windows, ids)


def _load_axis(path: Path, f: int) -> np.ndarray:
    """One axis file [N·f, J], numbers only (never unpickled)."""
    if not path.is_file():
        raise FormatError(path, "missing SGE-LA file")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise FormatError(path, f"not a readable numeric .npy file ({e})") from e
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise FormatError(path, f"expected a numeric [N*f, J] array, got {arr.dtype} {arr.shape}")
    if arr.shape[0] % f:
        raise FormatError(path, f"{arr.shape[0]} rows is not a whole number of f={f} windows")
    return arr


# What a pickled {label: [window indices]} dict of numpy arrays may name, and nothing else: a
# pickle naming any other callable (os.system, eval ...) is refused before anything runs.
_PICKLE_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                   ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                   ("numpy", "ndarray"), ("numpy", "dtype")}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which an ids file never needs")
        return super().find_class(module, name)


def _load_ids(path: Path, n_windows: int) -> dict[str, list[int]]:
    """The {label: [window indices]} of a split, from the JSON that `convert_ids` wrote."""
    if not path.is_file():
        legacy = path.with_suffix(".npy")
        if legacy.is_file():
            raise FormatError(path, f"missing; {legacy.name} is a pickled legacy file, which gaitcam never "
                              f"unpickles while reading: convert it once with `python main.py convert-ids {legacy}`")
        raise FormatError(path, "missing SGE-LA ids file")
    try:
        ids = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise FormatError(path, f"not a readable ids file ({str(e)[:200]})") from None
    return _checked_ids(path, ids, n_windows)


def _checked_ids(path: Path, ids: object, n_windows: int | None = None) -> dict[str, list[int]]:
    """{label: [window indices]} with integer indices (in 0..n_windows-1 when given), or a FormatError."""
    if not isinstance(ids, dict):
        raise FormatError(path, f"expected a dict {{label: [window indices]}}, got {type(ids).__name__}")
    out = {}
    for label, index in ids.items():
        index = np.asarray(index)
        if index.size and (index.dtype.kind not in "iu" or index.ndim != 1 or index.min() < 0
                           or (n_windows is not None and index.max() >= n_windows)):
            raise FormatError(path, f"label {str(label)[:40]!r}: window indices are not whole numbers"
                              + ("" if n_windows is None else f" in 0..{n_windows - 1}"))
        out[str(label)] = [int(i) for i in index.reshape(-1)]
    return out


def convert_ids(path: str | Path) -> Path:
    """The legacy pickled ids file `path` read with only numpy's array constructors admitted,
    written as JSON beside it (owner-only, never overwriting); returns the JSON's path."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(fh)
            if dtype != object or shape != ():
                raise ValueError(f"expected a pickled dict, got a {dtype} array of shape {shape}")
            ids = _ArraysOnly(fh, encoding="latin1").load()
        ids = ids.item() if isinstance(ids, np.ndarray) and ids.shape == () else ids
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, AttributeError, TypeError, IndexError) as e:
        raise FormatError(path, f"not a readable ids file ({str(e)[:200]})") from None
    ids = _checked_ids(path, ids)
    out = path.with_suffix(".json")
    try:
        fd = os.open(out, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise FormatError(out, "already exists; not overwritten") from None
    except OSError as e:
        raise FormatError(out, f"cannot create ({e.strerror})") from None
    with os.fdopen(fd, "w") as fh:
        json.dump(ids, fh)
    return out
