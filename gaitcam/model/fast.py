"""The fast AGE path: `SGELA.age` exported to ONNX and run by onnxruntime on the CPU.

`SGELA.age` is written to be read: per axis an `nn.LSTM` encoder, then a decoder loop of
`LSTMCell`s and attention, so one window costs three times six decoder steps of a dozen small
PyTorch calls, each paying Python and dispatch overhead that at small batches costs more than
the arithmetic (BENCHMARKS.md). Exporting the same module to ONNX records those calls once as a
graph; onnxruntime then runs it with no per-step Python, fuses and constant-folds it, and runs
each encoder LSTM as one kernel. The graph is traced from the model itself, so there is no
second copy of the network to keep in step: `matches_reference` checks the AGEs against
`SGELA.age` whenever one is built (tests/test_fast.py too), and `GaitEncoder` falls back to the
model when they differ or onnxruntime is missing.

CPU only (the pinned onnxruntime is the CPU build); on CUDA the encoder runs the model itself.
It is inference only: the graph holds copies of the weights, so export again after training.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from gaitcam.model.sgela import AXES, SGELA

# How close FastAGE must come to SGELA.age to be used: onnxruntime sums products in another
# order (measured differences up to 2e-5 on AGEs of size ~1, at batch 256).
TOLERANCE = {"rtol": 1e-4, "atol": 5e-5}
OPSET = 17


class _FrameAGEs(torch.nn.Module):
    """The module that is exported: windows [B, f, J, 3] -> frame-level AGEs [B, f, 3H]."""

    def __init__(self, model: SGELA) -> None:
        super().__init__()
        self.model = model

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.model.age(windows, "frame")


def export_onnx(model: SGELA) -> bytes:
    """The model's frame-level AGE computation (a float32 CPU model) as an ONNX graph for any
    batch size. `SGELA.age` switches to eval mode itself, so the model's mode is left alone."""
    cfg = model.cfg
    example = torch.zeros(2, cfg.f, cfg.n_joints, len(AXES))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notices
        torch.onnx.export(_FrameAGEs(model), (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["windows"], output_names=["ages"],
                          dynamic_axes={"windows": {0: "batch"}, "ages": {0: "batch"}})
    return buffer.getvalue()


class FastAGE:
    """Windows [B, f, J, 3] -> frame-level AGEs [B, f, 3H], equal to `SGELA.age(windows)`
    within TOLERANCE, from an onnxruntime session on `threads` CPU threads.

    `optimize=False` runs the graph as exported, without onnxruntime's graph optimisations:
    the benchmark's "before" of that optimisation.
    """

    def __init__(self, model: SGELA, threads: int = 1, optimize: bool = True) -> None:
        import onnxruntime as ort  # imported here: a missing onnxruntime only loses the fast path

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                            else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        self.threads = threads
        self.session = ort.InferenceSession(export_onnx(model), options, providers=["CPUExecutionProvider"])

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(windows.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {"windows": x})[0])


def matches_reference(model: SGELA, fast: FastAGE, seed: int = 0) -> bool:
    """Whether `fast` gives `model.age`'s AGEs within TOLERANCE on random windows, at batch
    sizes other than the one the graph was traced at."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    with torch.inference_mode():
        windows = torch.randn(5, cfg.f, cfg.n_joints, len(AXES), generator=gen)
        reference = model.age(windows.to(next(model.parameters()).device)).cpu()
        return all(torch.allclose(fast(windows[:b]), reference[:b], **TOLERANCE) for b in (1, 5))
