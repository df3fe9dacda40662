"""`python main.py bench`: every benchmark of this package as one JSON result, and a summary.

The top-level keys are the default case (the first thread count, 1 unless told otherwise;
the live app runs the encoder on 1 thread); `by_threads` holds the full encoder results per
thread count, `pipeline` the live runs (`pipeline_auto`: the stride adapting to load from 1, as
the live app does from its configured stride). Reference and fast path are always measured in the
same seconds, alternating, because other jobs share these cores (see BENCHMARKS.md).
"""
from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from pathlib import Path

import torch

from gaitcam.benchmarks.encoder import (BATCHES, BLOCK, BLOCKED_PATHS, GPU_BATCHES, OTHER_PATHS, TRAIN_BATCH,
                                       bench_encoder)
from gaitcam.benchmarks.pipeline import DECIDE_PEOPLE, PipelineRun, decide_cost, demo_matcher, run_pipeline
from gaitcam.benchmarks.startup import bench_startup
from gaitcam.benchmarks.scene import demo_windows
from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.sgela import count_macs, pick_device
from gaitcam.model.weights import load_weights
from gaitcam.skeleton.windows import LIVE_STRIDE
from gaitcam.stream.stride import DEFAULT_MAX_STRIDE

log = logging.getLogger(__name__)

PIPELINE_PEOPLE = 6
PIPELINE_FPS = 30.0
PIPELINE_ROUNDS = 3  # reference and fast pipeline runs alternate this many times
SCALING_PEOPLE = (1, 6, 12, 30)
SCALING_STRIDES = (1, 2, 3, 6)


def machine(device: torch.device) -> dict:
    """What the figures were measured on, including how busy it was."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
           "device": str(device)}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        out["load_average_start"] = round(os.getloadavg()[0], 2)
    return out


def _alternating(encoders: dict[str, tuple[GaitEncoder, object]], seconds: float, rounds: int,
                 **setting: object) -> dict[str, PipelineRun]:
    """Pipeline runs of each encoder, `rounds` turns of seconds / rounds each, alternating."""
    names = list(encoders)
    runs: dict[str, list[PipelineRun]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            encoder, matcher = encoders[name]
            runs[name].append(run_pipeline(encoder, matcher, seconds=seconds / rounds, **setting))
    return {name: PipelineRun.merge(r) for name, r in runs.items()}


def run_benchmarks(
    weights: str | Path = "weights/sgela",
    device: str = "auto",
    threads: tuple[int, ...] = (1, 2),
    pipeline_seconds: float = 20.0,
    soak_minutes: float | None = None,
    soak_speed: float = 4.0,
    soak_stride: int = LIVE_STRIDE,
    slowdown: int = 1,
    scaling_seconds: float | None = None,
    precision: str = "float32",
    say: Callable[[str], None] = log.info,
) -> dict:
    """Encoder at each thread count, then the live pipeline (and the soak) at the first, its
    encoder computing every batch `slowdown` times: the pipeline of a machine whose encoder is
    that much slower (`benchmarks.pipeline.CountingEncoder`). With `scaling_seconds`, also how the
    pipeline's cost grows with people and stride (`scaling`). `precision` is the pipeline's fast
    encoder's arithmetic (`GaitEncoder`; `pipeline_precision` says what ran); the encoder section
    times every path whatever it is."""
    dev = pick_device(device)
    model, meta = load_weights(weights, dev)
    batches = BATCHES if dev.type == "cpu" else GPU_BATCHES
    windows = demo_windows(max(*batches, TRAIN_BATCH), model.cfg.f, meta["normalization"])
    counts = tuple(threads) if dev.type == "cpu" else (torch.get_num_threads(),)
    result: dict = {"machine": machine(dev), "weights": str(weights), "encoder_version": meta["version"],
                    "macs_per_window": count_macs(model.cfg), "by_threads": {}}
    for n in counts:
        torch.set_num_threads(n)
        say(f"encoder, {n} thread(s) ...")
        result["by_threads"][str(n)] = bench_encoder(model, windows, dev, batches)
    torch.set_num_threads(counts[0])
    top = result["by_threads"][str(counts[0])]
    b256, b1 = top["batches"]["256"], top["batch1_latency"]
    result.update({
        "threads": counts[0], "peak_gflops": top["peak_gflops"],
        "batch256_windows_per_s": b256["windows_per_s"], "batch256_gflops": b256["gflops"],
        "batch256_peak_fraction": b256["peak_fraction"], "batch256_speedup": b256["speedup"],
        "reference_batch256_windows_per_s": b256["reference_windows_per_s"],
        "reference_batch256_gflops": b256["reference_gflops"],
        "batch1_ms_p50": b1["ms_p50"], "batch1_ms_p99": b1["ms_p99"],
        "reference_batch1_ms_p50": b1["reference_ms_p50"], "reference_batch1_ms_p99": b1["reference_ms_p99"],
        "batch1_p50_speedup": b1["p50_speedup"], "training_windows_per_s": top["training_windows_per_s"],
    })

    fast = GaitEncoder(model, meta["normalization"], meta["version"], str(dev), precision=precision)
    reference = GaitEncoder(model, meta["normalization"], meta["version"], str(dev), fast=False)
    encoders = {"fast": (fast, demo_matcher(fast, weights)), "reference": (reference, demo_matcher(reference, weights))}
    setting = {"people": PIPELINE_PEOPLE, "fps": PIPELINE_FPS, "slowdown": slowdown}
    say(f"pipeline, stride 1, {pipeline_seconds:g} s per encoder ...")
    runs = _alternating(encoders, pipeline_seconds, PIPELINE_ROUNDS, stride=1, **setting)
    pipeline = {"stride_1": runs["fast"].summary(), "stride_1_reference": runs["reference"].summary()}
    keeping_up = 1 if runs["fast"].keeps_up else None
    for stride in range(2, LIVE_STRIDE + 1):
        if keeping_up is not None:
            break
        say(f"pipeline, stride {stride} ...")
        run = run_pipeline(fast, encoders["fast"][1], stride=stride, seconds=pipeline_seconds, **setting)
        pipeline[f"stride_{stride}"] = run.summary()
        keeping_up = stride if run.keeps_up else None
    s1 = pipeline["stride_1"]
    result.update({
        "pipeline_people": PIPELINE_PEOPLE, "pipeline_fps": PIPELINE_FPS, "pipeline_stride": 1,
        "pipeline_slowdown": slowdown, "pipeline_precision": fast.precision, "pipeline_precision_asked": precision,
        "pipeline_duration_s": s1["duration_s"], "pipeline_windows": s1["windows"],
        "pipeline_p50_ms": s1["latency_ms_p50"], "pipeline_p99_ms": s1["latency_ms_p99"],
        "pipeline_encode_ms_p50": s1["encode_ms_p50"],
        "pipeline_dropped": s1["dropped"], "pipeline_cpu_percent": s1["cpu_percent"],
        "pipeline_rss_mb": s1["rss_mb_end"], "pipeline_keeps_up": s1["keeps_up"],
        "pipeline_stride_keeping_up": keeping_up,
        "reference_pipeline_p99_ms": pipeline["stride_1_reference"]["latency_ms_p99"],
        "pipeline": pipeline,
    })
    say(f"pipeline, stride adapting from 1 up to {DEFAULT_MAX_STRIDE} ...")
    pipeline["auto"] = run_pipeline(fast, encoders["fast"][1], stride=1, max_stride=DEFAULT_MAX_STRIDE,
                                    seconds=pipeline_seconds, **setting).summary()
    result["pipeline_auto"] = auto_figures(pipeline["auto"])
    say(f"matcher: decide for {DECIDE_PEOPLE} people in view, by windows of evidence each ...")
    result["decide"] = {"people": DECIDE_PEOPLE, "ms_by_windows": decide_cost(fast, encoders["fast"][1])}
    if scaling_seconds:
        result["scaling"] = scaling(fast, encoders["fast"][1], scaling_seconds, slowdown, say)
    if soak_minutes:
        say(f"soak: {soak_minutes:g} min at {soak_speed:g}x, stride {soak_stride} ...")
        soak = run_pipeline(fast, encoders["fast"][1], stride=soak_stride, speed=soak_speed,
                            seconds=60 * soak_minutes, rss_every=60.0, **setting).summary()
        result.update({"soak": soak, "soak_rss_mb_start": soak["rss_mb_start"], "soak_rss_mb_end": soak["rss_mb_end"]})
    say("start-up: --help and the demo's first frame, 3 fresh processes each ...")
    result["startup"] = bench_startup()
    if hasattr(os, "getloadavg"):
        result["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
    return result


def scaling(encoder: GaitEncoder, matcher: object, seconds: float, slowdown: int = 1,
            say: Callable[[str], None] = log.info) -> list[dict]:
    """The pipeline at 30 fps for each number of people in SCALING_PEOPLE, at each stride in
    SCALING_STRIDES and with the stride adapting from 1: what the encoder is asked for (windows/s),
    what it costs (the process's CPU, encode time, batch size) and whether it keeps up."""
    rows = []
    for people in SCALING_PEOPLE:
        for stride in (*SCALING_STRIDES, None):
            say(f"scaling: {people} people, {'stride adapting from 1' if stride is None else f'stride {stride}'} ...")
            run = run_pipeline(encoder, matcher, people=people, fps=PIPELINE_FPS, stride=stride or 1,
                               max_stride=DEFAULT_MAX_STRIDE if stride is None else None, seconds=seconds,
                               slowdown=slowdown).summary()
            rows.append({"people": people, "stride": "auto" if stride is None else stride,
                         **{key: run[key] for key in ("windows_per_s", "cpu_percent", "encode_ms_p50", "mean_batch",
                                                      "latency_ms_p99", "window_latency_ms_p99", "dropped",
                                                      "stride_mean", "keeps_up")}})
    return rows


def auto_figures(run: dict) -> dict:
    """The headline of the adaptive run: `p99_ms` is frame-to-decision, as `pipeline_p99_ms`
    (at a wider stride it includes each frame's wait for the frames completing its window);
    `window_p99_ms` the newest frame of each window to its decision, which `keeps_up` judges."""
    return {"people": run["people"], "fps": run["fps"], "p99_ms": run["latency_ms_p99"],
            "window_p99_ms": run["window_latency_ms_p99"], "dropped": run["dropped"],
            "stride_mean": run["stride_mean"], "max_stride": run["max_stride"], "keeps_up": run["keeps_up"],
            "slowdown": run["slowdown"]}


def summary(result: dict) -> str:
    """The headline figures, one per line."""
    lines = [f"machine: {result['machine']['cpu']}, {result['machine']['cores']} cores, "
             f"torch {result['machine']['torch']}, device {result['machine']['device']}"]
    for n, r in result["by_threads"].items():
        lines.append(f"threads {n}: peak {r['peak_gflops']} GFLOP/s; training (reference) "
                     f"{r.get('training_windows_per_s')} windows/s")
        for b, row in r["batches"].items():
            others = "".join(f"; {name} {row[f'{name}_windows_per_s']} w/s"
                             + (f" ({100 * row[f'{name}_peak_fraction']:.0f} %)" if f"{name}_peak_fraction" in row else "")
                             for name in OTHER_PATHS if f"{name}_windows_per_s" in row)
            blocked = "".join(f"; {name} {row[f'{key}windows_per_s']} w/s ({100 * row[f'{key}peak_fraction']:.0f} %)"
                              for name, key in (("fast", "blocked_"), *((p, f"{p}_blocked_") for p in BLOCKED_PATHS[1:]))
                              if f"{key}windows_per_s" in row)
            lines.append(f"  batch {b:>4}: fast {row['windows_per_s']:>8} w/s ({row['gflops']} GFLOP/s, "
                         f"{100 * row['peak_fraction']:.0f} % of peak)  reference "
                         f"{row['reference_windows_per_s']:>8} w/s  x{row['speedup']}{others}"
                         + (f"\n              {BLOCK} calls in a row{blocked}" if blocked else ""))
        lat = r["batch1_latency"]
        others = "".join(f"; {name} p50 {lat[f'{name}_ms_p50']} ms p99 {lat[f'{name}_ms_p99']} ms"
                         for name in OTHER_PATHS if f"{name}_ms_p50" in lat)
        lines.append(f"  batch-1 latency: fast p50 {lat['ms_p50']} ms p99 {lat['ms_p99']} ms; reference "
                     f"p50 {lat['reference_ms_p50']} ms p99 {lat['reference_ms_p99']} ms; x{lat['p50_speedup']}{others}")
    ran, asked = result.get("pipeline_precision", "float32"), result.get("pipeline_precision_asked", "float32")
    if ran != asked:
        lines.append(f"pipeline runs below: the fast encoder in {ran}, not the {asked} asked for (the log says why)")
    elif ran != "float32":
        lines.append(f"pipeline runs below: the fast encoder in {ran}")
    slower = result.get("pipeline_slowdown", 1)
    if slower > 1:
        lines.append(f"pipeline runs below: every encoder batch computed {slower} times (an encoder {slower} times "
                     "slower, emulated)")
    for name, run in result["pipeline"].items():
        lines.append(f"pipeline {name} ({run['encoder']}): {run['people']} people at {run['fps']:g} fps, "
                     f"{run['windows']} windows in {run['duration_s']} s; frame-to-decision p50 "
                     f"{run['latency_ms_p50']} ms p99 {run['latency_ms_p99']} ms (window: p99 "
                     f"{run['window_latency_ms_p99']} ms); encode p50 {run['encode_ms_p50']} ms; AGEs wait for the "
                     f"decision p50 {run['result_wait_ms_p50']} ms; dropped {run['dropped']}; "
                     f"CPU {run['cpu_percent']} %; RSS {run['rss_mb_end']} MiB; keeps up: {run['keeps_up']}")
    if "pipeline_auto" in result:
        a = result["pipeline_auto"]
        lines.append(f"pipeline auto: stride adapting 1..{a['max_stride']}, mean {a['stride_mean']}; frame-to-decision "
                     f"p99 {a['p99_ms']} ms (window: p99 {a['window_p99_ms']} ms); dropped {a['dropped']}; "
                     f"keeps up: {a['keeps_up']}")
    if "decide" in result:
        d = result["decide"]
        lines.append(f"matcher: one decision for {d['people']} people in view: "
                     + ", ".join(f"{v} ms at {k} windows each" for k, v in d["ms_by_windows"].items()))
    if "scaling" in result:
        lines.append("scaling (30 fps; CPU: the whole process, 100 % = one core):")
        for r in result["scaling"]:
            lines.append(f"  {r['people']:>2} people, stride {r['stride']!s:>4}: {r['windows_per_s']:>6} windows/s, CPU "
                         f"{r['cpu_percent']:>5} %, encode p50 {r['encode_ms_p50']} ms (mean batch {r['mean_batch']}); "
                         f"frame-to-decision p99 {r['latency_ms_p99']} ms (window {r['window_latency_ms_p99']} ms); "
                         f"mean stride {r['stride_mean']}; dropped {r['dropped']}; keeps up: {r['keeps_up']}")
    if "startup" in result:
        st = result["startup"]
        lines.append(f"start-up (fresh process, median of {len(st['help_runs'])}): --help {st['help_seconds']:.2f} s; "
                     f"the demo's first frame {st['first_frame_seconds']:.2f} s")
    if "soak" in result:
        s = result["soak"]
        lines.append(f"soak: {s['duration_s']} s at {s['speed']:g}x, stride {s['stride']}: RSS {s['rss_mb_start']} -> "
                     f"{s['rss_mb_end']} MiB; {s['windows']} windows, dropped {s['dropped']}, errors {s['errors']}")
    return "\n".join(lines)
