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

# extra compiler flags: what a CPU without those instructions compiles (this CPU's own build first)
FLAGS = ((), ("-mno-avx512vnni", "-mno-avxvnni"), ("-mno-avx512f",), ("-mno-avx512f", "-mno-avxvnni"))
# (floats a vector, sb_int8()) -> the instruction sets such a build stands for
NAMES = {(16, 1): "AVX-512 with VNNI", (16, 2): "AVX-512 without VNNI", (16, 0): "AVX-512 without BW",
         (8, 1): "AVX2 with AVX-VNNI", (8, 2): "AVX2"}
BATCHES = (1, 2, 3, 8)
BLOCK = 10  # calls in a row per timed block
AVX2_ONLY = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def distinct_builds() -> dict[str, tuple[tuple[str, ...], ctypes.CDLL]]:
    """The builds this CPU and compiler can make, named for what they use, with their flags: one
    per (vector width, int8 products), this CPU's own first. Flags for instructions a CPU lacks
    change nothing, so a CPU with AVX2 alone has one build, one with AVX-VNNI but no AVX-512 two,
    and one with AVX-512 VNNI but no AVX-VNNI gets the plain AVX2 build from `-mno-avx512f`."""
    builds: dict[str, tuple[tuple[str, ...], ctypes.CDLL]] = {}
    for flags in FLAGS:
        lib = kernel_library(flags)
        if lib is not None:
            builds.setdefault(NAMES[lib.sb_vector_width(), lib.sb_int8()], (flags, lib))
    return builds


def avx2_peak(size: int = 4096) -> float | None:
    """`torch.mm`'s float32 peak on one thread with MKL and ATen held to AVX2, measured in a child
    process; None where they do not take the setting (e.g. torch built without MKL)."""
    code = ("import sys, torch; sys.path.insert(0, sys.argv[1]); torch.set_num_threads(1); "
            "from gaitcam.benchmarks.timing import peak_gflops; "
            "print(torch.backends.cpu.get_cpu_capability(), peak_gflops(torch.device('cpu'), int(sys.argv[2])))")
    if not torch.backends.mkl.is_available():  # the setting is MKL's
        return None
    env = {**os.environ, **AVX2_ONLY, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    try:
        done = subprocess.run([sys.executable, "-c", code, str(PACKAGE_ROOT), str(size)], env=env,
                              capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return None
    words = done.stdout.split()
    if done.returncode or len(words) != 2 or words[0] != "AVX2":
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
    native_vector = next(iter(builds.values()))[1].sb_vector_width()
    peaks = {native_vector: round(peak_gflops(device, peak_size), 1)}
    if any(lib.sb_vector_width() != native_vector for _, lib in builds.values()):
        avx2 = avx2_peak(peak_size)
        peaks[8] = round(avx2, 1) if avx2 else None
    paths = {(name, precision): SmallBatchAGE(model, library=lib, precision=precision)
             for name, (_, lib) in builds.items() for precision in ("float32", "int8")
             if precision == "float32" or lib.sb_int8()}
    flop = 2 * count_macs(model.cfg)
    result: dict = {
        "threads": torch.get_num_threads(), "rounds": rounds, "block": BLOCK,
        "builds": {name: {"flags": list(flags), "native": i == 0, "vector_floats": lib.sb_vector_width(),
                          "int8_products": INT8_KINDS.get(lib.sb_int8()),
                          "peak_gflops": peaks[lib.sb_vector_width()],
                          "peak": "this CPU" if lib.sb_vector_width() == native_vector else "torch.mm held to AVX2"}
                   for i, (name, (flags, lib)) in enumerate(builds.items())},
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
    lines = [f"{name}{' (this CPU)' if b['native'] else ''}: {b['vector_floats']} floats a vector, int8 by "
             f"{b['int8_products']}, float32 peak "
             f"{'not measured' if b['peak_gflops'] is None else str(b['peak_gflops']) + ' GFLOP/s'} ({b['peak']}); "
             f"flags -march=native {' '.join(b['flags'])}".rstrip()
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
