"""The kernel choices inside `FastAGE`, each against what it replaced, at the model's shapes.

Every entry is (before, after) in microseconds per call, medians of interleaved calls, so
BENCHMARKS.md can give each kept optimisation its own before/after from the same command:

- tanh: `torch.tanh` against 2 sigmoid(2x) - 1 on one LSTM layer's cell state, all axes;
- attention: Luong scores and context as batched matrix products (`bmm`, as `SGELA`)
  against broadcast multiply-and-sum, per batch size;
- products: one gate product (K = 2H, N = 4H) for all three axes as one BLAS `baddbmm`
  against three oneDNN products on weights packed once, per batch size.
"""
from __future__ import annotations

import numpy as np
import torch

from gaitcam.benchmarks.timing import interleaved
from gaitcam.model.sgela import AXES, SGELAConfig

_AXES = len(AXES)


def _pair(before, after, rounds: int) -> dict:
    times = interleaved({"before": before, "after": after}, rounds, torch.device("cpu"))
    b, a = (float(np.median(times[k])) * 1e6 for k in ("before", "after"))
    return {"before_us": round(b, 1), "after_us": round(a, 1), "speedup": round(b / a, 2)}


def bench_kernels(cfg: SGELAConfig, batches: tuple[int, ...] = (1, 8, 256), rounds: int = 50) -> dict:
    """Before/after timings of the three kernel choices (CPU, at the thread count set)."""
    h, f = cfg.hidden, cfg.f
    out: dict = {"tanh": {}, "attention": {}, "products": {}}
    with torch.inference_mode():
        for b in batches:
            c = torch.randn(_AXES, b, h)
            out["tanh"][str(b)] = _pair(lambda: torch.tanh(c), lambda: torch.sigmoid(c.mul(2.0)).mul_(2.0).sub_(1.0),
                                        rounds)
            keys, memory = torch.randn(_AXES * b, f, h), torch.randn(_AXES * b, f, h)
            query = torch.randn(_AXES * b, h)

            def matmuls() -> torch.Tensor:
                alpha = torch.softmax(torch.bmm(keys, query[:, :, None]), dim=1)
                return torch.bmm(alpha.transpose(1, 2), memory)

            def broadcast() -> torch.Tensor:
                alpha = torch.softmax((keys * query[:, None]).sum(-1), dim=-1)
                return (alpha[..., None] * memory).sum(1)

            out["attention"][str(b)] = _pair(matmuls, broadcast, rounds)
            if torch.backends.mkldnn.is_available():
                x = torch.randn(_AXES, b, 2 * h)
                w = torch.randn(_AXES, 4 * h, 2 * h) * 0.05
                bias = torch.randn(_AXES, 1, 4 * h)
                stacked = w.transpose(1, 2).contiguous()
                packed = [torch.ops.mkldnn._reorder_linear_weight(w[a].contiguous(), None) for a in range(_AXES)]
                out["products"][str(b)] = _pair(
                    lambda: torch.baddbmm(bias, x, stacked),
                    lambda: [torch.ops.mkldnn._linear_pointwise(x[a], packed[a], bias[a, 0], "none", [], "")
                             for a in range(_AXES)],
                    rounds)
    return out
