"""The fast AGE path gives the reference model's AGEs: shipped weights (stored float16, loaded
float32), both backends at every batch size (padded or not), frame and window level, LA and BA, free-running
decoders and other shapes, and without oneDNN; and GaitEncoder uses it only when it matches."""
import numpy as np
import pytest
import torch

import gaitcam.model.encoder as encoder_module
import gaitcam.model.fast as fast_module
from gaitcam.benchmarks.scene import demo_windows
from gaitcam.config import APP_ROOT
from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.fast import ONEDNN_FROM_BATCH, TOLERANCE, FastAGE, matches_reference, padded_batch
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.weights import load_weights
from gaitcam.skeleton.normalize import normalize_windows

WEIGHTS = APP_ROOT / "weights" / "sgela"
BATCHES = (1, ONEDNN_FROM_BATCH, 5, 37)  # 5 and 37 run padded to 6 and 48 on oneDNN


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
            for backend in fast.backends:
                out = fast(windows[:b], backend)
                torch.testing.assert_close(out, reference, **TOLERANCE)
                torch.testing.assert_close(out.flatten(1), model.age(windows[:b], "window"), **TOLERANCE)


def test_backends_by_batch_size(shipped, one_thread):
    fast = FastAGE(shipped[0])
    assert fast.backend(1) == "grouped"
    assert fast.backend(ONEDNN_FROM_BATCH) == ("onednn" if torch.backends.mkldnn.is_available() else "grouped")
    with pytest.raises(ValueError, match="backend"):
        fast(torch.zeros(1, 6, 20, 3), "cuda-graphs")


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


def test_padding_keeps_the_number_of_batch_shapes_small():
    sizes = [padded_batch(b) for b in range(1, 257)]
    assert all(b <= p <= 1.5 * b for b, p in zip(range(1, 257), sizes))  # at most a third is padding
    assert len(set(sizes)) == 16


def test_encoder_uses_the_fast_path_and_encodes_alike(shipped, one_thread):
    model, meta = shipped
    fast = GaitEncoder(model, meta["normalization"], meta["version"], device="cpu")
    reference = GaitEncoder(model, meta["normalization"], meta["version"], device="cpu", fast=False)
    assert fast.fast is not None and reference.fast is None
    raw = demo_windows(40, model.cfg.f, "raw", seed=3)  # camera coordinates: the encoder normalises
    for level in ("frame", "window"):
        np.testing.assert_allclose(fast.encode(raw, level, batch_size=16), reference.encode(raw, level, batch_size=16),
                                   **TOLERANCE)


def test_encoder_falls_back_when_the_fast_path_differs(shipped, monkeypatch, one_thread):
    model, meta = shipped
    other = SGELA(model.cfg).eval()  # untrained: its AGEs are not the shipped model's
    assert not matches_reference(model, FastAGE(other))
    monkeypatch.setattr(encoder_module, "FastAGE", lambda _model: FastAGE(other))
    enc = GaitEncoder(model, meta["normalization"], meta["version"], device="cpu")
    assert enc.fast is None
    raw = demo_windows(3, model.cfg.f, "raw")
    with torch.inference_mode():
        expected = model.age(torch.from_numpy(normalize_windows(raw, meta["normalization"]))).numpy()
    np.testing.assert_array_equal(enc.encode(raw), expected)


def test_without_onednn_every_batch_runs_grouped(shipped, windows, monkeypatch, one_thread):
    real = fast_module._AxisGroup

    def no_onednn(model, axes, onednn):
        if onednn:
            raise RuntimeError("no mkldnn linear ops in this torch")
        return real(model, axes, onednn)

    monkeypatch.setattr(fast_module, "_AxisGroup", no_onednn)
    fast = FastAGE(shipped[0])
    assert fast.per_axis is None and fast.backends == ["grouped"] and fast.backend(256) == "grouped"
    _assert_same(shipped[0], fast, windows)
