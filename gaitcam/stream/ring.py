"""One track's last f frames, cut into the encoder's windows as they arrive.

The live counterpart of `skeleton.windows.cut_windows`: a window is emitted every `stride`
frames once f frames have come in without a break, so a live track yields the windows its
recording would. A frame with a missing joint, or a time step that is not a steady frame
step, breaks the run: the model must only see complete, smooth motion. Both are counted.
"""
from __future__ import annotations

import numpy as np

from gaitcam.stream.resample import MODEL_FPS
from gaitcam.skeleton.windows import DEFAULT_F, LIVE_STRIDE


class RingBuffer:
    """Fixed arrays, no per-frame allocation but the emitted window's copy."""

    def __init__(
        self, f: int = DEFAULT_F, stride: int = LIVE_STRIDE, n_joints: int = 20, max_step: float = 1.5 / MODEL_FPS,
    ) -> None:
        if f < 1 or stride < 1:
            raise ValueError(f"window length and stride must be >= 1, got f={f}, stride={stride}")
        self.f, self.stride, self.max_step = f, stride, max_step
        self._joints = np.empty((f, n_joints, 3), dtype=np.float32)
        self._count = 0  # frames since the last break
        self._last_time: float | None = None
        self.windows = 0
        self.skipped_missing = 0  # frames refused for a missing joint
        self.gaps = 0  # breaks in time

    def reset(self) -> None:
        """Start over: the next frame is the first of a new run (e.g. after a resampler restart)."""
        self._count = 0
        self._last_time = None

    def push(self, time: float, joints: np.ndarray) -> np.ndarray | None:
        """Add one frame [J, 3]; the window [f, J, 3] ending at it when one is due, else None."""
        if np.isnan(joints).any():
            self.skipped_missing += 1
            self.reset()
            return None
        if self._last_time is not None and not 0 < time - self._last_time <= self.max_step:
            self.gaps += 1
            self._count = 0
        self._joints[self._count % self.f] = joints
        self._count += 1
        self._last_time = time
        if self._count < self.f or (self._count - self.f) % self.stride:
            return None
        self.windows += 1
        return self._joints[(self._count + np.arange(self.f)) % self.f]  # oldest first; a copy
