"""Everyone's skeleton in a front view (x/y) and a top view of the floor (x/z).

The joints come in the pipeline's canonical layout and calibrated frame: metres, y up, the
floor at y = 0 once calibrated, z away from the camera and x to the camera's left (Kinect's
convention, which every source is converted to). Both views therefore run x from right to
left, so people appear on the same side as in the camera's own image; the top view puts the
camera at the bottom, looking up the screen.

Each person is one line item per view (all bones as segment pairs) plus one label per view,
created when the track appears, restyled only when its look changes and removed when it
leaves: a redraw of six people is a dozen `setData` calls, not hundreds of items. The metre
grid is a plain line item too: pyqtgraph's axis grid is repainted (from a QPicture, about 3 ms
a plot here) whenever anything in the plot moves, which halved the frame rate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt

from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.ui.style import Look

BONES = CANONICAL.bone_indices()
HEAD = CANONICAL.index("Head")
HIP = CANONICAL.index("HipCenter")
_LABEL_LIFT = 0.12  # metres between the head and the name above it
_MARGIN = 0.3  # metres kept round everyone seen when the views grow to fit them
_WORLD = 100.0  # metres from the sensor beyond which a joint is a glitch the views do not grow to
_AXIS_PX = 60  # the height axis's fixed width (see SkeletonViews)
_GRID_PEN = (225, 225, 225)


def pen(look: Look) -> pg.QtGui.QPen:
    return pg.mkPen(color=look.colour, width=look.width,
                    style=Qt.PenStyle.DashLine if look.dashed else Qt.PenStyle.SolidLine)


def bone_segments(joints: np.ndarray, bones: np.ndarray) -> np.ndarray:
    """[2k, C] endpoints of the k bones whose two joints are both known (pairs, for connect="pairs")."""
    segments = joints[bones]  # [B, 2, C]
    known = np.isfinite(segments).all(axis=(1, 2))
    return segments[known].reshape(-1, joints.shape[-1])


@dataclass
class _Figure:
    """One person's items in both views, and the look they are drawn with."""

    front: pg.PlotCurveItem
    top: pg.PlotCurveItem
    front_label: pg.TextItem
    top_label: pg.TextItem
    look: Look | None = None


class _Extent:
    """The area everyone has been seen in, grown (never shrunk) so the views do not jump."""

    def __init__(self, low: tuple[float, float], high: tuple[float, float]) -> None:
        self.low, self.high = np.array(low, float), np.array(high, float)

    def grow(self, points: np.ndarray) -> bool:
        """Include points [n, 2] (with margin); True if the extent changed. Points farther than
        _WORLD are left out: one glitched joint at 1e9 m would otherwise stretch the views (and
        the metre grid, and pyqtgraph's tick arrays) to a size that takes the window down."""
        points = points[np.isfinite(points).all(axis=1) & (np.abs(points) <= _WORLD).all(axis=1)]
        if not len(points):
            return False
        low = np.minimum(self.low, points.min(axis=0) - _MARGIN)
        high = np.maximum(self.high, points.max(axis=0) + _MARGIN)
        changed = bool((low < self.low).any() or (high > self.high).any())
        self.low, self.high = low, high
        return changed


class SkeletonViews:
    """Draws tracks into a front and a top plot; see the module docstring."""

    def __init__(self, front: pg.PlotItem, top: pg.PlotItem) -> None:
        self.front, self.top = front, top
        for plot, (x, y) in ((front, ("x (m)", "height y (m)")), (top, ("x (m)", "depth z (m)"))):
            plot.invertX(True)
            plot.setAspectLocked(True)
            plot.setLabel("bottom", x)
            plot.setLabel("left", y)
            plot.disableAutoRange()
            # A fixed axis width: with the aspect locked, an axis whose width followed its tick
            # labels could feed back (new width, new range, new labels, new width...) and spin the
            # event loop forever, as it did in two test runs (pyqtgraph issues #1664 and #3135).
            # 60 px holds a label such as "-100" (no joint beyond _WORLD grows the views).
            plot.getAxis("left").setWidth(_AXIS_PX)
            for side in ("left", "bottom"):
                plot.getAxis(side).setStyle(autoReduceTextSpace=False)
        front.setTitle("front")
        top.setTitle("top (floor)")
        self._grids = (pg.PlotCurveItem(pen=pg.mkPen(_GRID_PEN)), pg.PlotCurveItem(pen=pg.mkPen(_GRID_PEN)))
        for plot, grid in zip((front, top), self._grids):
            grid.setZValue(-10)  # under the people
            plot.addItem(grid)
        top.addItem(pg.ScatterPlotItem([0.0], [0.0], symbol="t1", size=14, brush=pg.mkBrush(60, 60, 60)))
        self._front_extent = _Extent((-1.5, -0.1), (1.5, 2.0))
        self._top_extent = _Extent((-2.0, 0.0), (2.0, 4.5))
        self._fit()
        self._figures: dict[int, _Figure] = {}

    def draw(self, tracks: dict[int, np.ndarray], looks: dict[int, Look]) -> list[dict]:
        """Show exactly `tracks` (track -> joints [20, 3]); returns what was drawn per track."""
        for gone in self._figures.keys() - tracks.keys():
            self._remove(self._figures.pop(gone))
        drawn, grew, placed = [], False, []
        for track, joints in tracks.items():
            figure = self._figures.get(track) or self._add(track)
            look = looks[track]
            self._restyle(figure, look)
            seg = bone_segments(joints, BONES)
            figure.front.setData(seg[:, 0], seg[:, 1], connect="pairs", skipFiniteCheck=True)
            figure.top.setData(seg[:, 0], seg[:, 2], connect="pairs", skipFiniteCheck=True)
            anchor = _anchor(joints)
            hip = joints[HIP] if np.isfinite(joints[HIP]).all() else anchor
            placed.append((figure, (anchor[0], anchor[1] + _LABEL_LIFT), (hip[0], hip[2])))
            grew |= self._front_extent.grow(joints[:, :2]) | self._top_extent.grow(joints[:, [0, 2]])
            drawn.append({"track": int(track), "label": look.name or "unknown", "state": look.state,
                          "text": look.label, "joints": int(np.isfinite(joints).all(axis=1).sum()),
                          "bones": len(seg) // 2})
        if grew:
            self._fit()
        for view, plot, extent in ((1, self.front, self._front_extent), (2, self.top, self._top_extent)):
            labels = [f.front_label if view == 1 else f.top_label for f, *_ in placed]  # side by side: stacked
            sizes = _label_sizes(labels, plot, extent.high - extent.low)
            at = np.array([p[view] for p in placed], float).reshape(-1, 2)
            at[:, 0] = np.clip(at[:, 0], extent.low[0] + sizes[:, 0] / 2, extent.high[0] - sizes[:, 0] / 2)  # not cut
            at = spread_labels(at, sizes)
            for label, (x, y) in zip(labels, at):
                label.setPos(float(x), float(y))
            if view == 1:
                for row, xy in zip(drawn, at):
                    row["label_at"] = [round(float(xy[0]), 3), round(float(xy[1]), 3)]
        return drawn

    def _add(self, track: int) -> _Figure:
        fill = pg.mkBrush(255, 255, 255, 190)  # names stay readable over crossing bones
        figure = _Figure(pg.PlotCurveItem(), pg.PlotCurveItem(), pg.TextItem(anchor=(0.5, 1.0), fill=fill),
                         pg.TextItem(anchor=(0.5, -0.2), fill=fill))
        for plot, curve, label in ((self.front, figure.front, figure.front_label),
                                   (self.top, figure.top, figure.top_label)):
            plot.addItem(curve)
            plot.addItem(label)
        self._figures[track] = figure
        return figure

    def _remove(self, figure: _Figure) -> None:
        for plot, curve, label in ((self.front, figure.front, figure.front_label),
                                   (self.top, figure.top, figure.top_label)):
            plot.removeItem(curve)
            plot.removeItem(label)

    @staticmethod
    def _restyle(figure: _Figure, look: Look) -> None:
        """Change what changed: the pen with the state, the text with every new score."""
        old, figure.look = figure.look, look
        if old is None or (old.colour, old.dashed, old.width) != (look.colour, look.dashed, look.width):
            line = pen(look)
            for curve in (figure.front, figure.top):
                curve.setPen(line)
            for label in (figure.front_label, figure.top_label):
                label.setColor(look.colour[:3])
        if old is None or old.label != look.label:
            for label in (figure.front_label, figure.top_label):
                label.setText(look.label)

    def _fit(self) -> None:
        for plot, grid, extent in zip((self.front, self.top), self._grids, (self._front_extent, self._top_extent)):
            plot.setRange(xRange=(extent.low[0], extent.high[0]), yRange=(extent.low[1], extent.high[1]),
                          padding=0)
            lines = grid_lines(extent.low, extent.high)
            grid.setData(lines[:, 0], lines[:, 1], connect="pairs", skipFiniteCheck=True)


def _label_sizes(labels: list[pg.TextItem], plot: pg.PlotItem, limit: np.ndarray) -> np.ndarray:
    """[n, 2] width and height of each label in the plot's data units (labels are sized in pixels).

    Before the view is laid out its pixels can be of any size, infinite included; labels placed
    with such sizes would sit at absurd coordinates and drag the axes' range (and pyqtgraph's tick
    computation) with them, so a size is 0 when unknown and at most `limit` [2] (the extent the
    view shows). A fixed cap is no good: in a view of a square 40 m across (a camera over a
    plaza) a name is several metres wide, and names spread by a smaller size print over each other."""
    sx, sy = plot.getViewBox().viewPixelSize()
    sizes = np.array([[label.boundingRect().width() * sx, label.boundingRect().height() * sy] for label in labels],
                     float).reshape(-1, 2)
    return np.clip(np.nan_to_num(sizes, nan=0.0, posinf=0.0, neginf=0.0), 0.0, np.asarray(limit, float))


def spread_labels(at: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Label positions [n, 2] (bottom centres) moved up, lowest first, until no two labels'
    boxes (`sizes` [n, 2] width and height) overlap: names of people side by side stack
    instead of printing over each other. Labels that do not collide stay where they were."""
    out = np.array(at, float)
    done: list[int] = []
    for i in np.argsort(out[:, 1], kind="stable"):
        w, h = sizes[i]
        moved = True
        while moved:
            moved = False
            for j in done:
                if abs(out[i, 0] - out[j, 0]) < (w + sizes[j, 0]) / 2 and abs(out[i, 1] - out[j, 1]) < (h + sizes[j, 1]) / 2:
                    out[i, 1] = out[j, 1] + (h + sizes[j, 1]) / 2 + 1e-9  # just above the one in the way
                    moved = True
        done.append(int(i))
    return out


def grid_lines(low: np.ndarray, high: np.ndarray, step: float = 1.0) -> np.ndarray:
    """Endpoints [2k, 2] of lines every `step` metres across the box from `low` to `high`."""
    xs = np.arange(np.ceil(low[0] / step), np.floor(high[0] / step) + 1) * step
    ys = np.arange(np.ceil(low[1] / step), np.floor(high[1] / step) + 1) * step
    vertical = [p for x in xs for p in ((x, low[1]), (x, high[1]))]
    horizontal = [p for y in ys for p in ((low[0], y), (high[0], y))]
    return np.array(vertical + horizontal, dtype=float).reshape(-1, 2)


def _anchor(joints: np.ndarray) -> np.ndarray:
    """Where a person's name goes: over the head, or over the middle of what is known."""
    if np.isfinite(joints[HEAD]).all():
        return joints[HEAD]
    known = joints[np.isfinite(joints).all(axis=1)]
    return known.mean(axis=0) if len(known) else np.zeros(3)
