"""Camera geometry the sensor backends share, so every SDK's axes are converted in one place.

gaitcam's frames are in Kinect camera space: metres, +y up, +z from the sensor into the scene,
+x to the sensor's left (Kinect v1/v2, and so KGBD and every model trained on it). Azure Kinect,
RealSense, Orbbec and MediaPipe report optical axes instead (OpenCV's: +x right in the image,
+y down, +z forward). The two differ by a half turn about z, a proper rotation, so a skeleton
keeps its handedness: a left foot stays a left foot.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A half turn about the viewing axis: optical (x right, y down) -> Kinect (x left, y up).
_OPTICAL_TO_KINECT = np.array([-1.0, -1.0, 1.0])


def optical_to_kinect(points: np.ndarray) -> np.ndarray:
    """Optical-axis points [..., 3] in Kinect camera space, same dtype and units.

    The change is its own inverse, so writers of optical-axis files use it to go back.
    """
    points = np.asarray(points)
    return (points * _OPTICAL_TO_KINECT).astype(points.dtype, copy=False)


@dataclass(frozen=True)
class Intrinsics:
    """A pinhole camera in pixels: focal lengths and principal point."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_fov(cls, width: int, height: int, horizontal_fov_deg: float) -> Intrinsics:
        """A camera nobody calibrated: square pixels, centred principal point, a guessed field of view."""
        f = (width / 2) / np.tan(np.radians(horizontal_fov_deg) / 2)
        return cls(f, f, width / 2, height / 2)


def deproject(pixels: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics) -> np.ndarray:
    """Pixels [..., 2] at depths [...] (metres along z) -> optical-axis points [..., 3] in metres.

    librealsense's rs2_deproject_pixel_to_point for a distortion-free lens. Lens distortion is
    ignored: RealSense and Orbbec colour streams are close to distortion-free (D4xx report zero
    coefficients), and near the image centre, where people walk, it moves a joint by millimetres.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    z = np.asarray(depth, dtype=np.float64)
    x = (pixels[..., 0] - intrinsics.cx) / intrinsics.fx * z
    y = (pixels[..., 1] - intrinsics.cy) / intrinsics.fy * z
    return np.stack([x, y, z], axis=-1)
