"""The camera image with each person's skeleton drawn over it, for sources that have an image.

The overlay uses the pixel positions the source measured (`extras["image_points"]`, which
the MediaPipe-based sources give: webcam, video, RealSense, Orbbec), in the source's own
layout and bones. Depth sensors that send a colour image without pixel positions (a Kinect's
skeleton is in camera metres, and its colour camera's intrinsics are not known here) show the
image without an overlay; their skeletons are in the front and top views beside it.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QGraphicsPixmapItem

from gaitcam.ui.skeletons import bone_segments, pen
from gaitcam.ui.style import Look
from gaitcam.ui.tap import ImagePoints


class CameraPanel:
    """Draws into `plot`: the newest image and one overlay line item per track."""

    def __init__(self, plot: pg.PlotItem) -> None:
        self.plot = plot
        plot.invertY(True)  # image rows run down
        plot.setAspectLocked(True)
        plot.hideAxis("left")
        plot.hideAxis("bottom")
        plot.setTitle("camera")
        self.image = QGraphicsPixmapItem()  # Qt reads OpenCV's BGR rows directly: no conversion pass
        plot.addItem(self.image)
        self._shape: tuple[int, ...] | None = None
        self._overlays: dict[int, tuple[pg.PlotCurveItem, Look]] = {}
        self._bones: dict[str, np.ndarray] = {}

    def draw(self, image: np.ndarray, points: ImagePoints | None, looks: dict[int, Look]) -> int:
        """Show `image` (BGR or grey uint8) with the tracks in `points`; returns overlays drawn."""
        self.image.setPixmap(QPixmap.fromImage(qimage(image)))
        if image.shape != self._shape:
            self._shape = image.shape
            self.plot.setRange(xRange=(0, image.shape[1]), yRange=(0, image.shape[0]), padding=0)
        shown = {} if points is None else {t: p for t, p in points.points.items() if t in looks}
        for gone in self._overlays.keys() - shown.keys():
            self.plot.removeItem(self._overlays.pop(gone)[0])
        if points is not None and shown:
            bones = self._bones.get(points.layout.name)
            if bones is None:
                bones = self._bones[points.layout.name] = points.layout.bone_indices()
            for track, pixels in shown.items():
                curve, drawn_look = self._overlays.get(track, (None, None))
                if curve is None:
                    curve = pg.PlotCurveItem()
                    self.plot.addItem(curve)
                if drawn_look != looks[track]:
                    curve.setPen(pen(looks[track]))
                self._overlays[track] = (curve, looks[track])
                seg = bone_segments(np.asarray(pixels, dtype=float), bones)
                curve.setData(seg[:, 0], seg[:, 1], connect="pairs", skipFiniteCheck=True)
        return len(self._overlays)


def qimage(image: np.ndarray) -> QImage:
    """A QImage over a BGR [h, w, 3] or grey [h, w] uint8 array (valid while the array lives)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    fmt = QImage.Format.Format_BGR888 if image.ndim == 3 else QImage.Format.Format_Grayscale8
    return QImage(image.data, image.shape[1], image.shape[0], image.strides[0], fmt)
