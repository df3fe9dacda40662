"""The fast AGE path: the AGEs of `SGELA.age`, computed with a fraction of the calls.

`SGELA.age` is written to be read: per axis an `nn.LSTM` encoder, then a decoder loop of
`LSTMCell`s and attention, so one window costs three times six decoder steps of a dozen small
PyTorch calls each. `FastAGE` gives the same AGEs (tests/test_fast.py checks them against
`SGELA.age`) with:

- each LSTM's two products fused into one ([x; h] times stacked weights, biases pre-summed);
- the encoder run layer by layer, so a layer's input projection is one product over all f
  frames and only h @ W_hh stays in the time loop;
- tanh computed as 2 sigmoid(2x) - 1 (see `_lstm_cell`) and the attention scores and context
  as broadcast products rather than many tiny matrix products (BENCHMARKS.md, kernels);
- no work on zeros: the decoder's all-zero input frames (with "zeros" decoders), the all-zero
  attentional vector at the first step, the attentional vector after the last step, and
  reconstructions (only the context vectors are AGEs);
- two ways to run the products, picked per call by batch size (BENCHMARKS.md):
  small batches run the three axes as ONE group, every product a `baddbmm` over weights
  stacked [3, K, N], which makes the fewest calls; from `ONEDNN_FROM_BATCH` windows on CPU,
  each axis runs on oneDNN products over weights packed once, faster than the BLAS products
  for the few to few hundred rows a batch gives them. oneDNN keeps compiled kernels for every
  shape it has seen (about 4 MB per batch size for this model), so those batches are padded
  to one of a few sizes (`padded_batch`): at most a third of the work is padding, and the
  cache stays bounded however the live batch sizes vary.

It is inference only: the weights are copies, so build a new `FastAGE` after the model changes.
"""
from __future__ import annotations

import logging

import torch

from gaitcam.model.sgela import AXES, SGELA

log = logging.getLogger(__name__)

# Per-axis oneDNN products beat one grouped BLAS product from this many windows on (BENCHMARKS.md:
# below it, the grouped call's fewer dispatches and faster matrix-vector products win).
ONEDNN_FROM_BATCH = 3

# How close FastAGE must come to SGELA.age to be used (float32 rounding differs, as the fused
# products sum in another order; measured differences are below 1e-5 on AGEs of size ~1).
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}


def padded_batch(batch: int) -> int:
    """The batch size a oneDNN call runs at: the next of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers
    of two and 3/4 of them)."""
    power = 1 << max(batch - 1, 0).bit_length()
    return power * 3 // 4 if power >= 4 and power * 3 // 4 >= batch else power


# Cell states of at least this many elements take tanh through sigmoid: the kernel benchmark
# measures it slower at 3 x 1 x 256 elements and faster at 3 x 8 x 256.
_SIGMOID_TANH_FROM = 3 * 8 * 256

# PyTorch's LSTM gate order is (i, f, g, o); (i, f, o, g) puts the three sigmoid gates first.
_GATE_ORDER = (0, 1, 3, 2)


def _gates_last(weight: torch.Tensor, hidden: int) -> torch.Tensor:
    """Rows of an LSTM weight or bias [4H, ...] reordered from (i, f, g, o) to (i, f, o, g),
    with the g rows doubled (exact in floating point) for `_lstm_cell`'s tanh-free update."""
    rows = [weight[k * hidden : (k + 1) * hidden] * (2.0 if k == 2 else 1.0) for k in _GATE_ORDER]
    return torch.cat(rows).detach().float()


def _lstm_cell(gates: torch.Tensor, c: torch.Tensor | None, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM update from pre-activations (i, f, o, 2g); c None means a zero state.

    tanh(x) is computed as 2 sigmoid(2x) - 1, which differs from it by under 2e-7 (absolute;
    tanh's own error is 3e-8): PyTorch's CPU tanh is several times slower than its sigmoid on
    large tensors (BENCHMARKS.md, kernels). The g pre-activations come doubled from the
    weights, so one sigmoid covers all four gates; tanh(c) takes three more small calls, which
    only pay off from `_SIGMOID_TANH_FROM` elements on.
    """
    i, f, o, g2 = torch.sigmoid(gates).split(hidden, dim=-1)
    ig = g2.mul(2.0).sub_(1.0).mul_(i)  # i * tanh(g)
    c = ig if c is None else torch.addcmul(ig, f, c)
    if c.numel() < _SIGMOID_TANH_FROM:
        return torch.tanh(c).mul_(o), c
    return torch.sigmoid(c.mul(2.0)).mul_(2.0).sub_(1.0).mul_(o), c  # o * tanh(c)


class _Product:
    """x [G, M, K] -> x @ W + b [G, M, N] for a group of G axes, each with its own W.

    Weights come in nn.Linear layout [N, K], one per axis. oneDNN products (CPU, G = 1 only)
    pack W once into its blocked layout; otherwise the axes' W are stacked for `baddbmm`.
    """

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor] | None, onednn: bool) -> None:
        self.onednn = onednn
        if onednn:
            (w,) = weights
            self.weight = torch.ops.mkldnn._reorder_linear_weight(w.contiguous(), None)
            self.bias = None if biases is None else biases[0].contiguous()
        else:
            self.weight = torch.stack([w.t() for w in weights]).contiguous()
            self.bias = None if biases is None else torch.stack([b[None] for b in biases])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.onednn:
            return torch.ops.mkldnn._linear_pointwise(x[0], self.weight, self.bias, "none", [], "")[None]
        if self.bias is None:
            return torch.bmm(x, self.weight)
        return torch.baddbmm(self.bias, x, self.weight)


class _AxisGroup:
    """The AGE computation of some of the axis models, run side by side ([G, ...] tensors)."""

    def __init__(self, model: SGELA, axes: list[int], onednn: bool) -> None:
        cfg, h, j = model.cfg, model.cfg.hidden, model.cfg.n_joints
        self.hidden, self.frames, self.layers = h, cfg.f, cfg.layers
        self.feed_back = cfg.decoder_input == "teacher"  # eval-mode "teacher" reads its own output
        mods = [model.axes[a] for a in axes]

        def product(weights: list[torch.Tensor], biases: list[torch.Tensor] | None = None) -> _Product:
            return _Product(weights, biases, onednn)

        def lstm(weights: list[torch.Tensor], b_ih: list[torch.Tensor], b_hh: list[torch.Tensor]) -> _Product:
            return product([_gates_last(w, h) for w in weights], [_gates_last(a + b, h) for a, b in zip(b_ih, b_hh)])

        enc = [m.encoder for m in mods]
        self.enc_ih = [lstm([getattr(e, f"weight_ih_l{k}") for e in enc], [getattr(e, f"bias_ih_l{k}") for e in enc],
                            [getattr(e, f"bias_hh_l{k}") for e in enc]) for k in range(self.layers)]
        self.enc_hh = [product([_gates_last(getattr(e, f"weight_hh_l{k}"), h) for e in enc])
                       for k in range(self.layers)]
        self.dec = []
        for k in range(self.layers):
            cells = [m.decoder[k] for m in mods]
            skip = 0 if k > 0 or self.feed_back else j  # "zeros" decoders' input frame is always 0
            self.dec.append(lstm([torch.cat([c.weight_ih[:, skip:], c.weight_hh], 1) for c in cells],
                                 [c.bias_ih for c in cells], [c.bias_hh for c in cells]))
        cells = [m.decoder[0] for m in mods]  # first step: the attentional vector (and frame) are 0
        self.dec_first = lstm([c.weight_hh for c in cells], [c.bias_ih for c in cells], [c.bias_hh for c in cells])
        self.memory = product([m.memory_layer.weight.detach().float() for m in mods])
        self.attention = product([m.attention_layer.weight.detach().float() for m in mods])
        self.output = product([m.output_layer.weight.detach().float() for m in mods],
                              [m.output_layer.bias.detach().float() for m in mods])

    def contexts(self, x: torch.Tensor) -> torch.Tensor:
        """x [G, B, f, J] (these axes of the windows) -> context vectors [G, B, f, H]."""
        g, b, f, _ = x.shape
        h = self.hidden
        inp = x.reshape(g, b * f, -1)
        states_h: list[torch.Tensor] = []
        states_c: list[torch.Tensor] = []
        for k in range(self.layers):
            pre = self.enc_ih[k](inp).view(g, b, f, 4 * h)  # every frame's input projection at once
            hk, ck = _lstm_cell(pre[:, :, 0], None, h)
            outs = [hk]
            for t in range(1, f):
                hk, ck = _lstm_cell(pre[:, :, t] + self.enc_hh[k](hk), ck, h)
                outs.append(hk)
            inp = torch.stack(outs, 2).view(g, b * f, h)
            states_h.append(hk)
            states_c.append(ck)
        memory = inp.view(g, b, f, h)
        keys = self.memory(inp).view(g, b, f, h)

        contexts: list[torch.Tensor] = []
        attentional = frame = None
        for t in range(f):
            for k in range(self.layers):
                if k > 0:
                    gates = self.dec[k](torch.cat([states_h[k - 1], states_h[k]], -1))
                elif t == 0:
                    gates = self.dec_first(states_h[0])
                else:
                    parts = [frame] if self.feed_back else []
                    gates = self.dec[0](torch.cat(parts + [attentional, states_h[0]], -1))
                states_h[k], states_c[k] = _lstm_cell(gates, states_c[k], h)
            query = states_h[-1]  # [G, B, H]
            alpha = torch.softmax((keys * query[:, :, None]).sum(-1), dim=-1)  # Luong "general" scores
            context = (alpha[..., None] * memory).sum(2)
            contexts.append(context)
            if t < f - 1:  # the last attentional vector would only feed a reconstruction
                attentional = self.attention(torch.cat([query, context], -1))
                if self.feed_back:
                    frame = self.output(attentional)
        return torch.stack(contexts, 2)


class FastAGE:
    """Windows [B, f, J, 3] -> frame-level AGEs [B, f, 3H], equal to `SGELA.age(windows)`
    within float32 rounding. Built on the model's device; call under `torch.inference_mode()`."""

    def __init__(self, model: SGELA) -> None:
        self.hidden = model.cfg.hidden
        self.grouped = _AxisGroup(model, list(range(len(AXES))), onednn=False)
        self.per_axis: list[_AxisGroup] | None = None
        if next(model.parameters()).device.type == "cpu" and torch.backends.mkldnn.is_available():
            try:  # torch.ops.mkldnn's linear ops are internal (torch is pinned): without them, grouped only
                self.per_axis = [_AxisGroup(model, [a], onednn=True) for a in range(len(AXES))]
            except (AttributeError, RuntimeError) as e:
                log.warning("oneDNN linear products unavailable (%s); using batched BLAS products only", e)

    @property
    def backends(self) -> list[str]:
        """The product backends available here."""
        return ["grouped"] + ([] if self.per_axis is None else ["onednn"])

    def backend(self, batch: int) -> str:
        """Which products a batch of this many windows runs on: "grouped" or "onednn"."""
        return "onednn" if self.per_axis is not None and batch >= ONEDNN_FROM_BATCH else "grouped"

    def __call__(self, windows: torch.Tensor, backend: str | None = None) -> torch.Tensor:
        """AGEs of `windows`, on the products `backend` names (default: `self.backend`'s pick)."""
        b, f = windows.shape[:2]
        backend = backend or self.backend(b)
        if backend not in self.backends:
            raise ValueError(f"backend {backend!r} is not available here")
        x = windows.float().permute(3, 0, 1, 2)  # [3, B, f, J], axis-major
        if backend == "onednn":
            pad = padded_batch(b) - b
            if pad:
                x = torch.cat([x, x.new_zeros(x.shape[0], pad, *x.shape[2:])], dim=1)
            ctx = torch.cat([group.contexts(x[a : a + 1]) for a, group in enumerate(self.per_axis)])[:, :b]
        else:
            ctx = self.grouped.contexts(x)
        # [3, B, f, H] -> [B, f, 3 * H]: per frame, the x, y, z context vectors side by side.
        return ctx.permute(1, 2, 0, 3).reshape(b, f, len(AXES) * self.hidden)


def matches_reference(model: SGELA, fast: FastAGE, seed: int = 0) -> bool:
    """Whether `fast` gives `model.age`'s AGEs within TOLERANCE on random windows, on every
    backend it may pick (the oneDNN one at a padded batch size)."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    with torch.inference_mode():
        windows = torch.randn(ONEDNN_FROM_BATCH + 1, cfg.f, cfg.n_joints, len(AXES), generator=gen).to(device)
        reference = model.age(windows)
        return all(torch.allclose(fast(windows, b), reference, **TOLERANCE) for b in fast.backends)
