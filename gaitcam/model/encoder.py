"""Windows in, AGEs out: the trained SGE-LA with the normalisation and device its weights need.

This is what the app, the evaluation and the benchmarks call; they never touch the network
or the normalisation directly, so all of them encode exactly the same way.

On the CPU, AGEs come from `gaitcam.model.fast.FastAGE` (a fused C kernel for the batch sizes where
it is faster, the model exported to onnxruntime for the others: the same numbers, faster:
BENCHMARKS.md); on a GPU from `gaitcam.model.stacked` (the three axes in one computation,
replayed from CUDA graphs). Each is used when it reproduces the model's own `SGELA.age` on probe
windows, checked at every construction; otherwise (or with `fast=False`) `SGELA.age` itself runs.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from gaitcam.config import PRECISIONS
from gaitcam.model.fast import FastAGE, matches_reference
from gaitcam.model.sgela import SGELA, pick_device
from gaitcam.model.stacked import stacked_path
from gaitcam.model.weights import load_weights
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.normalize import normalize_windows
from gaitcam.skeleton.sequence import mirror_joints

log = logging.getLogger(__name__)


class GaitEncoder:
    """Canonical-layout windows [N, f, 20, 3] (metres, camera or floor frame) -> AGEs.

    The fast path copies the model's weights here: change `model` afterwards and build a new
    encoder. `precision="int8"` asks the CPU fast path for int8 arithmetic (`FastAGE`),
    "float16" and "bfloat16" the stacked path for that type (on a GPU, or slowly on a CPU); where
    that cannot run or its AGEs stray from the model's, it says so and stays float32 (`precision`
    tells which runs).
    """

    def __init__(
        self, model: SGELA, normalization: str, version: str = "", device: str = "auto", fast: bool = True,
        precision: str = "float32",
    ) -> None:
        self.device = pick_device(device)
        self.model = model.to(self.device).eval()
        self.normalization = normalization
        self.version = version
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.fast: Callable[[torch.Tensor], torch.Tensor] | None = None
        self.precision = "float32"
        if not fast:
            return
        if self.device.type != "cpu" or precision in ("float16", "bfloat16"):
            self.fast, self.precision = stacked_path(self.model, precision)
            return
        if precision == "int8":
            try:
                self.fast, self.precision = FastAGE(self.model, torch.get_num_threads(), precision="int8"), "int8"
                return
            except RuntimeError as e:
                log.warning("no int8 encoder (%s); encoding in float32", e)
        try:
            candidate = FastAGE(self.model, threads=torch.get_num_threads())
        except Exception as e:  # no onnxruntime, or a graph it cannot run (its errors are bare Exceptions)
            log.warning("no fast encoder path (%s); using the model itself", e)
            return
        if matches_reference(self.model, candidate):
            self.fast = candidate
        else:
            log.warning("the fast encoder path differs from the model here; using the model itself")

    @classmethod
    def from_weights(cls, path: str | Path, device: str = "auto", fast: bool = True,
                     precision: str = "float32") -> GaitEncoder:
        model, meta = load_weights(path)
        return cls(model, meta["normalization"], meta["version"], device, fast, precision)

    @property
    def f(self) -> int:
        return self.model.cfg.f

    def settle(self) -> None:
        """Do now the one-off work a fast path would otherwise do mid-run: FastAGE's timing of its
        large-batch paths (about 1.5 s, on a thread of its own). For runs that measure threads or
        latency from a warm start (the soak); the live app leaves it to the first large batches."""
        if isinstance(self.fast, FastAGE):
            self.fast.large_batches_path()

    def encode(
        self,
        windows: np.ndarray,
        level: Literal["frame", "window"] = "frame",
        batch_size: int = 256,
        mirror: bool = False,
    ) -> np.ndarray:
        """AGEs as float32: [N, f, 768] ("frame") or [N, f * 768] ("window").

        `mirror`: also the AGEs of each window's mirror image (x negated, left and right renamed;
        one batch of 2N), as [N, 2, ...] (the window's, then its mirror image's). The matcher pools
        both (`matcher.Evidence`), so a sensor that mirrors gives the same descriptor
        (docs/accuracy.md: chosen on the validation split).

        Windows must be complete: a NaN joint raises, because the stream decides how to handle
        missing joints (skip and count), not the encoder.
        """
        if mirror:
            n = len(windows)
            both = self.encode(np.concatenate([windows, mirror_joints(windows, CANONICAL)]), level, batch_size)
            return np.stack([both[:n], both[n:]], axis=1)
        windows = normalize_windows(windows, self.normalization)
        if np.isnan(windows).any():
            raise ValueError("windows contain missing (NaN) joints; drop or fill them before encoding")
        out = []
        with torch.inference_mode():
            for i in range(0, len(windows), batch_size):
                batch = torch.from_numpy(windows[i : i + batch_size]).to(self.device)
                ages = self.model.age(batch) if self.fast is None else self.fast(batch)
                out.append((ages if level == "frame" else ages.flatten(1)).float().cpu().numpy())
        if not out:
            dim = self.model.cfg.age_dim
            shape = (0, self.f, dim) if level == "frame" else (0, self.f * dim)
            return np.zeros(shape, dtype=np.float32)
        return np.concatenate(out)
