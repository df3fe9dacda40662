"""The fast AGE path gives the reference model's AGEs, on both of its engines (the model exported
to onnxruntime; the small-batch kernel, tested on its own in test_small_batch.py): shipped weights
(stored float16, loaded float32) at batch sizes other than the traced one, frame and window level,
LA and BA, free-running decoders and other shapes. Batches up to KERNEL_MAX_BATCH windows go to the
kernel; larger ones to onnxruntime on more threads and to the path timed faster at 1 thread;
GaitEncoder uses the fast path only when it matches, and falls back to the model when neither
engine can be built."""
import sys
import threading
import time

import numpy as np
import pytest
import torch

import gaitcam.model.encoder as encoder_module
import gaitcam.model.fast as fast_module
from gaitcam.benchmarks.scene import demo_windows
from gaitcam.config import WEIGHTS_DIR
from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.fast import KERNEL_MAX_BATCH, TOLERANCE, FastAGE, matches_reference
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.small_batch import SmallBatchAGE, kernel_library
from gaitcam.model.weights import load_weights
from gaitcam.skeleton.normalize import normalize_windows

WEIGHTS = WEIGHTS_DIR / "sgela"
BATCHES = (1, 3, 37)  # the graph is traced at batch 2
needs_kernel = pytest.mark.skipif(kernel_library() is None, reason="no C compiler or CPU for the kernel here")


@pytest.fixture(scope="module")
def shipped():
    model, meta = load_weights(WEIGHTS)
    assert meta["dtype"] == "float16" and next(model.parameters()).dtype == torch.float32
    return model, meta


@pytest.fixture(scope="module")
def windows(shipped):
    model, meta = shipped
    return torch.from_numpy(demo_windows(max(BATCHES), model.cfg.f, meta["normalization"]))


def _assert_same(model: SGELA, fast: FastAGE, windows: torch.Tensor) -> None:
    with torch.inference_mode():
        for b in BATCHES:
            reference = model.age(windows[:b], "frame")
            out = fast(windows[:b])
            torch.testing.assert_close(out, reference, **TOLERANCE)
            torch.testing.assert_close(out.flatten(1), model.age(windows[:b], "window"), **TOLERANCE)


def test_unoptimised_graph_and_two_threads_give_the_same_ages(shipped, windows, one_thread):
    for fast in (FastAGE(shipped[0], optimize=False, kernel=False), FastAGE(shipped[0], threads=2, kernel=False)):
        assert fast.path(1) == "onnxruntime"
        _assert_same(shipped[0], fast, windows)


@pytest.mark.parametrize("attention", ["LA", "BA"])
def test_shipped_weights_give_reference_ages(shipped, windows, attention, one_thread):
    """LA and BA differ only in the training loss; both configs must still encode alike."""
    trained, _ = shipped
    model = SGELA(SGELAConfig.from_dict({**trained.cfg.to_dict(), "attention": attention})).eval()
    model.load_state_dict(trained.state_dict())
    _assert_same(model, FastAGE(model, kernel=False), windows)
    _assert_same(model, FastAGE(model), windows)


@pytest.mark.parametrize("cfg", [
    SGELAConfig(decoder_input="teacher"),  # eval runs the decoder free: its output feeds back
    SGELAConfig(n_joints=25, f=4, hidden=32, layers=3, reconstruction="forward", contrastive=True),
])
def test_other_configurations_give_reference_ages(cfg, one_thread):
    torch.manual_seed(1)
    model = SGELA(cfg).eval()
    with torch.no_grad():  # non-trivial biases (the TF init leaves them at 0 and 1)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    windows = torch.randn(max(BATCHES), cfg.f, cfg.n_joints, 3) * 0.3
    _assert_same(model, FastAGE(model, kernel=False), windows)
    _assert_same(model, FastAGE(model), windows)


@needs_kernel
def test_batches_go_to_the_kernel_where_it_is_faster(shipped, windows, one_thread):
    """With more threads, onnxruntime takes the batches above KERNEL_MAX_BATCH; at 1 thread the
    kernel takes the small ones without an onnxruntime session being built."""
    model = shipped[0]
    single = FastAGE(model)
    assert single.kernel is not None and single.session is None
    assert {single.path(b) for b in (1, 8, KERNEL_MAX_BATCH)} == {"kernel"} and single.session is None
    threaded = FastAGE(model, threads=2)
    assert threaded.path(KERNEL_MAX_BATCH) == "kernel"
    assert threaded.path(KERNEL_MAX_BATCH + 1) == "onnxruntime"
    big = windows.repeat(2, 1, 1, 1)[: KERNEL_MAX_BATCH + 1]
    with torch.inference_mode():
        torch.testing.assert_close(threaded(big), model.age(big), **TOLERANCE)
    assert matches_reference(model, single) and matches_reference(model, threaded)


@needs_kernel
@pytest.mark.parametrize("faster", ["kernel", "onnxruntime"])
def test_at_one_thread_large_batches_go_to_the_path_timed_faster(shipped, windows, monkeypatch, one_thread, faster):
    """Timed once the kernel has spent TRIAL_AFTER_S on large batches (the other path slowed by
    0.2 s a call here); the loser's session is not kept; either way the AGEs are the model's."""
    model = shipped[0]
    fast = FastAGE(model)
    big = windows.repeat(2, 1, 1, 1)[: KERNEL_MAX_BATCH + 1]
    with torch.inference_mode():
        fast(big)  # well under TRIAL_AFTER_S: a short job does not pay for the timing
    assert fast.path(len(big)) == "kernel" and fast.session is None

    def slowed(fn):
        def call(x):
            time.sleep(0.2)
            return fn(x)
        return call

    slow = "onnxruntime" if faster == "kernel" else "kernel"
    real = getattr(fast, slow)
    timing = threading.Event()

    def held(x):  # the timing's first call waits until the caller has seen it not wait
        assert timing.wait(5)
        return slowed(real)(x)

    setattr(fast, slow, held)  # this FastAGE only
    monkeypatch.setattr(fast_module, "TRIAL_AFTER_S", 0.0)
    assert fast.path(len(big)) == "kernel"  # the timing starts on its own thread; the kernel goes on
    timing.set()
    assert fast.large_batches_path() == faster  # waited for
    assert fast.path(len(big)) == faster and fast.path(1) == "kernel"
    assert (fast.session is not None) == (faster == "onnxruntime")
    setattr(fast, slow, real)
    with torch.inference_mode():
        torch.testing.assert_close(fast(big), model.age(big), **TOLERANCE)
        torch.testing.assert_close(fast(big[:3]), model.age(big[:3]), **TOLERANCE)


@needs_kernel
def test_settle_decides_the_large_batch_path_before_the_run(shipped, one_thread):
    """What the soak calls before measuring: no timing thread left to start or end mid-run."""
    model, meta = shipped
    enc = GaitEncoder(model, meta["normalization"], meta["version"], device="cpu")
    assert isinstance(enc.fast, FastAGE) and enc.fast._large is None  # at 1 thread: not timed yet
    enc.settle()
    assert enc.fast._large in ("kernel", "onnxruntime") and not enc.fast._timer.is_alive()
    GaitEncoder(model, meta["normalization"], meta["version"], device="cpu", fast=False).settle()  # nothing to do


def test_encoder_uses_the_fast_path_and_encodes_alike(shipped, one_thread):
    model, meta = shipped
    fast = GaitEncoder(model, meta["normalization"], meta["version"], device="cpu")
    reference = GaitEncoder(model, meta["normalization"], meta["version"], device="cpu", fast=False)
    assert fast.fast is not None and reference.fast is None
    raw = demo_windows(40, model.cfg.f, "raw", seed=3)  # camera coordinates: the encoder normalises
    for level in ("frame", "window"):
        np.testing.assert_allclose(fast.encode(raw, level, batch_size=16), reference.encode(raw, level, batch_size=16),
                                   **TOLERANCE)


def _assert_encoder_uses_the_model(model: SGELA, meta: dict) -> None:
    enc = GaitEncoder(model, meta["normalization"], meta["version"], device="cpu")
    assert enc.fast is None
    raw = demo_windows(3, model.cfg.f, "raw")
    with torch.inference_mode():
        expected = model.age(torch.from_numpy(normalize_windows(raw, meta["normalization"]))).numpy()
    np.testing.assert_array_equal(enc.encode(raw), expected)


def test_encoder_falls_back_when_the_fast_path_differs(shipped, monkeypatch, one_thread):
    model, meta = shipped
    other = SGELA(model.cfg).eval()  # untrained: its AGEs are not the shipped model's
    assert not matches_reference(model, FastAGE(other))
    assert not matches_reference(model, FastAGE(other, kernel=False))
    mixed = FastAGE(model, threads=2)  # every path is checked: here the kernel matches, onnxruntime not
    mixed.session = FastAGE(other, threads=2, kernel=False).session
    assert not matches_reference(model, mixed)
    monkeypatch.setattr(encoder_module, "FastAGE", lambda _model, threads: FastAGE(other))
    _assert_encoder_uses_the_model(model, meta)


def _no_kernel(monkeypatch) -> None:
    """As on a machine without a C compiler (or without AVX2)."""
    def unavailable(model):
        raise RuntimeError("the small-batch kernel cannot be built here")
    monkeypatch.setattr(fast_module, "SmallBatchAGE", unavailable)


def test_without_the_kernel_onnxruntime_takes_every_batch(shipped, windows, monkeypatch, one_thread):
    _no_kernel(monkeypatch)
    fast = FastAGE(shipped[0])
    assert fast.kernel is None and {fast.path(b) for b in (1, 256)} == {"onnxruntime"}
    _assert_same(shipped[0], fast, windows)


@needs_kernel
def test_a_kernel_that_differs_from_the_model_is_dropped_for_onnxruntime(shipped, windows, monkeypatch, one_thread):
    """As for a model whose architecture the kernel does not follow."""
    other = SGELA(shipped[0].cfg).eval()
    monkeypatch.setattr(fast_module, "SmallBatchAGE", lambda model: SmallBatchAGE(other))
    fast = FastAGE(shipped[0])
    assert fast.kernel is None and fast.path(1) == "onnxruntime"
    _assert_same(shipped[0], fast, windows)


@needs_kernel
def test_encoder_without_onnxruntime_uses_the_kernel(shipped, monkeypatch, one_thread):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as when it is not installed
    model, meta = shipped
    for threads in (1, 2):  # with 2 threads the kernel takes the large batches too
        fast = FastAGE(model, threads=threads)
        assert fast.session is None and fast.path(256) == "kernel"
    enc = GaitEncoder(model, meta["normalization"], meta["version"], device="cpu")
    assert enc.fast is not None and enc.fast.session is None
    raw = demo_windows(5, model.cfg.f, "raw")
    with torch.inference_mode():
        expected = model.age(torch.from_numpy(normalize_windows(raw, meta["normalization"]))).numpy()
    np.testing.assert_allclose(enc.encode(raw), expected, **TOLERANCE)


def test_encoder_without_onnxruntime_or_kernel_uses_the_model(shipped, monkeypatch, one_thread):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    _no_kernel(monkeypatch)
    model, meta = shipped
    _assert_encoder_uses_the_model(model, meta)
