"""Gait-cycle features: how each joint moves over about one stride, as a spectrum.

The encoder's windows span 0.2 s, a fraction of a stride (about 1.1 s). A segment of 32 frames
(1.07 s at 30 fps) in the walker's body frame holds a whole stride; the magnitude of its Fourier
transform, per joint and axis, in the bands from 0.9 to 5.6 Hz, says how fast and how far each
joint swings (cadence, arm swing, knee lift, sway), whatever the phase the segment starts at. A
track's cycle descriptor is the log of the mean spectrum over its segments.

Hands and feet are left out: Kinect tracks them worst, and many installations never track
the hands. Measured on a validation split of KGBD's training walks, leaving them out cost
nothing (docs/accuracy.md).
"""
from __future__ import annotations

import numpy as np

from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.normalize import normalize_windows
from gaitcam.skeleton.sequence import mirror_joints

CYCLE_JOINTS = np.array([i for i, j in enumerate(CANONICAL.joints) if not j.startswith(("Hand", "Foot"))])
BANDS = 6  # Fourier bins 1..6 of a 32-frame segment: 0.94 to 5.6 Hz at 30 fps
CYCLE_DIM = len(CYCLE_JOINTS) * 3 * BANDS
FLOOR = 1e-4  # metres: added before the log, below any real swing


def segment_spectra(segments: np.ndarray) -> np.ndarray:
    """Spectra [M, CYCLE_DIM] of segments [M, L, 20, 3] (canonical, metres, complete), each
    averaged with its mirror image's (a joint's swing with its other-side twin's), as the
    matcher's AGEs are: a sensor that mirrors gives the same spectra."""
    segments = np.asarray(segments, dtype=np.float32)
    if len(segments) == 0:
        return np.zeros((0, CYCLE_DIM), np.float32)
    return (_spectra(segments) + _spectra(mirror_joints(segments, CANONICAL))) / 2


def _spectra(segments: np.ndarray) -> np.ndarray:
    local = normalize_windows(segments, "body")[:, :, CYCLE_JOINTS]
    local = local - local.mean(axis=1, keepdims=True)
    taper = np.hanning(segments.shape[1]).astype(np.float32)[None, :, None, None]
    spectrum = np.abs(np.fft.rfft(local * taper, axis=1))[:, 1 : BANDS + 1]  # [M, BANDS, 16, 3]
    return spectrum.reshape(len(segments), -1).astype(np.float32)


def cycle_descriptor(spectra_sum: np.ndarray, count: int) -> np.ndarray:
    """The log mean spectrum of `count` segments whose spectra sum to `spectra_sum`."""
    return np.log(np.asarray(spectra_sum, np.float64) / max(count, 1) + FLOOR).astype(np.float32)
