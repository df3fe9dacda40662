"""The stacked (GPU) AGE path: the same function as `SGELA.age`, in float32 exactly, in float16 and
bfloat16 within REDUCED_MIN_COSINE; CUDA graphs (padding, large batches, threads) where CUDA is."""
import logging
import threading

import numpy as np
import pytest
import torch

import gaitcam.model.stacked as stacked_module
from gaitcam.benchmarks.scene import demo_windows
from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.stacked import GPU_TOLERANCE, REDUCED_MIN_COSINE, CudaGraphs, StackedAGE, stacked_path
from gaitcam.model.weights import load_weights

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def _cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1))


@pytest.fixture(scope="module")
def shipped():
    model, meta = load_weights("weights/sgela")
    windows = torch.from_numpy(demo_windows(64, model.cfg.f, meta["normalization"]))
    return model.eval(), meta, windows


@pytest.mark.parametrize("cfg", [SGELAConfig(), SGELAConfig(decoder_input="teacher"),
                                 SGELAConfig(layers=3, hidden=16, n_joints=25, f=10)],
                         ids=["paper", "teacher-free-running", "three-layers"])
def test_float32_is_the_models_function(cfg, one_thread):
    torch.manual_seed(0)
    model = SGELA(cfg).eval()
    for p in model.parameters():  # biases are zero at initialisation: give them values to check
        p.data += 0.05 * torch.randn_like(p)
    windows = torch.randn(7, cfg.f, cfg.n_joints, 3)
    with torch.inference_mode():
        torch.testing.assert_close(StackedAGE(model)(windows), model.age(windows), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", ["float16", "bfloat16"])
def test_reduced_precisions_stay_within_the_cosine_and_really_round(precision, shipped, one_thread):
    model, _, windows = shipped
    with torch.inference_mode():
        reference = model.age(windows)
        got = StackedAGE(model, stacked_module.DTYPES[precision])(windows)
    assert got.dtype == torch.float32 and got.shape == reference.shape
    cos = _cosines(got, reference)
    assert cos.min() >= REDUCED_MIN_COSINE
    assert (got - reference).abs().max() > 1e-4  # it did compute in the narrower type


def test_encoder_in_bfloat16_on_the_cpu_encodes_like_float32(shipped, one_thread):
    model, meta, _ = shipped
    raw = demo_windows(20, model.cfg.f, "raw")  # the encoder normalises
    half = GaitEncoder(model, meta["normalization"], meta["version"], device="cpu", precision="bfloat16")
    full = GaitEncoder(model, meta["normalization"], meta["version"], device="cpu")
    assert half.precision == "bfloat16" and isinstance(half.fast, StackedAGE)
    a, b = half.encode(raw, mirror=True), full.encode(raw, mirror=True)
    assert a.shape == b.shape == (20, 2, model.cfg.f, model.cfg.age_dim)
    assert _cosines(torch.from_numpy(a.reshape(40, -1)), torch.from_numpy(b.reshape(40, -1))).min() >= REDUCED_MIN_COSINE


def test_a_precision_that_strays_falls_back_to_float32(shipped, monkeypatch, caplog, one_thread):
    model = shipped[0]
    monkeypatch.setattr(stacked_module, "REDUCED_MIN_COSINE", 1.5)  # nothing reaches it
    with caplog.at_level(logging.WARNING):
        path, precision = stacked_path(model, "float16")
    assert precision == "float32" and isinstance(path, StackedAGE) and path.dtype == torch.float32
    assert "encoding in float32" in caplog.text


def test_int8_is_not_a_stacked_precision(shipped, caplog, one_thread):
    with caplog.at_level(logging.WARNING):
        path, precision = stacked_path(shipped[0], "int8")
    assert precision == "float32" and path.dtype == torch.float32 and "CPU kernel" in caplog.text


@CUDA
def test_cuda_graphs_give_the_eager_results_at_every_batch_size(shipped):
    model = SGELA(shipped[0].cfg).cuda().eval()
    model.load_state_dict(shipped[0].state_dict())
    eager = StackedAGE(model)
    graphs = CudaGraphs(eager, (model.cfg.f, model.cfg.n_joints, 3), torch.device("cuda"), batches=(1, 4, 64))
    assert [graphs.bucket(n) for n in (1, 2, 4, 5, 64, 65)] == [1, 4, 4, 64, 64, None]
    windows = torch.randn(300, model.cfg.f, model.cfg.n_joints, 3, device="cuda")
    with torch.inference_mode():
        for n in (64, 3, 1, 5, 300):  # a small batch after a larger one: stale rows must not leak in
            # (a padded batch goes through other cuBLAS kernels than eager at its own size)
            torch.testing.assert_close(graphs(windows[:n]), eager(windows[:n]), rtol=1e-4, atol=1e-5)


@CUDA
def test_cuda_encoder_matches_the_cpu_model_in_every_precision(shipped):
    model, meta, windows = shipped
    with torch.inference_mode():
        reference = model.age(windows)
    for precision in ("float32", "float16", "bfloat16"):
        gpu = SGELA(model.cfg)
        gpu.load_state_dict(model.state_dict())
        enc = GaitEncoder(gpu, meta["normalization"], meta["version"], device="cuda", precision=precision)
        assert enc.precision == precision and isinstance(enc.fast, CudaGraphs)
        with torch.inference_mode():
            got = enc.fast(windows.cuda()).cpu()
        if precision == "float32":
            torch.testing.assert_close(got, reference, **GPU_TOLERANCE)
        else:
            assert _cosines(got, reference).min() >= REDUCED_MIN_COSINE


@CUDA
@pytest.mark.parametrize("own_streams", [False, True], ids=["default-stream", "own-streams"])
def test_cuda_graphs_serve_threads_at_once(shipped, own_streams):
    model = SGELA(shipped[0].cfg).cuda().eval()
    model.load_state_dict(shipped[0].state_dict())
    eager = StackedAGE(model)
    graphs = CudaGraphs(eager, (model.cfg.f, model.cfg.n_joints, 3), torch.device("cuda"))
    batches = [torch.randn(n, model.cfg.f, model.cfg.n_joints, 3, device="cuda") for n in (1, 3, 8)]
    with torch.inference_mode():
        expected = [eager(b) for b in batches]
    errors: list[str] = []

    def work(k: int) -> None:
        stream = torch.cuda.Stream() if own_streams else torch.cuda.current_stream()
        with torch.inference_mode(), torch.cuda.stream(stream):
            for i in range(200):
                j = (i + k) % 3
                if not torch.allclose(graphs(batches[j]), expected[j], rtol=1e-4, atol=1e-5):
                    errors.append(f"thread {k} call {i}")

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@CUDA
def test_cuda_graphs_built_in_inference_mode_serve_outside_it(shipped):
    model = SGELA(shipped[0].cfg).cuda().eval()
    model.load_state_dict(shipped[0].state_dict())
    with torch.inference_mode():
        graphs = CudaGraphs(StackedAGE(model), (model.cfg.f, model.cfg.n_joints, 3), torch.device("cuda"),
                            batches=(1, 4))
    windows = torch.randn(3, model.cfg.f, model.cfg.n_joints, 3, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(graphs(windows), StackedAGE(model)(windows), rtol=1e-4, atol=1e-5)
