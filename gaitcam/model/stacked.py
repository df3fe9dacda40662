"""The GPU AGE path: `SGELA.age` with the three axes stacked into one computation, replayed from
CUDA graphs at small batches, in float32, float16 or bfloat16.

`SGELA.age` runs the x, y and z encoder-decoders one after another, each step a dozen small
calls: 194 operator calls per batch (counted at batch 1), several of which launch more than one
kernel on a GPU (an `lstm_cell` three, cuDNN's `lstm` one or more per step), each of a few
microseconds' work, so launching, not arithmetic, sets its time. Two changes take most of that away:

- `StackedAGE` stacks the three axes' weights ([3, in, out] per layer) and runs every step for all
  axes as one batched product (`torch.bmm`), with the LSTM gates fused into one kernel on CUDA
  (the kernel `nn.LSTMCell` uses there): 122 operator calls per batch, about one kernel each. It reads the
  model's weights, so it computes the same function (checked against `SGELA.age` whenever
  `GaitEncoder` builds one, and in tests/test_stacked.py).
- `CudaGraphs` captures that computation once per batch size bucket (1, 2, 4 ... 256) and
  replays it: one launch per batch. A batch is padded up to its bucket; the padding rows are
  computed and dropped.

float16 and bfloat16 keep weights, activations and LSTM states in that type (products accumulate
in float32 on the GPU's matrix units); AGEs come back as float32. They are opt-in (`precision`):
docs/BENCHMARKS.md has their KGBD Rank-1 beside float32's. On the CPU the same code runs without
graphs (how the reduced-precision accuracy is checked where there is no GPU).
"""
from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable

import torch

from gaitcam.model.fast import agrees, cosine_agrees
from gaitcam.model.sgela import AXES, SGELA

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
GRAPH_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)  # the captured batch sizes; larger batches run eagerly
# How close the float32 path on a GPU must come to `SGELA.age` on the CPU (cuBLAS sums in
# other orders; as tests/test_sgela.py's CUDA test allows).
GPU_TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}
# How close float16 and bfloat16 must come: every window's AGEs at this cosine or above (on the CPU,
# 300 demo windows with the shipped weights: bfloat16 0.99998 at the lowest, float16 0.999999).
REDUCED_MIN_COSINE = 0.999


def _stack(tensors: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors]).to(dtype).contiguous()


def _plain_cell(gi: torch.Tensor, gh: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step for all axes: the gates' input part gi (biases included) and recurrent part
    gh [3, B, 4H] (PyTorch's gate order i, f, g, o), the cell state c [3, B, H] -> the new (h, c)."""
    i, f, g, o = (gi + gh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _fused_cell(gi: torch.Tensor, gh: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`_plain_cell` as nn.LSTMCell's fused CUDA kernel: one launch instead of seven."""
    n = gi.shape[-1]
    h, c_new, _ = torch.ops.aten._thnn_fused_lstm_cell(gi.view(-1, n), gh.view(-1, n), c.view(-1, n // 4))
    return h.view(c.shape), c_new.view(c.shape)


def _fused_cell_works(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether `_fused_cell` (a private PyTorch function) runs here in `dtype` and gives
    `_plain_cell`'s states."""
    gen = torch.Generator(device).manual_seed(0)
    gi, gh = (torch.randn(3, 2, 64, device=device, generator=gen).to(dtype) for _ in range(2))
    c = torch.randn(3, 2, 16, device=device, generator=gen).to(dtype)
    try:
        fused = _fused_cell(gi, gh, c)
    except (RuntimeError, NotImplementedError):  # not in this build
        return False
    return all(torch.allclose(a.float(), b.float(), rtol=1e-2, atol=1e-2) for a, b in zip(fused, _plain_cell(gi, gh, c)))


class StackedAGE:
    """Frame-level AGEs [B, f, 3H] (float32) of windows [B, f, J, 3], the three axes computed
    together. The weights are copied (in `dtype`) at construction: build a new one after training."""

    def __init__(self, model: SGELA, dtype: torch.dtype = torch.float32) -> None:
        cfg, axes = model.cfg, list(model.axes)
        self.cfg, self.dtype = cfg, dtype
        self.device = next(model.parameters()).device
        # Encoder layers: input and recurrent weights transposed to [3, in, 4H] and [3, H, 4H]
        # (PyTorch's gate order i, f, g, o kept: the fused CUDA cell expects it), biases summed.
        self.enc = [
            (_stack([getattr(a.encoder, f"weight_ih_l{k}").T for a in axes], dtype),
             _stack([getattr(a.encoder, f"weight_hh_l{k}").T for a in axes], dtype),
             _stack([(getattr(a.encoder, f"bias_ih_l{k}") + getattr(a.encoder, f"bias_hh_l{k}"))[None] for a in axes],
                    dtype))
            for k in range(cfg.layers)
        ]
        # Decoder cells. The first reads [frame; attentional]: its weight is split into the part
        # for the frame (used only when the decoder feeds its reconstruction back) and the rest.
        j = cfg.n_joints
        self.dec = [
            (_stack([a.decoder[k].weight_ih.T for a in axes], dtype),
             _stack([a.decoder[k].weight_hh.T for a in axes], dtype),
             _stack([(a.decoder[k].bias_ih + a.decoder[k].bias_hh)[None] for a in axes], dtype))
            for k in range(cfg.layers)
        ]
        self.frame_in, first = self.dec[0][0][:, :j].contiguous(), self.dec[0][0][:, j:].contiguous()
        self.dec[0] = (first, *self.dec[0][1:])
        self.feed_back = cfg.decoder_input != "zeros"  # "zeros": the decoder reads zero frames
        self.memory_w = _stack([a.memory_layer.weight.T for a in axes], dtype)
        w_c = [a.attention_layer.weight.T for a in axes]  # [2H, H]: query rows, then context rows
        self.query_w = _stack([w[: cfg.hidden] for w in w_c], dtype)
        self.context_w = _stack([w[cfg.hidden:] for w in w_c], dtype)
        self.out_w = _stack([a.output_layer.weight.T for a in axes], dtype)
        self.out_b = _stack([a.output_layer.bias[None] for a in axes], dtype)
        self.fused = self.device.type == "cuda" and _fused_cell_works(self.device, dtype)

    def _cell(self, gi: torch.Tensor, gh: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (_fused_cell if self.fused else _plain_cell)(gi, gh, c)

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        b, f, h = windows.shape[0], cfg.f, cfg.hidden
        x = windows.to(self.device, self.dtype).permute(1, 3, 0, 2)  # [f, 3, B, J]
        finals = []
        layer_in = x
        for w_in, w_hh, bias in self.enc:
            projected = torch.matmul(layer_in, w_in) + bias  # [f, 3, B, 4H]: every step's input part at once
            hid = cell = x.new_zeros(3, b, h)
            out = x.new_empty(f, 3, b, h)
            for t in range(f):
                hid, cell = self._cell(projected[t], torch.bmm(hid, w_hh), cell)
                out[t] = hid
            finals.append((hid, cell))
            layer_in = out
        memory = layer_in.permute(1, 2, 0, 3)  # [3, B, f, H]: the top layer's outputs
        keys = torch.matmul(memory, self.memory_w[:, None]).reshape(3 * b, f, h)
        memory = memory.reshape(3 * b, f, h)
        state = finals
        attentional = x.new_zeros(3, b, h)
        frame = x.new_zeros(3, b, cfg.n_joints)
        contexts = x.new_empty(3, b, f, h)
        for t in range(f):
            inp = attentional  # input feeding (plus the fed-back frame when feed_back)
            for k, (w_in, w_hh, bias) in enumerate(self.dec):
                gi = torch.baddbmm(bias, inp, w_in)
                if k == 0 and self.feed_back:
                    gi = torch.baddbmm(gi, frame, self.frame_in)
                state[k] = self._cell(gi, torch.bmm(state[k][0], w_hh), state[k][1])
                inp = state[k][0]
            query = inp  # the top decoder layer's output [3, B, H]
            alpha = torch.softmax(torch.bmm(keys, query.reshape(3 * b, h, 1)), dim=1)  # [3B, f, 1]
            context = torch.bmm(alpha.transpose(1, 2), memory).view(3, b, h)
            contexts[:, :, t] = context
            attentional = torch.baddbmm(torch.bmm(query, self.query_w), context, self.context_w)
            if self.feed_back:
                frame = torch.baddbmm(self.out_b, attentional, self.out_w)
        return contexts.permute(1, 2, 0, 3).reshape(b, f, 3 * h).float()


class CudaGraphs:
    """`fn` (windows [B, f, J, 3] -> AGEs) captured as one CUDA graph per size in `batches` and
    replayed: a batch of n windows is copied into the smallest captured size >= n (the rows
    after it keep earlier windows, computed and dropped), larger batches call `fn` directly.
    The graphs share their input and output buffers, so calls are serialised, on a stream of
    their own that waits for the caller's stream and that the caller's stream then waits for
    (callers may use streams of their own)."""

    def __init__(self, fn, shape: tuple[int, ...], device: torch.device,
                 batches: tuple[int, ...] = GRAPH_BATCHES) -> None:
        self.fn, self.batches = fn, tuple(sorted(batches))
        self.lock = threading.Lock()
        with torch.inference_mode(False):  # a normal tensor: written in place from any mode
            self.inputs = torch.zeros(self.batches[-1], *shape, device=device)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        pool = torch.cuda.graph_pool_handle()
        # Everything on one side stream, inside guards that restore the device and the stream even
        # when a capture fails (torch.cuda.graph does not on its own).
        with torch.cuda.device(device):
            self.stream = torch.cuda.Stream(device)
            self.stream.wait_stream(torch.cuda.current_stream(device))
            with torch.inference_mode(), torch.cuda.stream(self.stream):
                for _ in range(2):  # warm-up off the capture: cuBLAS handles, workspaces
                    fn(self.inputs)
                for b in reversed(self.batches):  # largest first: the smaller ones reuse its memory
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph, pool=pool, stream=self.stream):
                        out = fn(self.inputs[:b])
                    self.graphs[b] = (graph, out)
            self.stream.synchronize()

    def bucket(self, n: int) -> int | None:
        """The captured size a batch of n windows runs in (None: above them all, run directly)."""
        return next((b for b in self.batches if b >= n), None)

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        b = self.bucket(len(windows))
        if b is None:
            return self.fn(windows)
        with self.lock:
            caller = torch.cuda.current_stream(self.inputs.device)
            self.stream.wait_stream(caller)  # the windows are ready
            with torch.cuda.stream(self.stream):
                self.inputs[: len(windows)].copy_(windows, non_blocking=True)
                graph, out = self.graphs[b]
                graph.replay()
                ages = out[: len(windows)].clone()
            caller.wait_stream(self.stream)  # the AGEs are ready before the caller reads them
            ages.record_stream(caller)
            return ages


def stacked_path(model: SGELA, precision: str = "float32") -> tuple[Callable[[torch.Tensor], torch.Tensor] | None, str]:
    """`model`'s AGEs as `StackedAGE` in `precision` (CUDA graphs on a CUDA device), and the
    precision it runs in, once it agrees with `model.age` on random windows: in float32 within
    GPU_TOLERANCE, reduced precisions at REDUCED_MIN_COSINE. What does not agree, or cannot be
    built, is said in the log and replaced: a reduced precision by float32, float32 by `model.age`
    (None)."""
    if precision not in DTYPES:
        log.warning("%s arithmetic is the CPU kernel's; encoding in float32 here", precision)
        precision = "float32"
    device = next(model.parameters()).device
    path: Callable[[torch.Tensor], torch.Tensor] = StackedAGE(model, DTYPES[precision])
    if device.type == "cuda":
        try:
            path = CudaGraphs(path, (model.cfg.f, model.cfg.n_joints, len(AXES)), device)
        except RuntimeError as e:
            log.warning("no CUDA graphs (%s); each batch launches its kernels", e)
    # Checked against the model on the CPU: cuDNN's LSTM on the GPU may round as TF32.
    reference = model if device.type == "cpu" else copy.deepcopy(model).cpu()
    if precision == "float32":
        if agrees(reference, path, close=lambda a, b: torch.allclose(a, b, **GPU_TOLERANCE)):
            return path, precision
        log.warning("the stacked encoder differs from the model here; using the model itself")
        return None, "float32"
    if cosine_agrees(reference, path, REDUCED_MIN_COSINE):
        return path, precision
    log.warning("%s AGEs differ from the model's beyond cosine %g; encoding in float32", precision, REDUCED_MIN_COSINE)
    return stacked_path(model, "float32")
