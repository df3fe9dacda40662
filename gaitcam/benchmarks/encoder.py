"""Encoder speed: the reference `SGELA.age` against `FastAGE`, measured in the same seconds.

Both get the same normalised demo windows as tensors on the device and return AGEs there;
normalisation and the numpy round trip (the same for both) are left to the pipeline benchmark.
Work is counted as the model's nominal multiply-adds (`count_macs`, 37.45 M per window for the
default model) x 2 FLOP, also for the fast path, which skips products with all-zero inputs:
its GFLOP/s are "reference-equivalent".
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from gaitcam.benchmarks.timing import interleaved, ms, peak_gflops, timed
from gaitcam.model.fast import FastAGE
from gaitcam.model.sgela import SGELA, count_macs

BATCHES = (1, 2, 3, 8, 64, 256)  # 2 and 3: either side of fast.ONEDNN_FROM_BATCH
TRAIN_BATCH = 128  # the trainer's batch size


def _throughput(model: SGELA, fast: FastAGE, x: torch.Tensor, device: torch.device, seconds: float) -> dict:
    """Windows/s of the reference and of each fast backend at one batch size, from the medians
    of interleaved calls (about `seconds` in all, but at least 2 rounds). The fast path's figure is
    that of the backend it picks at this batch size; the other is the "before" of that choice."""
    b = len(x)
    calls = {"reference": lambda: model.age(x)}
    calls.update({backend: functools.partial(fast, x, backend) for backend in fast.backends})
    first = sum(timed(fn, device) for fn in calls.values())  # also warms them up
    rounds = int(min(max(math.ceil(seconds / max(first, 1e-6)), 2), 200))
    rates = {name: b / float(np.median(t)) for name, t in interleaved(calls, rounds, device).items()}
    picked = fast.backend(b)
    out = {"reference_windows_per_s": round(rates["reference"], 1), "windows_per_s": round(rates[picked], 1),
           "speedup": round(rates[picked] / rates["reference"], 3), "backend": picked, "rounds": rounds}
    out.update({f"{backend}_windows_per_s": round(rates[backend], 1) for backend in fast.backends})
    return out


def _latency(model: SGELA, fast: FastAGE, x: torch.Tensor, device: torch.device, calls: int, seconds: float) -> dict:
    """Batch-1 latency percentiles of both paths over `calls` interleaved calls each, fewer
    (but at least 10) if that would take longer than about `seconds`."""
    first = timed(lambda: model.age(x), device) + timed(lambda: fast(x), device)
    calls = int(min(calls, max(10, seconds / max(first, 1e-6))))
    times = interleaved({"reference": lambda: model.age(x), "fast": lambda: fast(x)}, calls, device)
    out: dict = {"calls": calls}
    for name, t in times.items():
        prefix = "" if name == "fast" else "reference_"
        out[f"{prefix}ms_p50"] = ms(float(np.percentile(t, 50)), 3)
        out[f"{prefix}ms_p99"] = ms(float(np.percentile(t, 99)), 3)
    out["p50_speedup"] = round(out["reference_ms_p50"] / out["ms_p50"], 3)
    return out


def training_windows_per_s(model: SGELA, windows: np.ndarray, device: torch.device, steps: int = 3,
                           seconds: float = 10.0) -> float:
    """Windows/s of the reference training step (the trainer's: forward, per-window losses
    averaged, backward, element-wise gradient clip at 5, Adam), on a fresh copy of the model;
    the median of `steps` steps, fewer (at least 1) if they would take longer than `seconds`."""
    torch.manual_seed(0)
    train = SGELA(model.cfg).to(device).train()
    opt = torch.optim.Adam(train.parameters(), lr=5e-4)
    x = torch.from_numpy(windows).to(device)

    def step() -> None:
        loss = sum(train.window_losses(train(x)).values()).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_value_(train.parameters(), 5.0)
        opt.step()

    first = timed(step, device)  # also the warm-up
    steps = int(min(steps, max(1, seconds // max(first, 1e-6))))
    return len(x) / float(np.median([timed(step, device) for _ in range(steps)]))


def bench_encoder(
    model: SGELA,
    windows: np.ndarray,
    device: torch.device,
    batches: tuple[int, ...] = BATCHES,
    seconds_per_batch: float = 3.0,
    latency_calls: int = 300,
    latency_seconds: float = 10.0,
    train_steps: int = 3,
) -> dict:
    """Everything at the thread count currently set: peak, throughput per batch size, batch-1
    latency, training speed; `windows` [>= max(batches, TRAIN_BATCH), f, J, 3], normalised."""
    model = model.to(device).eval()
    fast = FastAGE(model)
    flop = 2 * count_macs(model.cfg)
    result: dict = {"peak_gflops": round(peak_gflops(device), 1), "batches": {}}
    with torch.inference_mode():
        for b in batches:
            x = torch.from_numpy(windows[:b]).to(device)
            row = _throughput(model, fast, x, device, seconds_per_batch)
            row["gflops"] = round(row["windows_per_s"] * flop / 1e9, 2)
            row["reference_gflops"] = round(row["reference_windows_per_s"] * flop / 1e9, 2)
            row["peak_fraction"] = round(row["gflops"] / result["peak_gflops"], 3)
            row["reference_peak_fraction"] = round(row["reference_gflops"] / result["peak_gflops"], 3)
            result["batches"][str(b)] = row
        result["batch1_latency"] = _latency(model, fast, torch.from_numpy(windows[:1]).to(device), device,
                                            latency_calls, latency_seconds)
    if train_steps:
        result["training_windows_per_s"] = round(
            training_windows_per_s(model, windows[:TRAIN_BATCH], device, train_steps), 1)
    return result
