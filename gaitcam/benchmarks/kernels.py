"""`bench kernels`: the small-batch kernel as CPUs without some of this one's instructions run it.

Why. The live encoder's small batches run on a C kernel compiled for the CPU at hand
(`-march=native`, gaitcam.model.small_batch). A CPU without AVX-512 gets another build (8-float
vectors, 2-row micro-kernels), and one without VNNI sums int8 products with VPMADDWD instead of
VPDPBUSD. This CPU can compile and run those builds too (the same source with `-mno-avx512f`,
`-mno-avxvnni`, `-mno-avx512vnni`), so timing them side by side, float32 against int8, shows what
such a machine would get, each against the float32 peak its own instructions allow: for 8-float
builds `torch.mm` measured in a child process held to AVX2 (MKL and ATen read their instruction
set when they load). An emulation: the caches, clocks and execution ports are still this CPU's.

Every path is timed two ways, as in `bench`: ten calls in a row (how the live encoder calls it,
every frame or two) and call by call, taking turns with every other path (their weights evict
each other's from the caches). Efficiency is the float32 model's FLOPs over the peak, whatever
the path computes.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from gaitcam.benchmarks.timing import in_blocks, interleaved, peak_gflops
from gaitcam.model.sgela import SGELA, count_macs
from gaitcam.model.small_batch import INT8_KINDS, SmallBatchAGE, kernel_library

# name -> extra compiler flags: what a CPU without those instructions compiles
BUILDS = {
    "native": (),
    "AVX-512 without VNNI": ("-mno-avx512vnni",),
    "AVX2 with AVX-VNNI": ("-mno-avx512f",),
    "AVX2": ("-mno-avx512f", "-mno-avxvnni"),
}
BATCHES = (1, 2, 3, 8)
BLOCK = 10  # calls in a row per timed block
AVX2_ONLY = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def distinct_builds() -> dict[str, ctypes.CDLL]:
    """The builds this CPU and compiler can make, one per (vector width, int8 products): on a CPU
    without AVX-512 every flag set gives the same AVX2 build, which is timed once."""
    builds: dict[str, ctypes.CDLL] = {}
    seen: set[tuple[int, int]] = set()
    for name, flags in BUILDS.items():
        lib = kernel_library(flags)
        if lib is None:
            continue
        key = (lib.sb_vector_width(), lib.sb_int8())
        if key not in seen:
            seen.add(key)
            builds[name] = lib
    return builds


def avx2_peak(size: int = 4096) -> float | None:
    """`torch.mm`'s float32 peak on one thread with MKL and ATen held to AVX2, measured in a child
    process; None where they do not take the setting (e.g. torch built without MKL)."""
    code = ("import sys, torch; sys.path.insert(0, sys.argv[1]); torch.set_num_threads(1); "
            "from gaitcam.benchmarks.timing import peak_gflops; "
            "print(torch.backends.cpu.get_cpu_capability(), peak_gflops(torch.device('cpu'), int(sys.argv[2])))")
    env = {**os.environ, **AVX2_ONLY, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code, str(PACKAGE_ROOT), str(size)], env=env, capture_output=True,
                          text=True, timeout=600)
    words = done.stdout.split()
    if done.returncode or len(words) != 2 or words[0] != "AVX2" or not torch.backends.mkl.is_available():
        return None
    return float(words[1])


def run(model: SGELA, windows: np.ndarray, rounds: int = 20, batches: tuple[int, ...] = BATCHES,
        peak_size: int = 4096, say: Callable[[str], None] = lambda _: None) -> dict:
    """Every distinct build in float32 and int8 at each batch size, in a row and call by call;
    `windows` [>= max(batches), f, J, 3], normalised. Run it at one torch thread (the peak's)."""
    model = model.cpu().eval()
    device = torch.device("cpu")
    builds = distinct_builds()
    if not builds:
        raise RuntimeError("the small-batch kernel cannot be built here (no C compiler, or a CPU without AVX2)")
    say(f"builds: {', '.join(builds)}; measuring the float32 peak ...")
    native_vector = builds["native"].sb_vector_width()
    peaks = {native_vector: round(peak_gflops(device, peak_size), 1)}
    if any(lib.sb_vector_width() != native_vector for lib in builds.values()):
        avx2 = avx2_peak(peak_size)
        peaks[8] = round(avx2, 1) if avx2 else None
    paths = {(name, precision): SmallBatchAGE(model, library=lib, precision=precision)
             for name, lib in builds.items() for precision in ("float32", "int8")}
    flop = 2 * count_macs(model.cfg)
    result: dict = {
        "threads": torch.get_num_threads(),
        "builds": {name: {"flags": list(BUILDS[name]), "vector_floats": lib.sb_vector_width(),
                          "int8_products": INT8_KINDS.get(lib.sb_int8()),
                          "peak_gflops": peaks[lib.sb_vector_width()],
                          "peak": "this CPU" if lib.sb_vector_width() == native_vector else "torch.mm held to AVX2"}
                   for name, lib in builds.items()},
        "batches": {}}
    with torch.inference_mode():
        for b in batches:
            say(f"batch {b} ...")
            x = torch.from_numpy(np.ascontiguousarray(windows[:b]))
            fns = {f"{name}|{precision}": (lambda fn=fn: fn(x)) for (name, precision), fn in paths.items()}
            row_times = in_blocks(fns, rounds, BLOCK, device)
            call_times = interleaved(fns, rounds * BLOCK // 2, device)
            rows = []
            for key in fns:
                name, precision = key.split("|")
                peak = result["builds"][name]["peak_gflops"]
                row = {"build": name, "precision": precision}
                for how, times in (("in_a_row", row_times[key]), ("call_by_call", call_times[key])):
                    seconds = float(np.median(times))
                    row[f"{how}_ms"] = round(seconds * 1e3, 3)
                    row[f"{how}_peak_fraction"] = round(b * flop / seconds / 1e9 / peak, 3) if peak else None
                rows.append(row)
            result["batches"][str(b)] = rows
    return result


def table(result: dict) -> str:
    """The builds, then one line per build, precision and batch."""
    lines = [f"{name}: {b['vector_floats']} floats a vector, int8 by {b['int8_products']}, float32 peak "
             f"{b['peak_gflops']} GFLOP/s ({b['peak']}); flags {' '.join(b['flags']) or '-march=native'}"
             for name, b in result["builds"].items()]
    lines += ["", "| build | precision | batch | in a row, ms | % of peak | call by call, ms | % of peak |",
              "|---|---|---|---|---|---|---|"]

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.0f} %"

    for b, rows in result["batches"].items():
        for r in rows:
            lines.append(f"| {r['build']} | {r['precision']} | {b} | {r['in_a_row_ms']} | "
                         f"{pct(r['in_a_row_peak_fraction'])} | {r['call_by_call_ms']} | "
                         f"{pct(r['call_by_call_peak_fraction'])} |")
    return "\n".join(lines)
