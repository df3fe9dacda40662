"""The fast AGE path (the model exported to onnxruntime) gives the reference model's AGEs:
shipped weights (stored float16, loaded float32) at batch sizes other than the traced one,
frame and window level, LA and BA, free-running decoders and other shapes; GaitEncoder uses it
only when it matches, and falls back to the model without onnxruntime."""
import sys

import numpy as np
import pytest
import torch

import gaitcam.model.encoder as encoder_module
from gaitcam.benchmarks.scene import demo_windows
from gaitcam.config import WEIGHTS_DIR
from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.fast import TOLERANCE, FastAGE, matches_reference
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.weights import load_weights
from gaitcam.skeleton.normalize import normalize_windows

WEIGHTS = WEIGHTS_DIR / "sgela"
BATCHES = (1, 3, 37)  # the graph is traced at batch 2


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
    for fast in (FastAGE(shipped[0], optimize=False), FastAGE(shipped[0], threads=2)):
        _assert_same(shipped[0], fast, windows)


@pytest.mark.parametrize("attention", ["LA", "BA"])
def test_shipped_weights_give_reference_ages(shipped, windows, attention, one_thread):
    """LA and BA differ only in the training loss; both configs must still encode alike."""
    trained, _ = shipped
    model = SGELA(SGELAConfig.from_dict({**trained.cfg.to_dict(), "attention": attention})).eval()
    model.load_state_dict(trained.state_dict())
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
    _assert_same(model, FastAGE(model), windows)


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
    monkeypatch.setattr(encoder_module, "FastAGE", lambda _model, threads: FastAGE(other))
    _assert_encoder_uses_the_model(model, meta)


def test_encoder_without_onnxruntime_uses_the_model(shipped, monkeypatch, one_thread):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as when it is not installed
    model, meta = shipped
    _assert_encoder_uses_the_model(model, meta)
