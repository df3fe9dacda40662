"""Encoder speed: the reference `SGELA.age` against `FastAGE`, measured in the same seconds.

All get the same normalised demo windows and return AGEs as tensors; normalisation and the
numpy round trip (the same for all) are left to the pipeline benchmark. "fast" is `FastAGE` as
`GaitEncoder` builds it, so at each batch size it runs the path it would choose (`path`: the
small-batch kernel or onnxruntime). Beside it run the exported graph on onnxruntime alone (the
fast path before the kernel) and that graph without onnxruntime's graph optimisations, so each
step of the fast path (export, graph optimisation, kernel) has its own before and after; and, wherever
the kernel builds, the kernel in int8 (`FastAGE(precision="int8")`). On a GPU "fast" is
`gaitcam.model.stacked` as `GaitEncoder` builds it (the axes stacked, replayed from CUDA graphs), with
its steps beside it: the stacked computation launched eagerly, the model itself replayed from CUDA
graphs, and the stacked graphs in float16 and bfloat16. Work is counted as the model's multiply-adds
(`count_macs`, 37.45 M per window for the default model) x 2 FLOP for every path, whatever it
computes, over the float32 peak.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import torch

from gaitcam.benchmarks.timing import in_blocks, interleaved, ms, peak_gflops, timed
from gaitcam.model.fast import KERNEL_MAX_BATCH, FastAGE
from gaitcam.model.sgela import AXES, SGELA, count_macs
from gaitcam.model.stacked import CudaGraphs, StackedAGE, stacked_path

log = logging.getLogger(__name__)

BATCHES = (1, 2, 3, 8, 64, 256)
GPU_BATCHES = (1, 2, 3, 8, 16, 32, 64, 128, 256, 1024)  # 1024: above the captured sizes
# Small batches (up to BLOCKED_MAX_BATCH) are also timed BLOCK calls in a row (`in_blocks`), for these paths.
BLOCK, BLOCKED_MAX_BATCH, BLOCKED_PATHS = 10, 8, ("fast", "int8", "float16", "bfloat16")
# The paths measured beside "fast" and "reference", where they exist (CPU: the first three).
OTHER_PATHS = ("onnxruntime", "unoptimized", "int8", "stacked_eager", "graphed_reference", "float16", "bfloat16")
TRAIN_BATCH = 128  # the trainer's batch size


def _throughput(calls: dict, b: int, device: torch.device, seconds: float) -> dict:
    """Windows/s of each call at batch b, from the medians of interleaved calls (about
    `seconds` in all, but at least 2 rounds)."""
    first = sum(timed(fn, device) for fn in calls.values())  # also warms them up
    rounds = int(min(max(math.ceil(seconds / max(first, 1e-6)), 2), 200))
    rates = {name: b / float(np.median(t)) for name, t in interleaved(calls, rounds, device).items()}
    out = {"windows_per_s": round(rates["fast"], 1), "reference_windows_per_s": round(rates["reference"], 1),
           "speedup": round(rates["fast"] / rates["reference"], 3), "rounds": rounds}
    for name in OTHER_PATHS:
        if name in rates:
            out[f"{name}_windows_per_s"] = round(rates[name], 1)
    if b <= BLOCKED_MAX_BATCH:
        blocked = {name: calls[name] for name in BLOCKED_PATHS if name in calls}
        for name, t in in_blocks(blocked, max(rounds // BLOCK, 3), BLOCK, device).items():
            out[f"{'' if name == 'fast' else name + '_'}blocked_windows_per_s"] = round(b / float(np.median(t)), 1)
    return out


def _latency(calls: dict, device: torch.device, n: int, seconds: float) -> dict:
    """Batch-1 latency percentiles of the fast, reference (and onnxruntime-only) calls over `n`
    interleaved calls each, fewer (but at least 10) if that would take longer than about `seconds`."""
    names = [k for k in ("reference", "fast", *OTHER_PATHS) if k in calls and k != "unoptimized"]
    first = sum(timed(calls[k], device) for k in names)
    n = int(min(n, max(10, seconds / max(first, 1e-6))))
    times = interleaved({k: calls[k] for k in names}, n, device)
    out: dict = {"calls": n}
    for name, t in times.items():
        prefix = "" if name == "fast" else f"{name}_"
        out[f"{prefix}ms_p50"] = ms(float(np.percentile(t, 50)), 3)
        out[f"{prefix}ms_p99"] = ms(float(np.percentile(t, 99)), 3)
    out["p50_speedup"] = round(out["reference_ms_p50"] / out["ms_p50"], 3)
    return out


def _gpu_paths(model: SGELA, device: torch.device) -> dict:
    """"fast" as `GaitEncoder` builds it on a GPU, and its steps and reduced precisions beside it
    (those that cannot be built or captured here are left out, and said so in the log)."""
    fast, _ = stacked_path(model, "float32")
    paths = {"fast": fast or model.age, "stacked_eager": StackedAGE(model)}
    for precision in ("float16", "bfloat16"):
        path, runs = stacked_path(model, precision)
        if runs == precision:
            paths[precision] = path
    try:  # the model's cuDNN LSTM may refuse to be captured: then it is left out
        paths["graphed_reference"] = CudaGraphs(model.age, (model.cfg.f, model.cfg.n_joints, len(AXES)), device)
    except Exception as e:  # cuDNN's errors, or capture's, are RuntimeErrors of several kinds
        log.warning("the model itself cannot be captured in CUDA graphs here: %s", e)
    return paths


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
    threads = torch.get_num_threads()
    paths = {"reference": model.age}
    fast = None
    if device.type == "cpu":
        paths["fast"] = fast = FastAGE(model, threads)
        fast.large_batches_path()  # at 1 thread timed once: decided before anything is measured
        paths["onnxruntime"] = FastAGE(model, threads, kernel=False)
        paths["unoptimized"] = FastAGE(model, threads, optimize=False, kernel=False)
        try:
            paths["int8"] = FastAGE(model, threads, precision="int8")
        except RuntimeError:  # no int8 kernel here (no compiler, or a CPU without AVX2)
            pass
    else:
        paths.update(_gpu_paths(model, device))
    flop = 2 * count_macs(model.cfg)
    result: dict = {"peak_gflops": round(peak_gflops(device), 1), "fast_path": "onnxruntime" if "unoptimized" in paths
                    else "stacked, CUDA graphs" if isinstance(paths["fast"], CudaGraphs)
                    else "stacked" if isinstance(paths["fast"], StackedAGE) else "none (the reference model)",
                    "batches": {}}
    if device.type != "cpu":
        graphs = paths["fast"] if isinstance(paths["fast"], CudaGraphs) else None
        stacked = graphs.fn if graphs else paths["fast"]
        result["stacked"] = {"graph_batches": list(graphs.batches) if graphs else None,
                             "fused_lstm_cell": getattr(stacked, "fused", None)}
    if fast is not None:
        result["kernel"] = None if fast.kernel is None else {
            "weights": fast.kernel.weights, "vector_floats": fast.kernel.vector,
            "max_batch": None if fast.large_batches_path() == "kernel" else KERNEL_MAX_BATCH,
            "int8": "int8" in paths, "int8_products": paths["int8"].kernel.int8 if "int8" in paths else None}
    with torch.inference_mode():
        for b in batches:
            x = torch.from_numpy(windows[:b]).to(device)
            calls = {name: (lambda fn=fn: fn(x)) for name, fn in paths.items()}
            row = _throughput(calls, b, device, seconds_per_batch)
            row["gflops"] = round(row["windows_per_s"] * flop / 1e9, 2)
            row["reference_gflops"] = round(row["reference_windows_per_s"] * flop / 1e9, 2)
            row["peak_fraction"] = round(row["gflops"] / result["peak_gflops"], 3)
            row["reference_peak_fraction"] = round(row["reference_gflops"] / result["peak_gflops"], 3)
            if fast is not None:
                row["path"] = fast.path(b)
            for key in [k for k in row if k.endswith("_windows_per_s") and not k.startswith(("reference", "unopt"))]:
                row[key.replace("windows_per_s", "peak_fraction")] = round(
                    row[key] * flop / 1e9 / result["peak_gflops"], 3)
            result["batches"][str(b)] = row
        x1 = torch.from_numpy(windows[:1]).to(device)
        calls = {name: (lambda fn=fn: fn(x1)) for name, fn in paths.items()}
        result["batch1_latency"] = _latency(calls, device, latency_calls, latency_seconds)
    if train_steps:
        result["training_windows_per_s"] = round(
            training_windows_per_s(model, windows[:TRAIN_BATCH], device, train_steps), 1)
    return result
