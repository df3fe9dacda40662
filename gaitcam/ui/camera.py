"""The camera image with each person's skeleton drawn over it, for sources that have an image.

The overlay uses the pixel positions the source measured (`extras["image_points"]`, which
the MediaPipe-based sources give: webcam, video, RealSense, Orbbec), in the source's own
layout and bones, with each person's name just above their head in their identity's colour
(names of people close together are stacked upwards, so no two labels overlap). Depth sensors
that send a colour image without pixel positions (a Kinect's skeleton is in camera metres, and
its colour camera's intrinsics are not known here) show the image without an overlay; their
skeletons are in the front and top views beside it.
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QGraphicsPixmapItem

from gaitcam.ui.skeletons import bone_segments, pen, spread_labels
from gaitcam.ui.style import Look
from gaitcam.ui.tap import ImagePoints

_LABEL_LIFT = 4.0  # image pixels between the top of a person and the name above them


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
        self._labels: dict[int, tuple[pg.TextItem, Look]] = {}
        self._bones: dict[str, np.ndarray] = {}
        self.label_at: dict[int, tuple[float, float]] = {}  # track -> where its name is (image pixels)

    def draw(self, image: np.ndarray, points: ImagePoints | None, looks: dict[int, Look]) -> int:
        """Show `image` (BGR or grey uint8) with the tracks in `points`; returns overlays drawn."""
        self.image.setPixmap(QPixmap.fromImage(qimage(image)))
        if image.shape != self._shape:
            self._shape = image.shape
            self.plot.setRange(xRange=(0, image.shape[1]), yRange=(0, image.shape[0]), padding=0)
        shown = {} if points is None else {t: p for t, p in points.points.items() if t in looks}
        for gone in self._overlays.keys() - shown.keys():
            self.plot.removeItem(self._overlays.pop(gone)[0])
        for gone in self._labels.keys() - shown.keys():
            self.plot.removeItem(self._labels.pop(gone)[0])
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
        self._place_labels(shown, looks)
        return len(self._overlays)

    def _place_labels(self, shown: dict[int, np.ndarray], looks: dict[int, Look]) -> None:
        """Each shown person's name above their head, in their colour, none overlapping another."""
        tracks = [t for t, pixels in shown.items() if np.isfinite(np.asarray(pixels, float)).all(axis=1).any()]
        for track in tracks:
            label, drawn_look = self._labels.get(track, (None, None))
            if label is None:
                label = pg.TextItem(anchor=(0.5, 1.0), fill=pg.mkBrush(255, 255, 255, 190))
                self.plot.addItem(label)
            if drawn_look is None or drawn_look.label != looks[track].label:
                label.setText(looks[track].label)
            if drawn_look is None or drawn_look.colour != looks[track].colour:
                label.setColor(looks[track].colour[:3])
            self._labels[track] = (label, looks[track])
        for track in self._labels.keys() - set(tracks):  # nothing of them to put a name on
            self.plot.removeItem(self._labels.pop(track)[0])
        heads = np.array([head_point(np.asarray(shown[t], float)) for t in tracks], float).reshape(-1, 2)
        heads[:, 1] -= _LABEL_LIFT
        width = self._shape[1] if self._shape is not None else 1000
        sx, sy = self.plot.getViewBox().viewPixelSize()
        rects = [self._labels[t][0].boundingRect() for t in tracks]
        sizes = np.array([[r.width() * sx, r.height() * sy] for r in rects], float).reshape(-1, 2)
        sizes = np.clip(np.nan_to_num(sizes, nan=0.0, posinf=width, neginf=0.0), 0.0, width)
        at = image_labels(heads, sizes, width)
        self.label_at = {}
        for track, (x, y) in zip(tracks, at):
            self._labels[track][0].setPos(float(x), float(y))
            self.label_at[track] = (round(float(x), 1), round(float(y), 1))


def head_point(pixels: np.ndarray) -> np.ndarray:
    """[2] the top of a person in the image (the smallest row of their known points: image rows
    run down), at the mean column of the top fifth of them (the head, with a raised hand at most
    nudging it aside)."""
    known = pixels[np.isfinite(pixels).all(axis=1)]
    top = known[:, 1].min()
    span = max(known[:, 1].max() - top, 1.0)
    return np.array([known[known[:, 1] <= top + 0.2 * span, 0].mean(), top])


def image_labels(heads: np.ndarray, sizes: np.ndarray, width: float | None = None) -> np.ndarray:
    """Label positions [n, 2] (bottom centres, image pixels, rows running down) for names over
    `heads` [n, 2] with boxes `sizes` [n, 2]: each at its head (moved in from the image's left
    and right edges, given its `width`) unless that overlaps another label, then moved up (to
    smaller rows) just clear of it (`skeletons.spread_labels`, whose y runs up)."""
    at = np.array(heads, float).reshape(-1, 2)
    sizes = np.asarray(sizes, float).reshape(-1, 2)
    if width is not None:
        half = np.minimum(sizes[:, 0] / 2, width / 2)
        at[:, 0] = np.clip(at[:, 0], half, width - half)
    flip = np.array([1.0, -1.0])
    return spread_labels(at * flip, sizes) * flip


def qimage(image: np.ndarray) -> QImage:
    """A QImage over a BGR [h, w, 3] or grey [h, w] uint8 array (valid while the array lives)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    fmt = QImage.Format.Format_BGR888 if image.ndim == 3 else QImage.Format.Format_Grayscale8
    return QImage(image.data, image.shape[1], image.shape[0], image.strides[0], fmt)
