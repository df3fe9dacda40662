"""The benchmark code: fair interleaving, exact percentiles, a crowd that never thins out, a
latency probe that times every frame once, and `bench` end to end on a tiny model."""
import functools
import json
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

import gaitcam.benchmarks.encoder as encoder_bench
import gaitcam.benchmarks.report as report
from gaitcam.benchmarks.pipeline import CaptureLog, CountingEncoder, LatencyProbe, PipelineRun, run_pipeline
from gaitcam.config import DEMO_DIR
from gaitcam.benchmarks.scene import crowd_recording
from gaitcam.benchmarks.soak import Sample, SoakResult
from gaitcam.benchmarks.timing import Histogram, in_blocks, interleaved, peak_gflops
from gaitcam.cli import build_parser, main
from gaitcam.identity.enrollment import track_evidence
from gaitcam.identity.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.weights import save_weights
from gaitcam.recording.formats import read_recording
from gaitcam.skeleton.sequence import SkeletonSequence

CPU = torch.device("cpu")


def test_interleaved_rotates_the_order_of_calls():
    calls = []
    times = interleaved({k: functools.partial(calls.append, k) for k in "abc"}, 4, CPU)
    assert calls == list("abc" "bca" "cab" "abc")
    assert {k: len(v) for k, v in times.items()} == {"a": 4, "b": 4, "c": 4}


def test_in_blocks_calls_each_path_in_a_row_and_takes_turns():
    calls = []
    times = in_blocks({k: functools.partial(calls.append, k) for k in "ab"}, 3, 4, CPU)
    assert calls == ["a"] * 5 + ["b"] * 5 + ["b"] * 5 + ["a"] * 5 + ["a"] * 5 + ["b"] * 5  # 1 not counted + 4
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3}
    slow = in_blocks({"sleep": lambda: time.sleep(0.002)}, 2, 3, CPU)["sleep"]
    assert all(0.002 <= t < 0.05 for t in slow)  # a call's time, not the block's


def test_histogram_percentiles_to_a_tenth_of_a_millisecond():
    h, other = Histogram(limit=1.0), Histogram(limit=1.0)
    h.add((np.arange(1, 101) - 0.5) * 1e-3)  # 0.5, 1.5 .. 99.5 ms
    other.add([5.0])  # beyond the limit: the overflow bin, and the maximum
    assert 0.0495 <= h.percentile(50) <= 0.0496 + 1e-9  # the upper edge of the value's 0.1 ms bin
    assert 0.0985 <= h.percentile(99) <= 0.0986 + 1e-9
    h.merge(other)
    assert h.count == 101 and h.max == 5.0 and h.percentile(100) == 5.0
    assert Histogram().percentile(50) is None


def test_peak_is_a_positive_rate():
    assert peak_gflops(CPU, size=64, runs=2) > 0


def test_crowd_keeps_everyone_in_view_with_complete_joints():
    rec = crowd_recording(people=3, seconds=12.0, fps=30.0)
    frames = list(rec.frames())
    assert len(frames) == 360
    assert all(len(f.bodies) == 3 for f in frames)
    assert np.allclose(np.diff([f.time for f in frames]), 1 / 30)
    assert not any(np.isnan(b.joints).any() for f in frames for b in f.bodies)
    assert len(rec.tracks) > 3  # each pass across the view is a new person, as a sensor sees it


class _Matcher:
    def __init__(self):
        self.decided, self.forgotten = [], []

    def observe(self, track, time, ages, joints, tracked=None):
        pass

    def observe_segments(self, segments):
        pass

    def decide(self, time, tracks):
        self.decided.append(tracks)
        return {t: None for t in tracks}

    def forget(self, track):
        self.forgotten.append(track)


def test_probe_times_each_frame_from_capture_to_the_decision_that_used_it():
    log = CaptureLog()
    for k in range(10):  # frame k at k / 10 s, captured at wall time 100 + k
        log.add(k / 10, 100.0 + k)
    clock, encoded = iter([105.5, 109.25]), iter([105.0, 109.0])
    probe = LatencyProbe(_Matcher(), log, stride=1, fps=10.0, encoded=lambda: next(encoded), now=lambda: next(clock))
    probe.observe(7, 0.3, np.zeros((2, 4)), np.zeros((2, 6, 20, 3)))  # windows ending at frames 2, 3
    probe.observe(7, 0.4, np.zeros((1, 4)), np.zeros((1, 6, 20, 3)))  # ... and 4: all three first used now
    probe.decide(0.4, [7, 8])
    assert probe.latency.count == 3 and probe.latency.max == pytest.approx(3.5)  # frame 2: 105.5 - 102
    probe.observe(7, 0.6, np.zeros((2, 4)), np.zeros((2, 6, 20, 3)))  # frames 5, 6, not 4 again
    probe.decide(0.6, [7])
    assert probe.latency.count == 5 and probe.latency.max == pytest.approx(4.25)  # frame 5: 109.25 - 105
    assert probe.window_latency.count == 5  # at stride 1 every frame ends a window
    assert probe.result_wait.count == 2 and probe.result_wait.max == pytest.approx(0.5)  # AGEs ready -> decided
    probe.forget(7)
    assert probe.matcher.forgotten == [7]


@pytest.fixture
def tiny(one_thread):
    torch.manual_seed(0)
    return GaitEncoder(SGELA(SGELAConfig(hidden=16)), "body", "tiny", device="cpu")


def test_probe_finds_each_window_s_newest_frame_when_the_stride_changed():
    log = CaptureLog()
    for k in range(12):
        log.add(k / 10, 100.0 + k)
    probe = LatencyProbe(_Matcher(), log, stride=1, fps=10.0, now=lambda: 112.0)
    probe.observe(7, 0.3, np.zeros((4, 4)), np.zeros((4, 6, 20, 3)))  # stride 1: frames 0-3
    probe.decide(0.3, [7])
    probe.observe(7, 0.9, np.zeros((2, 4)), np.zeros((2, 6, 20, 3)))  # widened to 3: frames 6 and 9
    probe.decide(0.9, [7])
    assert probe.latency.count == 10 and probe.window_latency.count == 6
    assert probe.window_latency.max == pytest.approx(12.0)  # frame 0, the first window's newest


@pytest.mark.parametrize("stride", [1, 2])
def test_pipeline_run_times_every_frame_of_every_window(tiny, stride):
    run = run_pipeline(tiny, _Matcher(), people=2, stride=stride, seconds=1.5, speed=2.0, rss_every=0.5)
    s = run.summary()
    assert s["frames"] > 30 and s["windows"] > 0 and s["errors"] == 0
    # Each window is the first to use `stride` frames (its newest, and those since the last), or
    # up to stride - 1 more or fewer where the pipeline moved it so that the two people take turns.
    assert s["windows"] == run.window_latency.count
    assert abs(s["latency_samples"] - stride * s["windows"]) <= (stride - 1) * s["tracks"]
    assert s["encoder_calls"] > 0 and s["rss_mb_samples"] and s["cpu_percent"] > 0
    both = PipelineRun.merge([run, run]).summary()
    assert both["windows"] == 2 * s["windows"] and both["latency_samples"] == 2 * s["latency_samples"]
    assert s["stride_mean"] == both["stride_mean"] == stride and s["max_stride"] is None


def test_counting_encoder_computes_every_call_slowdown_times():
    """The slower machine the bench emulates: the same results, k calls of the encoder a batch."""
    calls = []

    class Encoder:
        f = 6

        def encode(self, windows, level="frame", mirror=False):
            calls.append(len(windows))
            return np.full((len(windows), 4), len(calls), np.float32)

    counting = CountingEncoder(Encoder(), slowdown=3)
    out = counting.encode(np.zeros((5, 6, 20, 3), np.float32))
    assert calls == [5, 5, 5] and out.shape == (5, 4) and counting.calls == 1 and counting.windows == 5
    with pytest.raises(ValueError):
        CountingEncoder(Encoder(), slowdown=0)


def test_pipeline_run_with_the_stride_adapting(tiny):
    s = run_pipeline(tiny, _Matcher(), people=2, stride=1, max_stride=6, seconds=1.5, speed=2.0).summary()
    assert s["windows"] > 0 and s["max_stride"] == 6 and 1 <= s["stride_mean"] <= 6
    changes = s["stride_changes"]  # (seconds in, the stride from then), from the first frame on
    assert changes[0][1] == 1 and all(1 <= k <= 6 for _, k in changes)
    assert all(a[0] <= b[0] and a[1] != b[1] for a, b in zip(changes, changes[1:]))
    assert s["window_latency_ms_p99"] is not None and isinstance(s["keeps_up"], bool)


def test_scaling_runs_every_number_of_people_at_every_stride_and_adapting(tiny, monkeypatch):
    monkeypatch.setattr(report, "SCALING_PEOPLE", (1, 3))
    monkeypatch.setattr(report, "SCALING_STRIDES", (1, 2))
    rows = report.scaling(tiny, _Matcher(), seconds=0.4)
    assert [(r["people"], r["stride"]) for r in rows] == [(1, 1), (1, 2), (1, "auto"), (3, 1), (3, 2), (3, "auto")]
    assert all(r["windows_per_s"] > 0 and r["cpu_percent"] > 0 and isinstance(r["keeps_up"], bool) for r in rows)
    # More people, more windows: at a fixed stride the windows asked for grow with the people in view.
    assert rows[3]["windows_per_s"] > rows[0]["windows_per_s"]
    assert [r["stride_mean"] for r in rows if r["stride"] != "auto"] == [1, 2, 1, 2]
    text = report.summary({"machine": {"cpu": "x", "cores": 2, "torch": "t", "device": "cpu"}, "by_threads": {},
                           "pipeline": {}, "scaling": rows})
    assert text.count(" people, stride ") == 6
    machine = {"machine": {"cpu": "x", "cores": 2, "torch": "t", "device": "cpu"}, "by_threads": {}, "pipeline": {}}
    said = report.summary({**machine, "pipeline_precision": "int8", "pipeline_precision_asked": "int8"})
    assert "the fast encoder in int8" in said and "asked" not in said
    said = report.summary({**machine, "pipeline_precision": "float32", "pipeline_precision_asked": "int8"})
    assert "in float32, not the int8 asked for" in said
    assert "fast encoder" not in report.summary(machine)


def _halves(seq):
    n = len(seq) // 2
    return [SkeletonSequence(seq.joints[a:b], seq.timestamps[a:b], seq.layout, seq.states[a:b])
            for a, b in ((0, n), (n, len(seq)))]


def test_bench_command_end_to_end(tmp_path, monkeypatch, one_thread):
    """`bench` on a tiny model with its own matcher parameters; cut down to seconds."""
    torch.manual_seed(0)
    weights = tmp_path / "tiny"
    meta = save_weights(SGELA(SGELAConfig(hidden=16)), weights, normalization="body")
    enc = GaitEncoder.from_weights(weights, device="cpu")
    halves = [(p.stem, half) for p in sorted(DEMO_DIR.glob("*.gaitrec"))
              for s in read_recording(p).tracks.values() for half in _halves(s)]  # two walks per person
    MatcherParams.fit(meta["version"], [track_evidence(s, 0, enc).evidence() for _, s in halves],
                      [name for name, _ in halves]).save(f"{weights}.matcher.json")
    monkeypatch.setattr(encoder_bench, "peak_gflops", lambda device: 100.0)
    monkeypatch.setattr(report, "bench_encoder", functools.partial(
        encoder_bench.bench_encoder, seconds_per_batch=0.01, latency_calls=3, train_steps=1))
    out = tmp_path / "bench.json"
    argv = ["bench", "--weights", str(weights), "--device", "cpu", "--threads", "1", "--pipeline-seconds", "1.5",
            "--slowdown", "2", "--precision", "int8", "--json", str(out)]
    assert build_parser().parse_args(argv).func.__name__ == "cmd_bench"
    assert main(argv) == 0
    result = json.loads(out.read_text())
    for key in ("threads", "peak_gflops", "batch256_windows_per_s", "batch256_gflops", "batch1_ms_p50",
                "batch1_ms_p99", "reference_batch256_windows_per_s", "reference_batch1_ms_p50",
                "training_windows_per_s", "pipeline_people", "pipeline_fps", "pipeline_stride",
                "pipeline_duration_s", "pipeline_windows", "pipeline_p99_ms", "pipeline_dropped"):
        assert result[key] is not None, key
    assert result["threads"] == 1 and result["peak_gflops"] == 100.0
    auto = result["pipeline_auto"]  # the stride adapting to load from 1, at the same setting
    assert {"people", "fps", "p99_ms", "dropped", "stride_mean", "keeps_up"} <= set(auto)
    assert (auto["people"], auto["fps"]) == (result["pipeline_people"], result["pipeline_fps"])
    assert 1 <= auto["stride_mean"] <= auto["max_stride"] and isinstance(auto["keeps_up"], bool)
    assert auto["keeps_up"] == result["pipeline"]["auto"]["keeps_up"]  # PipelineRun.keeps_up, as pipeline_keeps_up
    assert result["pipeline_slowdown"] == auto["slowdown"] == 2
    # the pipeline's encoder as GaitEncoder builds it for --precision (float32 where int8 cannot run)
    assert result["pipeline_precision"] == GaitEncoder.from_weights(weights, device="cpu", precision="int8").precision
    assert result["pipeline_precision_asked"] == "int8"
    decide = result["decide"]  # one decision for 30 people in view, as their evidence grows
    assert decide["people"] == 30 and set(decide["ms_by_windows"]) == {"50", "500", "2048"}
    assert all(v > 0 for v in decide["ms_by_windows"].values())
    assert {run["slowdown"] for run in result["pipeline"].values()} == {2}
    encoder = result["by_threads"]["1"]
    assert set(encoder["batches"]) == {"1", "2", "3", "8", "64", "256"} and encoder["fast_path"] == "onnxruntime"
    assert all(row["unoptimized_windows_per_s"] > 0 for row in encoder["batches"].values())
    small = {b: row for b, row in encoder["batches"].items() if int(b) <= 8}
    assert all(row["blocked_windows_per_s"] > 0 and row["blocked_peak_fraction"] > 0 for row in small.values())
    assert not any("blocked_windows_per_s" in row for b, row in encoder["batches"].items() if b not in small)
    assert result["batch256_gflops"] == pytest.approx(
        result["batch256_windows_per_s"] * 2 * result["macs_per_window"] / 1e9, rel=1e-2)
    assert result["pipeline"]["stride_1"]["encoder"] == "fast"
    assert result["pipeline"]["stride_1_reference"]["encoder"] == "reference"
    assert main(["bench", "--threads", "0"]) == 2 and main(["bench", "--slowdown", "0"]) == 2


def test_startup_times_a_fresh_help_and_the_demo_s_first_frame():
    from gaitcam.benchmarks.startup import bench_startup

    r = bench_startup(repeats=1)
    assert 0 < r["help_seconds"] < r["first_frame_seconds"] < 60 and len(r["first_frame_runs"]) == 1


def test_the_soak_fails_on_fds_or_threads_that_accumulate_not_on_one_fd_fewer():
    base = Sample(seconds=5.0, rss_mb=500.0, fds=18, threads=12, py_threads=4, frames=1, windows=1, decisions=1,
                  dropped=0, errors=0)

    def passed(**end) -> bool:
        return SoakResult(15.0, 5.0, base, replace(base, seconds=15.0, **end), [], 2, 1, 0, None, 9, None).passed

    assert passed() and passed(fds=17) and passed(rss_mb=520.0)
    assert not passed(fds=19) and not passed(threads=13) and not passed(py_threads=3) and not passed(rss_mb=530.0)


def test_soak_churns_the_gallery_and_nothing_accumulates(tmp_path, capsys, one_thread):
    """`soak` for 15 s (5 s warm-up), enrolling and removing every 2 s: the suite's short budget."""
    out = tmp_path / "soak.json"
    rc = main(["soak", "--minutes", "0.25", "--warmup", "5", "--churn-every", "2", "--json", str(out)])
    result = json.loads(out.read_text())
    for key in ("rss_mb_start", "rss_mb_end", "rss_growth", "fds_start", "fds_end", "threads_start", "threads_end",
                "dropped", "errors", "enrolled", "removed", "seconds", "passed"):
        assert key in result, key
    assert result["enrolled"] >= 1 and result["removed"] >= 1 and result["errors"] == 0
    assert result["fds_end"] <= result["fds_start"] and result["threads_end"] == result["threads_start"]
    assert result["frames"] > 0 and result["decisions"] > 0 and 14 <= result["seconds"] < 25
    said = capsys.readouterr()
    assert "warm-up over" in said.err and "RSS growth" not in said.err  # progress on stderr, the verdict on stdout
    assert "RSS growth" in said.out and "(limit 5 %)" in said.out
    assert f"fds {result['fds_start']} -> {result['fds_end']}" in said.out
    assert rc == (0 if result["passed"] else 1) and result["passed"]
    assert main(["soak", "--minutes", "0.1", "--warmup", "6"]) == 2  # the warm-up outlasts the run
    assert "warm-up" in capsys.readouterr().err
