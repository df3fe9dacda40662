"""The fast AGE path: a fused C kernel for small batches, `SGELA.age` exported to ONNX and run by
onnxruntime for large batches on several threads, both on the CPU.

`SGELA.age` is written to be read: per axis an `nn.LSTM` encoder, then a decoder loop of
`LSTMCell`s and attention, so one window costs three times six decoder steps of a dozen small
PyTorch calls, each paying Python and dispatch overhead that at small batches costs more than
the arithmetic (BENCHMARKS.md). Two faster ways to run the same computation:

- `gaitcam.model.small_batch.SmallBatchAGE`: the whole computation as one C call with fused LSTM
  gates and packed weights (float16 where that is exact, as for the shipped weights), compiled on
  first use for this CPU. Single-threaded; it takes batches up to `KERNEL_MAX_BATCH` windows. At
  1 thread, larger batches go to whichever path was faster on this machine, timed once a few
  seconds have gone into them: on an AMD EPYC the kernel won at every size up to 256, on an Intel Xeon with
  AVX-512 onnxruntime won from about 24 windows on (BENCHMARKS.md).
- onnxruntime: exporting the module to ONNX records those calls once as a graph; onnxruntime runs
  it with no per-step Python, fuses and constant-folds it, and runs each encoder LSTM as one
  kernel, on `threads` threads. Used for the batches the kernel does not take, and everywhere when
  the kernel cannot be built here (no C compiler, no AVX2).

Both follow the model itself (the graph is traced from it; the kernel reads its weights), so there
is no second copy of the network to keep in step: `matches_reference` checks each against
`SGELA.age` whenever one is built (tests/test_fast.py and tests/test_small_batch.py too), and
`GaitEncoder` falls back to the model when they differ or neither can be built.

CPU only (the pinned onnxruntime is the CPU build); on a GPU `gaitcam.model.stacked` is the fast path.
It is inference only: both hold copies of the weights, so build a new one after training.
"""
from __future__ import annotations

import copy
import io
import logging
import threading
import time
import warnings

import numpy as np
import torch

from gaitcam.model.sgela import AXES, SGELA
from gaitcam.config import KERNEL_PRECISIONS
from gaitcam.model.small_batch import SmallBatchAGE

log = logging.getLogger(__name__)

# How close FastAGE must come to SGELA.age to be used: onnxruntime sums products in another
# order (measured differences up to 2e-5 on AGEs of size ~1, at batch 256).
TOLERANCE = {"rtol": 1e-4, "atol": 5e-5}
NO_ONNXRUNTIME = "onnxruntime is missing; the small-batch kernel encodes every batch size"
# How close the int8 kernel must come to SGELA.age: every window's AGEs at this cosine or above
# (measured on 300 demo windows with the shipped weights: 0.99993 at the lowest).
INT8_MIN_COSINE = 0.999
OPSET = 17
# The kernel runs on one thread and takes batches up to this many windows: with more threads
# onnxruntime uses them and overtakes it above it (measured at 2 threads, idle: kernel 1.17-1.25x
# at 8, 0.99-1.10x at 12, 0.94-0.96x at 16; BENCHMARKS.md). At 1 thread larger batches go to the
# path that was faster on a trial batch of TRIAL_BATCH windows, timed once the kernel has spent
# TRIAL_AFTER_S on large batches (building the session and timing cost about 1.5 s: a short job,
# such as the live app's start-up, never pays it).
KERNEL_MAX_BATCH = 12
TRIAL_BATCH = 64
TRIAL_AFTER_S = 3.0


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
    """Windows [B, f, J, 3] -> frame-level AGEs [B, f, 3H], equal to `SGELA.age(windows)` within
    TOLERANCE: from the small-batch kernel (`kernel`, when it can be built) for the batch sizes
    where it is faster (`uses_kernel`), else from an onnxruntime session on `threads` CPU threads.
    The kernel is checked against the model here and dropped if it differs, and so is the
    session. At 1 thread the session is built only when the kernel has spent TRIAL_AFTER_S on
    batches above KERNEL_MAX_BATCH, and then timed against it on a thread of its own, the kernel
    taking the large batches meanwhile (`large_batches_path`).

    `kernel=False` runs every batch on onnxruntime (the benchmark's "before" of the kernel);
    `optimize=False` runs the graph as exported, without onnxruntime's graph optimisations: the
    benchmark's "before" of that optimisation. Raises when neither path can be built.

    `precision="int8"`: every batch on the kernel with int8 weights and activations (VNNI, or
    VPMADDWD on AVX2), within INT8_MIN_COSINE of `SGELA.age`, not TOLERANCE; raises RuntimeError where the CPU
    or the model does not allow it.
    """

    def __init__(self, model: SGELA, threads: int = 1, optimize: bool = True, kernel: bool = True,
                 precision: str = "float32") -> None:
        if precision not in KERNEL_PRECISIONS:
            raise ValueError(f"precision must be one of {KERNEL_PRECISIONS}, not {precision!r}")
        self.threads = threads
        self.precision = precision
        self.optimize = optimize
        self.kernel: SmallBatchAGE | None = None
        self.session = None
        self._large: str | None = None  # what takes batches above KERNEL_MAX_BATCH; None: not timed yet
        self._large_seconds = 0.0  # the kernel's time on large batches before that
        self._lock = threading.Lock()
        self._timer: threading.Thread | None = None  # the timing of the paths, once started
        self._model: SGELA | None = None  # kept (a copy) only to build the session later
        if precision == "int8":
            self.kernel = SmallBatchAGE(model, precision="int8")
            if not cosine_agrees(model, self.kernel, INT8_MIN_COSINE):
                raise RuntimeError(f"the int8 kernel's AGEs fall below cosine {INT8_MIN_COSINE} of the model's")
            self._large = "kernel"
            return
        if kernel:
            try:
                self.kernel = SmallBatchAGE(model)
            except RuntimeError as e:  # no compiler or CPU for it (logged once by kernel_library)
                log.debug("no small-batch kernel: %s", e)
            else:  # a model the kernel does not follow (e.g. a changed architecture) gets onnxruntime
                if not agrees(model, self.kernel):
                    log.warning("the small-batch kernel differs from the model here; using onnxruntime")
                    self.kernel = None
        if self.kernel is not None and threads == 1:
            self._model = copy.deepcopy(model).cpu().eval()  # the weights as they are now
            return
        try:
            self.session = self._session(model)
        except ImportError:  # a missing onnxruntime only loses this path
            if self.kernel is None:
                raise
            log.warning(NO_ONNXRUNTIME)
            self._large = "kernel"
        else:
            self._large = "onnxruntime"

    def _session(self, model: SGELA):
        import onnxruntime as ort  # imported here: see __init__

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only
        options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if self.optimize
                                            else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        return ort.InferenceSession(export_onnx(model), options, providers=["CPUExecutionProvider"])

    def large_batches_path(self) -> str:
        """What encodes batches above KERNEL_MAX_BATCH: with more threads onnxruntime; at 1 thread
        the faster of the two on TRIAL_BATCH windows (median of 3 alternating calls each, after a
        warm-up), timed once, the session built for it (about 1.5 s), waited for here."""
        if self._large is None:
            self._time_in_background().join()
        return self._large

    def _time_in_background(self) -> threading.Thread:
        """The timing, on a thread of its own: the caller's large batches keep going to the kernel
        meanwhile (a live encoder that first meets large batches when it is already behind would
        otherwise stop for the 1.5 s the timing takes)."""
        with self._lock:
            if self._timer is None:
                # not a daemon: the interpreter waits for it at exit, instead of killing it inside
                # onnxruntime (which aborts the process: "terminate called without an active exception")
                self._timer = threading.Thread(target=self._decide, name="gaitcam-path-timing")
                self._timer.start()
        return self._timer

    def _decide(self) -> None:
        self._large = self._time_paths()  # the session, when kept, is in place before this

    def _time_paths(self) -> str:
        model, self._model = self._model, None
        try:
            session = self._session(model)
        except ImportError:
            log.warning(NO_ONNXRUNTIME)
            return "kernel"
        self.session = session
        if not agrees(model, self.onnxruntime):
            log.warning("onnxruntime differs from the model here; the small-batch kernel encodes every batch")
            self.session = None
            return "kernel"
        cfg = model.cfg
        windows = torch.randn(TRIAL_BATCH, cfg.f, cfg.n_joints, len(AXES), generator=torch.Generator().manual_seed(0))
        paths = {"kernel": self.kernel, "onnxruntime": self.onnxruntime}
        seconds: dict[str, list[float]] = {name: [] for name in paths}
        for rounds in range(4):
            for name, path in paths.items():
                start = time.perf_counter()
                path(windows)
                if rounds:  # the first round warms up
                    seconds[name].append(time.perf_counter() - start)
        ms = {name: 1000 * float(np.median(s)) for name, s in seconds.items()}
        chosen = min(ms, key=ms.get)
        log.info("batches above %d windows go to %s (%d windows: kernel %.1f ms, onnxruntime %.1f ms)",
                 KERNEL_MAX_BATCH, chosen, TRIAL_BATCH, ms["kernel"], ms["onnxruntime"])
        if chosen == "kernel":
            self.session = None
        return chosen

    def uses_kernel(self, batch: int) -> bool:
        """Whether a batch of this many windows goes to the small-batch kernel (now: at 1 thread a
        large batch goes to it until the paths are timed)."""
        if self.kernel is None:
            return False
        if batch <= KERNEL_MAX_BATCH:
            return True
        if self._large is None:
            if self._large_seconds >= TRIAL_AFTER_S:
                self._time_in_background()
            return True
        return self._large == "kernel"

    def path(self, batch: int) -> str:
        """What encodes a batch of this many windows: "kernel" or "onnxruntime"."""
        return "kernel" if self.uses_kernel(batch) else "onnxruntime"

    def onnxruntime(self, windows: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(windows.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {"windows": x})[0])

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        if not self.uses_kernel(len(windows)):
            return self.onnxruntime(windows)
        if len(windows) <= KERNEL_MAX_BATCH or self._large is not None:
            return self.kernel(windows)
        start = time.perf_counter()
        out = self.kernel(windows)
        self._large_seconds += time.perf_counter() - start
        return out


def agrees(model: SGELA, path, seed: int = 0, close=lambda a, b: torch.allclose(a, b, **TOLERANCE)) -> bool:
    """Whether `path` gives `model.age`'s AGEs (`close` to them: by default within TOLERANCE) on
    random windows, at batch sizes other than the one the graph is traced at."""
    gen = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    with torch.inference_mode():
        windows = torch.randn(5, cfg.f, cfg.n_joints, len(AXES), generator=gen)
        reference = model.age(windows.to(next(model.parameters()).device)).cpu()
        return all(close(path(windows[:b]).cpu(), reference[:b]) for b in (1, 5))


def cosine_agrees(model: SGELA, path, minimum: float, seed: int = 0) -> bool:
    """`agrees` with every window's AGEs at cosine `minimum` or above to the model's: the test
    for arithmetic that rounds more than float32's (int8, float16, bfloat16)."""
    def close(a: torch.Tensor, b: torch.Tensor) -> bool:
        return bool(torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1)).min() >= minimum)

    return agrees(model, path, seed, close)


def matches_reference(model: SGELA, fast: FastAGE, seed: int = 0) -> bool:
    """Whether each of `fast`'s paths (kernel, onnxruntime) gives `model.age`'s AGEs within
    TOLERANCE on random windows (an int8 kernel: within INT8_MIN_COSINE)."""
    if fast.precision == "int8":
        return cosine_agrees(model, fast.kernel, INT8_MIN_COSINE, seed)
    paths = [p for p in (fast.kernel, fast.onnxruntime if fast.session is not None else None) if p is not None]
    return all(agrees(model, path, seed) for path in paths)
