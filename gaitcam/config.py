"""App settings from a TOML file, with command-line overrides on top.

Precedence: command line > the config file > built-in defaults. The file is the one named,
else `./gaitcam.toml`, else `$XDG_CONFIG_HOME/gaitcam/config.toml` (~/.config/...). Unknown
keys and wrong types are errors naming the file and key: a typo must not silently fall back
to a default. Relative paths are relative to the current folder; the defaults for the shipped
weights and calibration are absolute (the checkout, or the installed package), so the app runs
from any folder.
`gaitcam.example.toml` at the repository root documents every key.
"""
from __future__ import annotations

import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gaitcam.errors import FormatError, GaitcamError
from gaitcam.skeleton.windows import LIVE_STRIDE
from gaitcam.stream.stride import DEFAULT_MAX_STRIDE

APP_ROOT = Path(__file__).resolve().parents[1]  # the checkout (or, installed, the site-packages folder)
_ASSETS = Path(__file__).resolve().parent / "assets"  # an installed package's weights and demo walks
INSTALLED = (_ASSETS / "weights").is_dir()
WEIGHTS_DIR = _ASSETS / "weights" if INSTALLED else APP_ROOT / "weights"  # the shipped weights
DEMO_DIR = _ASSETS / "demo" if INSTALLED else APP_ROOT / "recordings" / "demo"  # the demo gallery's walks
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The encoder's arithmetic: int8 on the CPU (gaitcam.model.small_batch), float16 and bfloat16 mainly
# on a GPU (gaitcam.model.stacked).
PRECISIONS = ("float32", "int8", "float16", "bfloat16")
KERNEL_PRECISIONS = ("float32", "int8")  # what the CPU fast path (FastAGE, its kernel) computes in
DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _xdg(var: str, fallback: str) -> Path:
    """An XDG base folder; the spec says to ignore unset, empty or relative values."""
    value = os.environ.get(var, "")
    return Path(value) if os.path.isabs(value) else Path.home() / fallback


def default_gallery() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "gaitcam" / "gallery.db"


def default_calibration() -> Path:
    """Sensor calibrations: the checkout's calibration/ folder, or the user's config folder
    when gaitcam is installed as a package (never inside site-packages)."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "gaitcam" / "calibration" if INSTALLED else APP_ROOT / "calibration"


@dataclass(frozen=True)
class Config:
    """Every setting the app reads; frozen, so one stage cannot change it under another."""

    threshold: float | None = None  # lowest score that names someone (0.5: the calibrated threshold)
    fpir: float = 0.01  # false-positive identification rate the gallery calibrates its threshold for
    f: int = 6  # frames per window; must match the weights
    stride: int = LIVE_STRIDE  # live: frames between window starts
    max_stride: int = DEFAULT_MAX_STRIDE  # live: the widest the stride goes under load (<= stride: fixed)
    threads: int = 1  # torch CPU threads
    device: str = "auto"  # auto, cpu, cuda, cuda:N or mps
    precision: str = "float32"  # the encoder's arithmetic: float32, int8 (CPU, AVX2 or AVX-512), float16, bfloat16
    weights: Path = WEIGHTS_DIR / "sgela"
    gallery: Path | str = field(default_factory=default_gallery)  # a SQLite file or a postgresql:// URL
    recordings: Path = Path("recordings")
    encrypt_recordings: bool = False  # seal new .gaitrec recordings with the gallery's key
    calibration: Path = field(default_factory=default_calibration)
    log_level: str = "INFO"
    queue_size: int = 64  # capture queue, frames
    source: Path | None = field(default=None, compare=False)  # the file read, if any


class _Invalid(Exception):
    """A value's problem, before we know whether it came from a file or the command line."""


def _int_at_least(low: int) -> Callable[[Any], int]:
    def parse(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise _Invalid(f"expected an integer >= {low}, got {v!r}")
        return v
    return parse


def _threshold(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _Invalid(f"expected a number, got {v!r}")
    return float(v)


def _rate(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
        raise _Invalid(f"expected a rate strictly between 0 and 1 (0.01 is 1 %), got {v!r}")
    return float(v)


def _path(v: Any) -> Path:
    if not isinstance(v, str | Path) or not str(v):
        raise _Invalid(f"expected a path (a string), got {v!r}")
    return Path(v).expanduser()


def _gallery(v: Any) -> Path | str:
    """A SQLite file, or a store's URL (postgresql://…), kept as written."""
    return v if isinstance(v, str) and "://" in v else _path(v)


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise _Invalid(f"expected true or false, got {v!r}")
    return v


def _device(v: Any) -> str:
    if not isinstance(v, str) or not DEVICE.fullmatch(v):
        raise _Invalid(f"expected auto, cpu, cuda, cuda:N or mps, got {v!r}")
    return v


def _log_level(v: Any) -> str:
    if not isinstance(v, str) or v.upper() not in LOG_LEVELS:
        raise _Invalid(f"expected one of {', '.join(LOG_LEVELS)}, got {v!r}")
    return v.upper()


def _precision(v: Any) -> str:
    if v not in PRECISIONS:
        raise _Invalid(f"expected one of {', '.join(PRECISIONS)}, got {v!r}")
    return v


PARSERS: dict[str, Callable[[Any], Any]] = {
    "threshold": _threshold,
    "fpir": _rate,
    "f": _int_at_least(2),
    "stride": _int_at_least(1),
    "max_stride": _int_at_least(1),
    "threads": _int_at_least(1),
    "device": _device,
    "precision": _precision,
    "weights": _path,
    "gallery": _gallery,
    "recordings": _path,
    "encrypt_recordings": _bool,
    "calibration": _path,
    "log_level": _log_level,
    "queue_size": _int_at_least(1),
}


def find_config() -> Path | None:
    """The config file used when none is named, or None."""
    for candidate in (Path("gaitcam.toml"), _xdg("XDG_CONFIG_HOME", ".config") / "gaitcam" / "config.toml"):
        if candidate.is_file():
            return candidate
    return None


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise FormatError(path, "config file not found") from None
    except OSError as e:
        raise FormatError(path, f"cannot read config ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise FormatError(path, f"invalid TOML ({e})") from None
    values = {}
    for key, value in data.items():
        if key not in PARSERS:
            close = difflib.get_close_matches(key, PARSERS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise FormatError(path, f"unknown key {key!r}{hint}")
        try:
            values[key] = PARSERS[key](value)
        except _Invalid as e:
            raise FormatError(path, f"{key}: {e}") from None
    return values


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """The settings: defaults, updated by the config file, updated by `overrides`.

    `overrides` come from the command line, keyed by field name; None values mean "not given".
    """
    source = Path(path).expanduser() if path is not None else find_config()
    config = Config() if source is None else Config(**_read(source), source=source)
    changes = {}
    for key, value in (overrides or {}).items():
        if key not in PARSERS:
            raise ValueError(f"unknown config override {key!r}")  # a CLI bug, not the user's
        if value is None:
            continue
        try:
            changes[key] = PARSERS[key](value)
        except _Invalid as e:
            raise GaitcamError(f"--{key.replace('_', '-')}: {e}") from None
    return replace(config, **changes)
