"""Self-supervised SGE-LA training: reconstruction + locality-aware attention loss, no labels.

What differs from the released code, and why (spec §3.1, §8):
- validation uses held-out whole sequences, not the first training batch (§8.3);
- early stopping and the learning-rate decay really work (§8.2), and the best weights (by
  validation loss) are the ones kept;
- the three axis models train in one loop on the sum of their losses. Their parameters and
  losses are disjoint and Adam is per-parameter, so this equals training them in turn, in a
  third of the wall time of three passes over the data;
- the loss can be the original's batch sum with 0.02 weight decay (`--reduction sum --l2 0.02`)
  or a per-window mean, which keeps the weight decay from swamping the data term as the
  reconstruction error falls;
- it runs on one process or several (`torchrun`, DistributedDataParallel): every process plans
  the same global batches (`batches.EpochPlan`) and trains on the part whose recordings it owns,
  weighted so that the averaged gradient is the whole batch's. One process or several, a step
  sees the same windows, so their loss curves agree. Only rank 0 writes.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from gaitcam.model import distributed
from gaitcam.model.batches import EpochPlan
from gaitcam.model.data import WindowSet
from gaitcam.model.sgela import SGELA, SGELAConfig, pick_device
from gaitcam.model.sources import WindowSource, as_source
from gaitcam.model.weights import save_weights

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 400  # the paper's schedule; early stopping or max_minutes usually ends sooner
    batch_size: int = 128  # global: all processes together
    lr: float = 5e-4
    lr_decay: float = 0.5  # multiply the learning rate when validation stalls ...
    lr_patience: int = 3  # ... for this many validations
    patience: int = 8  # stop after this many validations without improvement
    min_lr: float = 1e-5
    reduction: Literal["sum", "mean"] = "mean"  # over the batch; "sum" is the original
    l2: float = 0.0  # coefficient of ½Σw²; the original used 0.02 with reduction "sum"
    grad_clip: float = 5.0  # element-wise, as the original
    contrastive_weight: float = 1.0  # only for models built with contrastive=True (§5)
    temperature: float = 0.5  # NT-Xent temperature (the TPAMI code used 0.5 for KGBD)
    val_every: int = 200  # steps between validations (and checkpoints)
    max_val_windows: int = 4096
    max_minutes: float | None = None  # wall-clock budget
    max_steps: int | None = None  # step budget: equal work for runs that share a busy machine
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    mask_joints: float = 0.0  # share of training windows read with a joint group lost and derived
    shuffle_windows: int = 65536  # windows shuffled together (batches.EpochPlan): what a process holds


# Joint groups a sensor loses together, for `TrainConfig.mask_joints`: the model reads them derived
# from their neighbours (as the window rule derives them) and must still rebuild the measured ones.
MASK_GROUPS = (("HandLeft",), ("HandRight",), ("HandLeft", "HandRight"), ("HandLeft", "HandRight", "ShoulderCenter"),
               ("FootLeft",), ("FootRight",), ("FootLeft", "FootRight"), ("Head",), ("ShoulderCenter",),
               ("HipCenter", "Spine"))


def mask_joints(windows: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of windows [B, f, 20, 3] where `share` of them lose one random joint group in every
    frame, re-derived from the neighbours. The derivation rules are affine (weights summing to 1),
    so deriving in the normalised body frame equals deriving in camera space and normalising."""
    from gaitcam.skeleton.layouts import CANONICAL
    from gaitcam.skeleton.repair import derive_missing
    from gaitcam.skeleton.sequence import JointState

    out = windows.copy()
    chosen = np.flatnonzero(rng.random(len(windows)) < share)
    if not len(chosen):
        return out
    states = np.full(windows.shape[:3], JointState.TRACKED, np.int8)
    for i, g in zip(chosen, rng.integers(len(MASK_GROUPS), size=len(chosen))):
        states[i, :, [CANONICAL.index(j) for j in MASK_GROUPS[g]]] = JointState.MISSING
    derived, _ = derive_missing(out[chosen], states[chosen])
    out[chosen] = derived
    return out


@dataclass
class TrainState:
    """Everything besides tensors that a resumed run needs (saved as JSON)."""

    epoch: int = 0
    batch: int = 0  # next batch within the epoch
    step: int = 0
    best_val: float = math.inf
    best_step: int = 0
    stale: int = 0  # validations since the best
    stale_lr: int = 0  # validations since the last improvement or lr decay
    lr: float = 0.0
    seconds: float = 0.0
    history: list[dict] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # every step's loss per window, all processes


class Trainer:
    """Trains one SGELA on training and validation windows (WindowSets or WindowSources); rank 0
    writes to `out_dir`: `sgela.safetensors/.json` (best by validation), `checkpoint.*` (resume),
    `history.json`, `train.json` (every step's loss), `loss.png`."""

    def __init__(
        self,
        model_cfg: SGELAConfig,
        cfg: TrainConfig,
        out_dir: str | Path,
        normalization: str,
        notes: dict | None = None,
    ) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.normalization = normalization
        self.notes = notes or {}
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device)
        self.rank, self.world = distributed.rank(), distributed.world()
        torch.manual_seed(cfg.seed)  # the same initial weights in every process
        self.model = SGELA(model_cfg).to(self.device)
        # Training steps run through DDP, which averages the gradients over processes.
        self.net = DistributedDataParallel(self.model) if self.world > 1 else self.model
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        self.state = TrainState(lr=cfg.lr)

    def start_from(self, model: SGELA) -> None:
        """Fine-tune: begin from another model's weights (same architecture)."""
        if model.cfg != self.model.cfg:
            raise ValueError("the initial weights have another architecture than the model being trained")
        self.model.load_state_dict(model.state_dict())

    # -- losses -----------------------------------------------------------------------------
    def _with_partners(self, data: WindowSet, idx: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """[windows idx of data], and for a contrastive model [..., a partner of each from its sequence]."""
        parts = [data.windows[idx]]
        if self.model.cfg.contrastive:
            parts.append(data.windows[same_sequence_partners(data.sequence, idx, rng)])
        return parts

    def _forward(self, windows: np.ndarray, net: torch.nn.Module, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor | None, dict]:
        """Per-window data losses of `windows` (for a contrastive model: windows, then their
        partners), the contrastive term, and each term's mean for the log."""
        clean = torch.from_numpy(windows).to(self.device)
        if self.cfg.mask_joints:
            out = net(torch.from_numpy(mask_joints(windows, self.cfg.mask_joints, rng)).to(self.device), clean)
        else:
            out = net(clean)
        parts = self.model.window_losses(out)
        logged = {k: v.detach().mean() for k, v in parts.items()}
        contrast = None
        if self.model.cfg.contrastive:
            n = len(windows) // 2
            halves = [type(out)(*(t[:n] for t in out)), type(out)(*(t[n:] for t in out))]
            contrast = self.model.contrastive_loss(*halves, self.cfg.temperature)
            logged["contrastive"] = contrast.detach()
        return sum(parts.values()), contrast, logged

    def _step(self, source: WindowSource, units: np.ndarray, wins: np.ndarray, rng: np.random.Generator) -> float:
        """One optimisation step on a global batch (its windows as unit and window numbers);
        returns the batch's loss per window, all processes together."""
        mine = distributed.owned(units)
        n, size = int(mine.sum()), len(units)
        if n:
            groups = [self._with_partners(source.load(int(u)), np.sort(wins[mine][units[mine] == u]), rng)
                      for u in np.unique(units[mine])]
            windows = np.concatenate([g[0] for g in groups] + [g[-1] for g in groups if len(g) == 2])
        else:  # no window of this batch here: one blank window, weighted 0, still joins the averaging
            windows = np.zeros((1 + self.model.cfg.contrastive, self.model.cfg.f, 20, 3), np.float32)
        data_loss, contrast, logged = self._forward(windows, self.net, rng)
        # DDP averages the processes' gradients; scaled by world x this process's part of the
        # batch, their average is the gradient of the whole batch's loss.
        part = self.world * n / size
        if self.cfg.reduction == "sum":
            total = self.world * float(n > 0) * data_loss.sum()
        else:
            total = part * data_loss.mean()
        if contrast is not None:
            total = total + self.cfg.contrastive_weight * part * contrast
        if self.cfg.l2:
            total = total + self.cfg.l2 * self.model.l2_penalty()
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_value_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        return distributed.sum_all([self._weighted(logged) * n / size])[0]

    def _weighted(self, logged: dict) -> float:
        """The logged loss terms summed with the weights training gives them (no weight decay)."""
        weights = {"contrastive": self.cfg.contrastive_weight}
        return float(sum(weights.get(k, 1.0) * float(v) for k, v in logged.items()))

    def validate(self, val: WindowSet | WindowSource) -> float:
        """Mean per-window loss on held-out data (up to `max_val_windows` windows spread evenly)."""
        return self._validate(as_source(val).share(self.cfg.max_val_windows))

    @torch.no_grad()
    def _validate(self, share: WindowSet) -> float:
        """Mean per-window loss (reconstruction, attention and contrastive terms, no weight
        decay) over every process's share of the validation windows, with fixed partners and
        masks so that validations compare."""
        self.model.train()  # the training-mode decoder, i.e. the loss being minimised
        rng = np.random.default_rng([self.cfg.seed, self.rank])
        total = 0.0
        for i in range(0, len(share), 512):
            idx = np.arange(i, min(i + 512, len(share)))
            _, _, logged = self._forward(np.concatenate(self._with_partners(share, idx, rng)), self.model, rng)
            total += len(idx) * self._weighted(logged)
        total, n = distributed.sum_all([total, len(share)])
        return total / max(n, 1)

    # -- checkpoints --------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        """Tensors, optimiser state and `TrainState` in one file, replaced atomically, so that a
        run killed at any moment resumes from a whole checkpoint; checkpoint.json repeats the
        state for people to read."""
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        for i, st in self.opt.state_dict()["state"].items():
            for k, v in st.items():
                v = torch.as_tensor(v).detach().cpu()
                tensors[f"opt.{i}.{k}"] = (v.reshape(1) if k == "step" else v).contiguous()
        state = asdict(self.state)
        tensors["losses"] = torch.tensor(state.pop("losses"), dtype=torch.float64)
        meta = {"train": asdict(self.cfg), "model": self.model.cfg.to_dict(),
                "normalization": self.normalization, "state": state}
        tmp = self.out / "checkpoint.safetensors.tmp"
        save_file(tensors, str(tmp), metadata={"checkpoint": json.dumps(meta)})
        os.replace(tmp, self.out / "checkpoint.safetensors")
        (self.out / "checkpoint.json").write_text(json.dumps(meta, indent=1))

    def load_checkpoint(self) -> None:
        path = str(self.out / "checkpoint.safetensors")
        with safe_open(path, "pt") as f:
            stored = (f.metadata() or {}).get("checkpoint")
        if stored is None:
            raise ValueError(f"{path} was written by an older gaitcam without its state; train afresh")
        meta = json.loads(stored)
        if meta["model"] != self.model.cfg.to_dict() or meta["normalization"] != self.normalization:
            raise ValueError(f"{self.out}/checkpoint.json was trained with another model config or normalisation")
        tensors = load_file(path)
        self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        opt_state = self.opt.state_dict()
        for key, v in tensors.items():
            if key.startswith("opt."):
                _, i, name = key.split(".", 2)
                opt_state["state"].setdefault(int(i), {})[name] = v.reshape(()) if name == "step" else v
        self.opt.load_state_dict(opt_state)
        self.state = TrainState(**meta["state"], losses=tensors["losses"].tolist())
        self._set_lr(self.state.lr)
        log.info("resumed at epoch %d, step %d", self.state.epoch, self.state.step)

    def _set_lr(self, lr: float) -> None:
        self.state.lr = lr
        for group in self.opt.param_groups:
            group["lr"] = lr

    # -- the loop ---------------------------------------------------------------------------
    def fit(self, train: WindowSet | WindowSource, val: WindowSet | WindowSource, resume: bool = False) -> dict:
        """Train until early stopping, the epoch limit or the time budget; return a summary."""
        cfg = self.cfg
        train, val = as_source(train), as_source(val)
        plan = EpochPlan(train.index(), cfg.batch_size, cfg.seed, cfg.shuffle_windows)
        n_train, n_val = int(plan.counts.sum()), min(int(val.index().sum()), cfg.max_val_windows)
        if n_train == 0 or n_val == 0:
            raise ValueError(f"need training and validation windows (got {n_train} and {n_val})")
        val_share = val.share(cfg.max_val_windows)
        if resume:
            self.load_checkpoint()
        st = self.state
        steps_per_epoch = self._steps_per_epoch = plan.steps
        started = time.monotonic() - st.seconds
        stop_reason = "step budget" if cfg.max_steps is not None and st.step >= cfg.max_steps else "epochs"
        running: list[float] = []
        log.info("training on %d windows, validating on %d (%s), %d steps of %d per epoch, %d process(es), "
                 "device %s", n_train, n_val, self.normalization, steps_per_epoch, cfg.batch_size, self.world,
                 self.device)
        if self.world > len(train):
            log.warning("%d processes but %d training recordings: some have none to train on and only wait",
                        self.world, len(train))
        while st.epoch < cfg.epochs and stop_reason == "epochs":
            bar = tqdm(total=steps_per_epoch, initial=st.batch, desc=f"epoch {st.epoch + 1}", unit="batch",
                       dynamic_ncols=True, leave=False, disable=None if self.rank == 0 else True)
            self.model.train()
            for units, wins in plan.batches(st.epoch, st.batch):
                loss = self._step(train, units, wins, np.random.default_rng([cfg.seed, st.epoch, st.batch, self.rank]))
                st.batch += 1
                st.step += 1
                st.losses.append(loss)
                running.append(loss)
                bar.update()
                bar.set_postfix(loss=f"{loss:.4g}", lr=f"{st.lr:.2g}")
                if st.step % cfg.val_every == 0 or st.batch == steps_per_epoch or st.step == cfg.max_steps:
                    stop_reason = self._after_validation(val_share, running, started)
                    running = []
                    self.model.train()
                    if stop_reason != "epochs":
                        break
            bar.close()
            if st.batch >= steps_per_epoch:
                st.epoch += 1
                st.batch = 0
        st.seconds = distributed.from_main(time.monotonic() - started)
        summary = {"stop": stop_reason, "epochs": st.epoch + st.batch / steps_per_epoch, "steps": st.step,
                   "best_val": st.best_val, "best_step": st.best_step, "minutes": st.seconds / 60,
                   "train_windows": n_train, "val_windows": n_val, "world_size": self.world}
        if self.rank == 0:
            self.save_checkpoint()
            (self.out / "history.json").write_text(json.dumps({"summary": summary, "history": st.history}, indent=1))
            (self.out / "train.json").write_text(json.dumps(
                {"world_size": self.world, "batch_size": cfg.batch_size, "losses": st.losses, "summary": summary}))
            plot_history(st.history, self.out / "loss.png")
        log.info("stopped (%s) after %.2f epochs, %.1f min; best validation loss %.4g at step %d",
                 stop_reason, summary["epochs"], summary["minutes"], st.best_val, st.best_step)
        return summary

    def _after_validation(self, val_share: WindowSet, running: list[float], started: float) -> str:
        """Validate, keep the best weights, decay lr / stop on stalls; return the stop reason.
        Every process takes the same decisions: the losses are all processes' and the clock is rank 0's."""
        cfg, st = self.cfg, self.state
        val_loss = self._validate(val_share)
        st.seconds = distributed.from_main(time.monotonic() - started)
        st.history.append({"step": st.step, "epoch": st.epoch + st.batch / self._steps_per_epoch,
                           "train": float(np.mean(running)) if running else None, "val": val_loss,
                           "lr": st.lr, "seconds": st.seconds})
        if val_loss < st.best_val:
            st.best_val, st.best_step, st.stale, st.stale_lr = val_loss, st.step, 0, 0
            if self.rank == 0:
                save_weights(self.model, self.out / "sgela", normalization=self.normalization,
                             notes={**self.notes, "step": st.step, "val_loss": val_loss})
        else:
            st.stale += 1
            st.stale_lr += 1
            if st.stale_lr >= cfg.lr_patience and st.lr * cfg.lr_decay >= cfg.min_lr:
                self._set_lr(st.lr * cfg.lr_decay)
                st.stale_lr = 0
        if self.rank == 0:
            self.save_checkpoint()
            tqdm.write(f"step {st.step}: train {st.history[-1]['train']:.4g}  val {val_loss:.4g}  "
                       f"best {st.best_val:.4g}  lr {st.lr:.2g}  {st.seconds / 60:.1f} min")
        if not math.isfinite(val_loss):
            return "diverged"
        if st.stale >= cfg.patience:
            return "early stop"
        if cfg.max_minutes is not None and st.seconds >= 60 * cfg.max_minutes:
            return "time budget"
        if cfg.max_steps is not None and st.step >= cfg.max_steps:
            return "step budget"
        return "epochs"


def same_sequence_partners(sequence: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each window idx[i], another window of the same sequence (itself only if alone).

    Windows of one sequence are contiguous in a WindowSet, so each sequence is a range.
    """
    starts = np.searchsorted(sequence, sequence[idx], side="left")
    counts = np.searchsorted(sequence, sequence[idx], side="right") - starts
    offset = idx - starts
    shift = 1 + (rng.random(len(idx)) * np.maximum(counts - 1, 1)).astype(np.int64)
    return starts + (offset + shift) % np.maximum(counts, 1)


def plot_history(history: list[dict], path: Path) -> None:
    """Training and validation loss per window against steps (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    ax.plot(steps, [h["train"] for h in history], label="train (mean since last validation)")
    ax.plot(steps, [h["val"] for h in history], label="validation (held-out sequences)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss per window")
    ax.set_title("SGE-LA self-supervised training")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
