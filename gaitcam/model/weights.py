"""Model weights on disk without pickle: `NAME.safetensors` (tensors) + `NAME.json` (config).

The JSON carries everything needed to use the weights correctly: the architecture, the
normalisation and joint layout the encoder expects, f, and a version hash of config and
tensors. The gallery stores that hash beside every template, so encodings of different
model versions are never compared with each other.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gaitcam.errors import FormatError
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.skeleton.normalize import NORMALIZATIONS

FORMAT = "gaitcam-sgela"
FORMAT_VERSION = 1
DTYPES = {"float16": torch.float16, "float32": torch.float32}
CONFIG_KEYS = ("model", "normalization", "layout", "f", "dtype")  # what the version hash covers


def weight_paths(path: str | Path) -> tuple[Path, Path]:
    """`weights/sgela`, `weights/sgela.json` or `weights/sgela.safetensors` -> both files."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def version_hash(config: dict, tensors: dict[str, torch.Tensor]) -> str:
    """Short sha256 of the model-defining config and the stored tensor bytes."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def save_weights(
    model: SGELA,
    path: str | Path,
    *,
    normalization: str,
    layout: str = "kinect_v1",
    dtype: str = "float16",
    notes: dict | None = None,
) -> dict:
    """Write the model and return its metadata (also the JSON's content).

    float16 halves the size (25 MB -> 12.5 MB for the default model); AGEs stay equal to the
    float32 model's within about 1e-3 relative (tests/test_weights.py).
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {normalization!r}")
    tensors = {k: v.detach().to("cpu", DTYPES[dtype]).contiguous() for k, v in model.state_dict().items()}
    config = dict(zip(CONFIG_KEYS, (model.cfg.to_dict(), normalization, layout, model.cfg.f, dtype)))
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, **config,
            "version": version_hash(config, tensors), "notes": notes or {}}
    tensor_path, json_path = weight_paths(path)
    tensor_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(tensor_path), metadata={"version": meta["version"]})
    json_path.write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def load_weights(path: str | Path, device: str | torch.device = "cpu") -> tuple[SGELA, dict]:
    """Read weights written by `save_weights`; the model comes back float32, in eval mode.

    The version is recomputed from the config and the tensors as read: weights changed since they
    were written (a tensor scaled, the config edited) are refused, since the gallery trusts the
    version to say which templates their AGEs may be compared with.
    """
    tensor_path, json_path = weight_paths(path)
    try:
        meta = json.loads(json_path.read_text())
    except FileNotFoundError:
        raise FormatError(json_path, "weights config not found") from None
    except json.JSONDecodeError as e:
        raise FormatError(json_path, f"not valid JSON ({e.msg})", line=e.lineno) from None
    if meta.get("format") != FORMAT:
        raise FormatError(json_path, f"not a {FORMAT} weights config")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise FormatError(json_path, f"written by a newer gaitcam (format {meta['format_version']})")
    try:
        tensors = load_file(str(tensor_path))
    except FileNotFoundError:
        raise FormatError(tensor_path, "weights file not found") from None
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise FormatError(tensor_path, f"unreadable weights ({e})") from None
    try:
        actual = version_hash({k: meta[k] for k in CONFIG_KEYS}, tensors)
    except KeyError as e:
        raise FormatError(json_path, f"weights config lacks {e}") from None
    if actual != meta.get("version"):
        raise FormatError(tensor_path, f"modified since it was written: its content hashes to {actual}, "
                          f"its config records version {str(meta.get('version'))[:40]}; use the weights as written "
                          "or train new ones")
    try:
        model = SGELA(SGELAConfig.from_dict(meta["model"]))
    except (TypeError, ValueError, KeyError) as e:
        raise FormatError(json_path, f"unusable model config ({e})") from None
    try:
        model.load_state_dict({k: v.float() for k, v in tensors.items()})
    except RuntimeError as e:
        raise FormatError(tensor_path, f"weights do not fit the config ({e})") from None
    return model.to(device).eval(), meta
