"""`bench kernels`: each distinct build of the small-batch kernel this CPU can make is timed in
float32 and int8, in a row and call by call, against the peak its own instructions allow (8-float
builds: torch.mm held to AVX2 in a child process); the CLI writes the JSON other programs read."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gaitcam.benchmarks import kernels
from gaitcam.cli import main
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.small_batch import kernel_library

needs_kernel = pytest.mark.skipif(kernel_library() is None, reason="no C compiler or CPU for the kernel here")


@needs_kernel
def test_every_distinct_build_is_timed_in_both_precisions_against_its_own_peak(one_thread):
    cfg = SGELAConfig(hidden=16)
    model = SGELA(cfg).eval()
    windows = np.random.default_rng(0).normal(0, 0.3, (2, cfg.f, cfg.n_joints, 3)).astype(np.float32)
    result = kernels.run(model, windows, rounds=1, batches=(1, 2), peak_size=256)
    builds = result["builds"]
    assert (result["rounds"], result["block"]) == (1, kernels.BLOCK)
    assert [b["native"] for b in builds.values()] == [True] + [False] * (len(builds) - 1)
    assert len({(b["vector_floats"], b["int8_products"]) for b in builds.values()}) == len(builds)  # no repeats
    native = next(iter(builds.values()))["vector_floats"]
    for name, b in builds.items():  # named for what it uses
        assert b["peak"] == ("this CPU" if b["vector_floats"] == native else "torch.mm held to AVX2")
        assert ("VNNI" in name and "without" not in name) == (b["int8_products"] == "vnni")
        assert name.startswith("AVX-512") == (b["vector_floats"] == 16)
        assert b["int8_products"] in ("vnni", "vpmaddwd")
        assert b["peak_gflops"] > 0 or (b["peak_gflops"] is None and b["vector_floats"] != native)  # no AVX2 peak
    for rows in result["batches"].values():
        assert {(r["build"], r["precision"]) for r in rows} == {(n, p) for n in builds for p in ("float32", "int8")}
        for r in rows:
            assert r["in_a_row_ms"] > 0 and r["call_by_call_ms"] > 0
            assert (r["in_a_row_peak_fraction"] is None) == (builds[r["build"]]["peak_gflops"] is None)
    text = kernels.table(result)
    assert all(f"| {name} | int8 | 2 |" in text for name in builds)


def test_the_avx2_peak_comes_from_a_child_held_to_avx2():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists() or " avx2" not in cpuinfo.read_text():
        pytest.skip("no AVX2 here")
    peak = kernels.avx2_peak(256)
    assert peak is None or peak > 0
    if torch.backends.mkl.is_available():
        assert peak is not None


def test_cli_writes_the_json_and_refuses_bad_rounds(tmp_path, monkeypatch, capsys):
    calls = []

    def fake_run(model, windows, rounds, say):
        calls.append((windows.shape, rounds))
        return {"threads": 1, "builds": {"AVX-512 with VNNI": {
                    "flags": [], "native": True, "vector_floats": 16, "int8_products": "vnni", "peak_gflops": 100.0,
                    "peak": "this CPU"}},
                "batches": {"1": [{"build": "AVX-512 with VNNI", "precision": "int8", "in_a_row_ms": 1.0,
                                   "in_a_row_peak_fraction": 0.5, "call_by_call_ms": 2.0,
                                   "call_by_call_peak_fraction": 0.25}]}}

    monkeypatch.setattr(kernels, "run", fake_run)
    assert main(["bench", "kernels", "--rounds", "0"]) != 0
    out = tmp_path / "k.json"
    assert main(["bench", "kernels", "--rounds", "3", "--json", str(out)]) == 0
    assert calls and calls[0][1] == 3 and calls[0][0][0] == max(kernels.BATCHES)
    assert json.loads(out.read_text())["batches"]["1"][0]["in_a_row_peak_fraction"] == 0.5
    out = capsys.readouterr().out
    assert "AVX-512 with VNNI (this CPU): 16 floats a vector" in out
    assert "| AVX-512 with VNNI | int8 | 1 | 1.0 | 50 % | 2.0 | 25 % |" in out
