"""A recording in memory: who was seen (one skeleton sequence per track) plus what recorded it.

Every reader returns this, whatever the file format, and every writer takes it, so conversion
is read-then-write and the app never cares where a recording came from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from gaitcam.errors import FormatError
from gaitcam.sensors.base import Body, Frame
from gaitcam.skeleton.layouts import JointLayout
from gaitcam.skeleton.sequence import SkeletonSequence


@dataclass
class RecordingMeta:
    """What a recording needs to be replayed and trusted later."""

    sensor: str  # the source that made it ("kinect", "azure", "demo", "kgbd", ...)
    layout: str  # joint layout name (a key of skeleton.layouts.LAYOUTS)
    fps: float  # nominal frame rate
    calibration: dict | None = None  # e.g. {"floor": [a, b, c, d]} or {"extrinsics": 4x4 list}
    subject: str | None = None  # who walks, when known (enrolment, datasets)
    created: str | None = None  # ISO 8601
    extra: dict = field(default_factory=dict)


@dataclass
class Recording:
    """Tracks (track id -> that person's frames), all in the layout `meta.layout`."""

    meta: RecordingMeta
    tracks: dict[int, SkeletonSequence]
    path: Path | None = None

    @property
    def layout(self) -> JointLayout:
        return next(iter(self.tracks.values())).layout if self.tracks else _layout(self.meta.layout)

    def frames(self) -> Iterator[Frame]:
        """The tracks merged back into frames in time order (what replay plays)."""
        events = sorted((float(t), tid, i) for tid, seq in self.tracks.items() for i, t in enumerate(seq.timestamps))
        layout = self.layout
        i = 0
        index = 0
        while i < len(events):
            t = events[i][0]
            bodies = []
            while i < len(events) and events[i][0] == t:
                _, tid, k = events[i]
                seq = self.tracks[tid]
                bodies.append(Body(tid, seq.joints[k], seq.states[k]))
                i += 1
            yield Frame(t, bodies, layout, index=index)
            index += 1

    @property
    def duration(self) -> float:
        times = [s.timestamps[[0, -1]] for s in self.tracks.values() if len(s)]
        return float(np.ptp(np.concatenate(times))) if times else 0.0


def tracks_from_rows(
    path: object,
    times: np.ndarray,
    track_ids: np.ndarray,
    joints: np.ndarray,
    states: np.ndarray,
    layout: JointLayout,
) -> dict[int, SkeletonSequence]:
    """Rows (one body in one frame each, in file order) grouped into tracks by first appearance.

    Every row-based reader ends here, so every format rejects the same things the same way:
    a non-finite time, or a track whose time does not increase (windows would misread it).
    """
    times = np.asarray(times, dtype=np.float64)
    track_ids = np.asarray(track_ids, dtype=np.int64)
    if not np.isfinite(times).all():
        raise FormatError(path, f"time is not finite in row {int(np.argmin(np.isfinite(times)))}")
    ids, first = np.unique(track_ids, return_index=True)
    tracks: dict[int, SkeletonSequence] = {}
    for tid in ids[np.argsort(first)]:
        rows = np.flatnonzero(track_ids == tid)
        back = np.flatnonzero(np.diff(times[rows]) <= 0)
        if len(back):
            raise FormatError(path, f"track {tid}: time does not increase after {times[rows[back[0]]]:.6f} s")
        tracks[int(tid)] = SkeletonSequence(joints[rows], times[rows], layout, states[rows], source=str(path))
    return tracks


def _layout(name: str) -> JointLayout:
    from gaitcam.skeleton.layouts import LAYOUTS

    return LAYOUTS[name]
