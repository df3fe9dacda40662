"""SGE-LA: self-supervised gait encoding with locality-aware attention (Rao et al., IJCAI 2020).

The whole model in one file. Read it top to bottom:

1. `SGELAConfig`   the hyper-parameters and the paper's ablation switches.
2. `AxisSeq2Seq`   one encoder-decoder for ONE coordinate axis: it reads a window of f frames of
                   J joint values and rebuilds it (in reverse order by default) through Luong
                   attention with input feeding. Its attention context vectors are the AGEs.
3. `SGELA`         three independent AxisSeq2Seq (x, y, z), the losses, and AGE extraction;
                   optionally the TPAMI extension's projection heads for a contrastive loss (§5).

Shapes: B windows, f frames per window, J joints, H hidden units. A window is [B, f, J, 3].
Spec references (§) are to ../shared/docs/SGE-LA-SPEC.md, which describes the official
TensorFlow code line by line; where that code is buggy, the fix and the faithful option are
both here and named.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

AXES = ("x", "y", "z")


@dataclass(frozen=True)
class SGELAConfig:
    """Architecture and ablation switches (the defaults are the paper's model, §9)."""

    n_joints: int = 20  # canonical Kinect v1 layout
    f: int = 6  # frames per window ("sequence length" in the paper)
    hidden: int = 256  # LSTM units, encoder and decoder
    layers: int = 2  # stacked LSTM layers, encoder and decoder
    attention: Literal["LA", "BA"] = "LA"  # locality-aware loss on the attention, or plain (BA)
    reconstruction: Literal["reverse", "forward"] = "reverse"  # target frame order
    # What the decoder reads besides its fed-back attentional vector (§2.2, §8.1):
    #   "zeros":   nothing (all-zero frames), as the released code effectively did, in training
    #              and at extraction alike;
    #   "teacher": while training, the previous target frame (true teacher forcing); at
    #              extraction, its own previous reconstruction (free running), so an AGE never
    #              depends on a target.
    decoder_input: Literal["zeros", "teacher"] = "zeros"
    la_width: float | None = None  # D of the Gaussian locality mask; None means D = f (§2.3)
    # TPAMI extension (§5): a projection head per axis, FC(f·H -> P) + ReLU + FC(P -> P), on
    # the window-level AGE, for a contrastive loss between two windows of the same sequence.
    # The heads only shape training; AGEs are still the context vectors.
    contrastive: bool = False
    projection: int = 256

    def __post_init__(self) -> None:
        if self.attention not in ("LA", "BA"):
            raise ValueError(f"attention must be LA or BA, not {self.attention!r}")
        if self.reconstruction not in ("reverse", "forward"):
            raise ValueError(f"reconstruction must be reverse or forward, not {self.reconstruction!r}")
        if self.decoder_input not in ("zeros", "teacher"):
            raise ValueError(f"decoder_input must be zeros or teacher, not {self.decoder_input!r}")

    @property
    def age_dim(self) -> int:
        """Size of one frame-level AGE: the three axes' context vectors side by side."""
        return len(AXES) * self.hidden

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SGELAConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SGE-LA config keys: {sorted(unknown)}")
        return cls(**data)


def locality_mask(f: int, width: float | None = None, reverse: bool = True) -> torch.Tensor:
    """The LA Gaussian mask M [f_dec, f_enc] (§2.3).

    Decoder step t rebuilds input frame p_t (f-1-t when reversing, t otherwise), so its
    attention should sit near p_t: M[t, s] = exp(-(s - p_t)^2 / (2 (D/2)^2)), D = f by default.
    For f = 6, M around its centre is 1, .946, .801, .607, .411, .249.
    """
    d = float(f if width is None else width)
    t = torch.arange(f, dtype=torch.float64)
    centre = (f - 1 - t) if reverse else t
    s = torch.arange(f, dtype=torch.float64)
    mask = torch.exp(-((s[None, :] - centre[:, None]) ** 2) / (2 * (d / 2) ** 2))
    return mask.float()


class AxisOutput(NamedTuple):
    reconstruction: torch.Tensor  # [B, f, J] rebuilt frames, in target order
    alignments: torch.Tensor  # [B, f_dec, f_enc] attention weights of each decoder step
    contexts: torch.Tensor  # [B, f_dec, H] attention context vectors: this axis' AGEs


class AxisSeq2Seq(nn.Module):
    """Encoder-decoder for one coordinate axis (§2.1-2.2).

    Encoder: 2-layer LSTM over the f frames (no input projection: the J values of the axis go
    straight in). Decoder: 2-layer LSTM started from the encoder's final states; at each step
    Luong "general" attention over the encoder outputs, attentional vector W_c[h; c] (no bias,
    no tanh, as TF 1.x computes it) fed back as the next step's input (input feeding), and a
    dense layer from it to the J rebuilt values.
    """

    def __init__(self, cfg: SGELAConfig) -> None:
        super().__init__()
        j, h = cfg.n_joints, cfg.hidden
        self.cfg = cfg
        self.encoder = nn.LSTM(j, h, num_layers=cfg.layers, batch_first=True)
        self.decoder = nn.ModuleList(
            [nn.LSTMCell(j + h, h)] + [nn.LSTMCell(h, h) for _ in range(cfg.layers - 1)]
        )
        self.memory_layer = nn.Linear(h, h, bias=False)  # W_m: keys = H W_m
        self.attention_layer = nn.Linear(2 * h, h, bias=False)  # W_c: [h_dec; c] -> attentional
        self.output_layer = nn.Linear(h, j)  # attentional vector -> rebuilt axis values
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """TF 1.x initialisation of the original: LSTM weights U(-0.1, 0.1), biases 0 plus the
        LSTMCell forget bias of 1, Glorot-uniform attention layers, output N(0, 0.1) truncated."""
        for lstm in (self.encoder, *self.decoder):
            for name, p in lstm.named_parameters():
                if name.startswith("weight"):
                    nn.init.uniform_(p, -0.1, 0.1)
                else:
                    nn.init.zeros_(p)
                    if name.startswith("bias_ih"):  # PyTorch gate order: input, forget, cell, output
                        p.data[self.cfg.hidden : 2 * self.cfg.hidden] = 1.0
        nn.init.xavier_uniform_(self.memory_layer.weight)
        nn.init.xavier_uniform_(self.attention_layer.weight)
        nn.init.trunc_normal_(self.output_layer.weight, std=0.1, a=-0.2, b=0.2)
        nn.init.zeros_(self.output_layer.bias)

    def forward(self, x: torch.Tensor, decoder_inputs: torch.Tensor | None) -> AxisOutput:
        """x: [B, f, J] one axis of the windows. decoder_inputs: [B, f, J] frames the decoder
        reads at each step, or None to feed back its own previous reconstruction (zeros first)."""
        memory, (h_n, c_n) = self.encoder(x)  # memory [B, f, H]; h_n, c_n [layers, B, H]
        keys = self.memory_layer(memory)
        state = [(h_n[k], c_n[k]) for k in range(self.cfg.layers)]
        attentional = memory.new_zeros(x.shape[0], self.cfg.hidden)
        frame = x.new_zeros(x.shape[0], x.shape[2])
        outputs, alignments, contexts = [], [], []
        for t in range(x.shape[1]):
            if decoder_inputs is not None:
                frame = decoder_inputs[:, t]
            inp = torch.cat([frame, attentional], dim=-1)  # input feeding
            for k, cell in enumerate(self.decoder):
                state[k] = cell(inp, state[k])
                inp = state[k][0]
            query = inp  # top-layer decoder output
            alpha = torch.softmax(torch.bmm(keys, query.unsqueeze(2)).squeeze(2), dim=-1)
            context = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)
            attentional = self.attention_layer(torch.cat([query, context], dim=-1))
            frame = self.output_layer(attentional)
            outputs.append(frame)
            alignments.append(alpha)
            contexts.append(context)
        return AxisOutput(torch.stack(outputs, 1), torch.stack(alignments, 1), torch.stack(contexts, 1))


class SGELAOutput(NamedTuple):
    reconstruction: torch.Tensor  # [B, f, J, 3]
    target: torch.Tensor  # [B, f, J, 3] the window in reconstruction order
    alignments: torch.Tensor  # [B, 3, f, f]
    contexts: torch.Tensor  # [B, f, 3 * H] frame-level AGEs


class SGELA(nn.Module):
    """Three independent per-axis encoder-decoders (§8.11): spatial coupling only happens
    where their context vectors are concatenated into the 768-d AGE."""

    def __init__(self, cfg: SGELAConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or SGELAConfig()
        self.axes = nn.ModuleList([AxisSeq2Seq(self.cfg) for _ in AXES])
        if self.cfg.contrastive:
            c, p = self.cfg, self.cfg.projection
            self.heads = nn.ModuleList(
                [nn.Sequential(nn.Linear(c.f * c.hidden, p), nn.ReLU(), nn.Linear(p, p)) for _ in AXES]
            )
        self.register_buffer(
            "la_mask",
            locality_mask(self.cfg.f, self.cfg.la_width, self.cfg.reconstruction == "reverse"),
            persistent=False,
        )

    def targets(self, windows: torch.Tensor) -> torch.Tensor:
        """What the decoder must rebuild: the window itself, in reverse frame order by default."""
        return windows.flip(1) if self.cfg.reconstruction == "reverse" else windows

    def _decoder_inputs(self, target: torch.Tensor) -> torch.Tensor | None:
        """Per-step decoder frames [B, f, J, 3], or None for free running (see SGELAConfig).

        Training with "teacher": the previous target frame (zeros at step 0). At extraction
        (eval mode) "teacher" runs free, so AGEs are a function of the input window alone.
        "zeros" reads zeros in both, exactly like the released code.
        """
        if self.cfg.decoder_input == "zeros":
            return torch.zeros_like(target)
        if self.training:
            return torch.cat([torch.zeros_like(target[:, :1]), target[:, :-1]], dim=1)
        return None

    def forward(self, windows: torch.Tensor, clean: torch.Tensor | None = None) -> SGELAOutput:
        """windows: [B, f, J, 3] float (normalised as the weights' config says). `clean`, when
        given, is what to rebuild instead of `windows` (training with joints masked: the model
        reads derived joints and must rebuild the measured ones)."""
        if windows.shape[1:] != (self.cfg.f, self.cfg.n_joints, len(AXES)):
            raise ValueError(
                f"expected windows [B, {self.cfg.f}, {self.cfg.n_joints}, 3], got {list(windows.shape)}"
            )
        target = self.targets(windows if clean is None else clean)
        dec_in = self._decoder_inputs(target)
        outs = [
            model(windows[..., a], None if dec_in is None else dec_in[..., a])
            for a, model in enumerate(self.axes)
        ]
        return SGELAOutput(
            reconstruction=torch.stack([o.reconstruction for o in outs], dim=-1),
            target=target,
            alignments=torch.stack([o.alignments for o in outs], dim=1),
            contexts=torch.cat([o.contexts for o in outs], dim=-1),
        )

    def window_losses(self, out: SGELAOutput) -> dict[str, torch.Tensor]:
        """Per-window losses [B], summed over frames, joints and axes as in the original (§2.3):
        reconstruction ½Σ(Ŝ - S_rev)², and for LA the locality loss ½Σ((1 - M)·α)².
        The trainer reduces over the batch and adds weight decay."""
        losses = {"reconstruction": 0.5 * (out.reconstruction - out.target).pow(2).sum(dim=(1, 2, 3))}
        if self.cfg.attention == "LA":
            off_locality = (1.0 - self.la_mask) * out.alignments  # [B, 3, f, f]
            losses["attention"] = 0.5 * off_locality.pow(2).sum(dim=(1, 2, 3))
        return losses

    def contrastive_loss(self, a: SGELAOutput, b: SGELAOutput, temperature: float) -> torch.Tensor:
        """NT-Xent between paired windows a[i] <-> b[i] (positives), every other window of
        both batches a negative; mean over the 2B anchors, summed over the three axes (§5).

        Unlike the released code, which paired rows i and i+1 of an unshuffled batch (so pairs
        straddled sequence boundaries and duplicates sat among the negatives, §8.12), the
        trainer passes true pairs: two windows of the same sequence, i.e. the same person.
        """
        h, total = self.cfg.hidden, a.contexts.new_zeros(())
        n = a.contexts.shape[0]
        target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(a.contexts.device)
        for i, head in enumerate(self.heads):
            za = head(a.contexts[..., i * h : (i + 1) * h].flatten(1))
            zb = head(b.contexts[..., i * h : (i + 1) * h].flatten(1))
            z = F.normalize(torch.cat([za, zb]), dim=1)
            sim = (z @ z.T) / temperature
            sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=sim.device), float("-inf"))
            total = total + F.cross_entropy(sim, target)
        return total

    def l2_penalty(self) -> torch.Tensor:
        """½Σw² over every parameter, biases included, as the original's tf.nn.l2_loss sum."""
        return 0.5 * sum(p.pow(2).sum() for p in self.parameters())

    @torch.no_grad()
    def age(self, windows: torch.Tensor, level: Literal["frame", "window"] = "frame") -> torch.Tensor:
        """Attention-based gait encodings of windows [B, f, J, 3] (§2.4).

        "frame" ('ap' in the original): [B, f, 768], one [c_x; c_y; c_z] per decoder step.
        "window" ('sc'): [B, f * 768], the f frame-level AGEs concatenated.
        Runs in eval mode (restoring the previous mode), so dropout-free and target-free.
        """
        was_training = self.training
        self.eval()
        try:
            contexts = self(windows).contexts
        finally:
            self.train(was_training)
        return contexts if level == "frame" else contexts.flatten(1)


def count_macs(cfg: SGELAConfig) -> int:
    """Multiply-adds of one window's forward pass, counted from layer shapes (§7.2).

    37.45 M for the default model; used to turn windows/s into FLOP/s.
    """
    j, h, f, g = cfg.n_joints, cfg.hidden, cfg.f, 4  # g: LSTM gates
    enc = f * ((j + h) * g * h + (cfg.layers - 1) * (h + h) * g * h)
    dec_lstm = f * ((j + h + h) * g * h + (cfg.layers - 1) * (h + h) * g * h)
    attention = f * h * h + f * (f * h) * 2 + f * 2 * h * h  # keys, scores + context, W_c
    output = f * h * j
    return len(AXES) * (enc + dec_lstm + attention + output)


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when present (or asked for), CPU otherwise."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)
