"""The small-batch kernel (gaitcam/model/small_batch.py) gives the reference model's AGEs: the
shipped weights (kept as float16, which is exact for them) at batch 1, 3 and 8 and through
GaitEncoder with mirror, weights that are not float16 (kept as float32), other shapes and a
free-running decoder, the AVX2 build, chunked batches and concurrent threads; int8 on every build
(VPDPBUSD and VPMADDWD sum the same integers); its compiled library is cached privately and its
absence is reported, not fatal."""
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import gaitcam.model.small_batch as small_batch
from gaitcam.benchmarks.scene import demo_windows
from gaitcam.config import WEIGHTS_DIR
from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.fast import KERNEL_MAX_BATCH, TOLERANCE
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.small_batch import SmallBatchAGE, kernel_library
from gaitcam.model.weights import load_weights

WEIGHTS = WEIGHTS_DIR / "sgela"
BATCHES = (1, 3, 8)

pytestmark = pytest.mark.skipif(kernel_library() is None, reason="no C compiler or CPU for the kernel here")


@pytest.fixture(scope="module")
def shipped():
    return load_weights(WEIGHTS)


@pytest.fixture(scope="module")
def windows(shipped):
    model, meta = shipped
    return torch.from_numpy(demo_windows(40, model.cfg.f, meta["normalization"]))


@pytest.fixture(scope="module")
def kernel(shipped):
    return SmallBatchAGE(shipped[0])


def _assert_same(model: SGELA, kernel: SmallBatchAGE, windows: torch.Tensor, batches=BATCHES) -> None:
    with torch.inference_mode():
        for b in batches:
            out = kernel(windows[:b])
            torch.testing.assert_close(out, model.age(windows[:b], "frame"), **TOLERANCE)
            torch.testing.assert_close(out.flatten(1), model.age(windows[:b], "window"), **TOLERANCE)


def _perturbed(cfg: SGELAConfig) -> SGELA:
    torch.manual_seed(1)
    model = SGELA(cfg).eval()
    with torch.no_grad():  # non-trivial biases (the TF init leaves them at 0 and 1)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_shipped_weights_stay_float16_and_give_reference_ages(shipped, windows, kernel, one_thread):
    assert kernel.weights == "float16"
    _assert_same(shipped[0], kernel, windows, BATCHES + (37,))
    with torch.inference_mode():
        assert kernel(windows[:0]).shape == (0, shipped[0].cfg.f, shipped[0].cfg.age_dim)
        assert (kernel(windows[:8]) - shipped[0].age(windows[:8])).abs().max() < 5e-6  # far inside TOLERANCE


def test_encoder_with_mirror_encodes_alike(shipped, one_thread):
    """What the live pipeline calls: window level, each window with its mirror image."""
    model, meta = shipped
    fast = GaitEncoder(model, meta["normalization"], meta["version"], device="cpu")
    reference = GaitEncoder(model, meta["normalization"], meta["version"], device="cpu", fast=False)
    assert fast.fast is not None and fast.fast.path(KERNEL_MAX_BATCH) == "kernel"
    raw = demo_windows(8, model.cfg.f, "raw", seed=5)  # camera coordinates: the encoder normalises
    for b in BATCHES:
        np.testing.assert_allclose(fast.encode(raw[:b], "window", mirror=True),
                                   reference.encode(raw[:b], "window", mirror=True), **TOLERANCE)


@pytest.mark.parametrize("cfg", [
    SGELAConfig(decoder_input="teacher"),  # eval runs the decoder free: its reconstruction feeds back
    SGELAConfig(n_joints=25, f=4, hidden=32, layers=3, reconstruction="forward", contrastive=True),
    SGELAConfig(n_joints=7, f=9, hidden=40, layers=1, decoder_input="teacher"),  # 40 units: padded panels
])
def test_float32_weights_and_other_configurations_give_reference_ages(cfg, one_thread):
    model = _perturbed(cfg)
    kernel = SmallBatchAGE(model)
    assert kernel.weights == "float32"
    _assert_same(model, kernel, torch.randn(13, cfg.f, cfg.n_joints, 3) * 0.3, BATCHES + (13,))


def test_weights_only_partly_float16(shipped, windows, one_thread):
    model = SGELA(shipped[0].cfg).eval()
    model.load_state_dict(shipped[0].state_dict())
    with torch.no_grad():
        model.axes[1].decoder[0].weight_hh.mul_(1.0 + 1e-7)  # no longer float16 values
    kernel = SmallBatchAGE(model)
    assert kernel.weights == "mixed"
    _assert_same(model, kernel, windows)


def test_avx2_build_gives_the_same_ages(shipped, windows, one_thread):
    """Machines without AVX-512 get 8-float vectors and 2-row micro-kernels."""
    lib = kernel_library(("-mno-avx512f",))
    if lib is None:
        pytest.skip("this CPU or compiler cannot build the AVX2 variant")
    kernel = SmallBatchAGE(shipped[0], library=lib)
    assert kernel.vector == 8
    _assert_same(shipped[0], kernel, windows, BATCHES + (5,))


def test_long_batches_run_in_chunks(shipped, windows, kernel, monkeypatch, one_thread):
    monkeypatch.setattr(small_batch, "CHUNK", 4)
    _assert_same(shipped[0], kernel, windows, (10,))


def test_threads_encode_at_once(shipped, windows, kernel, one_thread):
    """Each thread has its own buffers, and the C call runs without the GIL."""
    with torch.inference_mode():
        expected = {b: shipped[0].age(windows[:b]) for b in (1, 7)}
    errors: list[BaseException] = []

    def work(b: int) -> None:
        try:
            for _ in range(20):
                torch.testing.assert_close(kernel(windows[:b]), expected[b], **TOLERANCE)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(b,)) for b in (1, 7, 1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_bad_window_shapes_are_refused(kernel, windows):
    with pytest.raises(ValueError, match="expected windows"):
        kernel(windows[:2, :, :10])
    with pytest.raises(ValueError, match="expected windows"):
        kernel(windows[0])


def test_library_is_cached_privately(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "own"))
    first = small_batch.compile_kernel()
    assert first.parent == tmp_path / "own" / "gaitcam" / "kernels"
    built = first.stat().st_mtime_ns
    assert small_batch.compile_kernel() == first and first.stat().st_mtime_ns == built  # compiled once
    assert not os.stat(first.parent).st_mode & 0o022
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "shared"))
    folder = tmp_path / "shared" / "gaitcam" / "kernels"
    folder.mkdir(parents=True)
    folder.chmod(0o777)  # others could plant a library here: not used
    assert small_batch._cache_dir() is None


def test_no_compiler_means_no_kernel(monkeypatch, caplog):
    monkeypatch.setattr(small_batch, "_compiler", lambda: None)
    monkeypatch.setattr(small_batch, "_loaded", {})
    assert kernel_library() is None
    assert "no C compiler" in caplog.text
    with pytest.raises(RuntimeError):
        SmallBatchAGE(SGELA(SGELAConfig(hidden=16)))


def test_a_variant_that_does_not_build_is_reported_as_such(caplog):
    """`bench kernels` and the tests build variants; one that fails says which, not that the app
    has no kernel."""
    assert kernel_library(("-mno-such-option",)) is None
    assert "does not build with -mno-such-option" in caplog.text and "run on onnxruntime" not in caplog.text
    assert kernel_library() is not None


CPUINFO = Path("/proc/cpuinfo")
AVX_VNNI = CPUINFO.exists() and " avx_vnni" in CPUINFO.read_text()
int8 = pytest.mark.skipif(kernel_library() is None or not kernel_library().sb_int8(),
                          reason="no int8 kernel here")


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1))


@int8
@pytest.mark.parametrize("cfg", [None, SGELAConfig(hidden=48, layers=3, decoder_input="teacher")])
def test_int8_kernel_follows_the_model_and_gives_every_batch_the_same_ages(cfg, shipped, windows, one_thread):
    """Weights per column and activations per row in int8: every window's AGEs within a cosine of
    1e-4 of the float model's (a wrong scale, zero point or packing falls far below), and a
    window's AGEs the same whatever batch it comes in (each row is quantised on its own)."""
    model = shipped[0] if cfg is None else _perturbed(cfg)
    kernel = SmallBatchAGE(model, precision="int8")
    assert kernel.weights == "int8"
    with torch.inference_mode():
        every = kernel(windows)
        assert _cosines(every, model.age(windows)).min() > 0.9999
        assert (every - model.age(windows)).abs().max() > 1e-5  # not the float path by mistake
        for b in (1, 3, 8, 13):
            torch.testing.assert_close(kernel(windows[:b]), every[:b], rtol=0, atol=0)


@int8
@pytest.mark.parametrize("cfg", [None, SGELAConfig(hidden=48, layers=3, decoder_input="teacher")])
@pytest.mark.parametrize("flags, products", [
    (("-mno-avx512vnni", "-mno-avxvnni"), "vpmaddwd"),  # AVX-512 without VNNI (e.g. Skylake-SP)
    (("-mno-avx512f",), "vnni" if AVX_VNNI else "vpmaddwd"),  # 8 floats: AVX-VNNI (e.g. Alder Lake), else AVX2
    (("-mno-avx512f", "-mno-avxvnni"), "vpmaddwd"),  # AVX2 alone (e.g. Zen 3)
])
def test_every_int8_build_sums_the_same_integers(flags, products, cfg, shipped, windows, one_thread):
    """VPDPBUSD (4 rows a lane, x as u8) and VPMADDWD (2 rows a lane, x as int16), on 8 or 16
    floats: a build's AGEs equal this CPU's own build up to float32 rounding (the attention sums
    in another order on 8 floats), so the KGBD accuracy measured with one holds for the others.
    (On a CPU with AVX2 alone every variant is its own build: there it checks the flags only.)"""
    lib = kernel_library(flags)
    if lib is None:
        pytest.skip("this CPU or compiler cannot build that variant")
    model = shipped[0] if cfg is None else _perturbed(cfg)
    kernel = SmallBatchAGE(model, library=lib, precision="int8")
    assert kernel.int8 == products
    with torch.inference_mode():
        every = kernel(windows)
        torch.testing.assert_close(every, SmallBatchAGE(model, precision="int8")(windows), rtol=0, atol=1e-6)
        for b in (1, 2, 3):
            torch.testing.assert_close(kernel(windows[:b]), every[:b], rtol=0, atol=0)


def test_quantize_columns_rounds_each_column_to_its_own_scale():
    w = np.array([[0.5, -2.0, 0.0], [-0.25, 1.0, 0.0], [0.1, 0.0, 0.0]], np.float32)
    q, scale = small_batch.quantize_columns(w)
    np.testing.assert_allclose(scale, [0.5 / 127, 2.0 / 127, 1.0], rtol=1e-6)  # an all-zero column: scale 1
    assert q.dtype == np.int8 and q[0, 0] == 127 and q[0, 1] == -127 and not q[:, 2].any()
    assert np.abs(q * scale - w).max() <= scale.max() / 2 + 1e-7


def test_int8_where_the_cpu_cannot_is_refused_and_the_encoder_stays_float32(shipped, monkeypatch, caplog,
                                                                             one_thread):
    class NoInt8:
        def __getattr__(self, name):
            return (lambda: 0) if name == "sb_int8" else getattr(kernel_library(), name)

    with pytest.raises(RuntimeError, match="no int8 products"):
        SmallBatchAGE(shipped[0], library=NoInt8(), precision="int8")
    with pytest.raises(ValueError):
        SmallBatchAGE(shipped[0], precision="int4")
    monkeypatch.setattr(small_batch, "kernel_library", lambda *a: NoInt8())
    encoder = GaitEncoder(shipped[0], shipped[1]["normalization"], device="cpu", precision="int8")
    assert encoder.precision == "float32" and encoder.fast is not None and "no int8 encoder" in caplog.text


@int8
def test_int8_encoder_runs_every_batch_on_the_kernel(shipped, windows, one_thread):
    encoder = GaitEncoder(shipped[0], shipped[1]["normalization"], device="cpu", precision="int8")
    assert encoder.precision == "int8" and {encoder.fast.path(b) for b in (1, 12, 13, 300)} == {"kernel"}
    assert encoder.fast.session is None  # no float32 onnxruntime beside it
