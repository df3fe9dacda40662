"""Window normalisation: what coordinates the encoder sees.

The original SGE-LA fed raw Kinect camera coordinates (spec §1.4, §7.3), so its encodings
depend on where the person stands and on the camera's height and tilt. gaitcam offers:

- "raw":     camera coordinates as recorded (the original; for the ablation).
- "centred": each frame minus its own hip centre (SM-SGE's load-time centring). Position-free,
             but also throws away the body's sway and the camera tilt stays in.
- "body":    a body frame per window: origin at the window's mean hip centre, y along the
             mean spine (hip centre -> shoulder centre, a proxy for gravity that needs no
             calibration), x along the mean hip line (right -> left hip) made orthogonal to y,
             z = x × y (the facing direction). Independent of where the person stands, of the
             camera's height, tilt and of the walking direction, while the motion inside the
             window (sway, bounce, stride) is kept.

All work on [..., f, J, 3] arrays in the canonical layout; NaN (missing) joints stay NaN and
are ignored by the means, so one lost joint does not spoil a window.
"""
from __future__ import annotations

import warnings

import numpy as np

from gaitcam.skeleton.layouts import CANONICAL

NORMALIZATIONS = ("raw", "centred", "body")

_HIP = CANONICAL.index("HipCenter")
_SHOULDER = CANONICAL.index("ShoulderCenter")
_HIP_L = CANONICAL.index("HipLeft")
_HIP_R = CANONICAL.index("HipRight")


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def body_frames(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Origin [..., 3] and rotation [..., 3, 3] (rows x, y, z) of each window's body frame."""
    with warnings.catch_warnings():  # all-NaN windows give NaN frames; handled by the caller
        warnings.simplefilter("ignore", RuntimeWarning)
        origin = np.nanmean(windows[..., :, _HIP, :], axis=-2)
        up = _unit(np.nanmean(windows[..., :, _SHOULDER, :] - windows[..., :, _HIP, :], axis=-2))
        across = np.nanmean(windows[..., :, _HIP_L, :] - windows[..., :, _HIP_R, :], axis=-2)
        across = _unit(across - (across * up).sum(-1, keepdims=True) * up)
    facing = np.cross(across, up)
    return origin, np.stack([across, up, facing], axis=-2)


def normalize_windows(windows: np.ndarray, mode: str) -> np.ndarray:
    """Windows [..., f, J, 3] float -> the same shape in the coordinates `mode` names."""
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {mode!r}; choose one of {NORMALIZATIONS}")
    windows = np.asarray(windows, dtype=np.float32)
    if mode == "raw":
        return windows
    if mode == "centred":
        return windows - windows[..., :, _HIP : _HIP + 1, :]
    origin, rotation = body_frames(windows)
    x = windows - origin[..., None, None, :]
    r = rotation[..., None, None, :, :]  # local_i = sum_j rotation_ij x_j, summed in einsum's order
    local = x[..., 0, None] * r[..., :, 0] + x[..., 1, None] * r[..., :, 1] + x[..., 2, None] * r[..., :, 2]
    return local.astype(np.float32)  # (the same bits as np.einsum on the development machine, in a third of the time)
