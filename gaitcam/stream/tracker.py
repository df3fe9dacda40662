"""Stable person ids: the app's own track id for every body of every frame.

Sensors with body tracking (Kinect, Azure) give ids; those are kept, but mapped to the app's
own ids, because sensors re-use ids for new people and two sensors would clash. Sources
without ids (MediaPipe on a webcam, some recordings) are tracked here: each track's hip
centre is predicted at constant velocity and bodies are matched to predictions by optimal
assignment within a distance gate. A track unseen for `max_missed` frames ends; app ids are
never re-used, so whatever hangs off a track id (ring buffer, votes, a name) dies with it.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

_FAR = 1e6  # cost of a pair outside the gate: never preferred to a valid pair


@dataclass
class _Track:
    id: int
    position: np.ndarray
    time: float
    key: tuple[str, int] | None  # (sensor, sensor body id) for sensor-tracked bodies
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    moved: bool = False  # has a velocity measurement (a track's first one is taken whole)
    missed: int = 0

    def predict(self, time: float) -> np.ndarray:
        return self.position + self.velocity * (time - self.time)


@dataclass
class TrackUpdate:
    ids: list[int]  # the app track id of each body, in input order
    ended: list[int]  # tracks that ended at this update (lost, or their sensor id re-used)


class Tracker:
    """Assigns app track ids; call `update` once per frame, with or without bodies."""

    def __init__(
        self, max_distance: float = 0.5, max_missed: int = 10, max_jump: float = 1.0, smoothing: float = 0.5,
    ) -> None:
        self.max_distance = max_distance  # metres from a prediction for a body to continue a track
        self.max_missed = max_missed
        self.max_jump = max_jump  # a sensor id that moves further was re-used for someone else
        self.smoothing = smoothing  # weight of the newest velocity measurement
        self._tracks: dict[int, _Track] = {}
        self._by_key: dict[tuple[str, int], int] = {}
        self._next_id = 1

    @property
    def active(self) -> list[int]:
        return list(self._tracks)

    @property
    def created(self) -> int:
        """How many tracks there have been."""
        return self._next_id - 1

    def update(
        self, time: float, positions: np.ndarray, sensor_ids: Sequence[int | None], sensor: str = "",
    ) -> TrackUpdate:
        """Track ids for bodies at `positions` [n, 3] (finite, metres) with their sensor ids."""
        positions = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
        ids: list[int | None] = [None] * len(positions)
        ended: list[int] = []
        free: list[int] = []  # bodies to match by position
        for i, sid in enumerate(sensor_ids):
            key = None if sid is None else (sensor, int(sid))
            if key is None or (key in self._by_key and self._by_key[key] in ids):  # no id, or a duplicate
                free.append(i)
                continue
            track = self._tracks.get(self._by_key.get(key, -1))
            if track is not None and np.linalg.norm(track.predict(time) - positions[i]) > self.max_jump:
                ended.append(self._end(track.id))
                track = None
            if track is None:
                track = self._new(time, positions[i], key)
            ids[i] = track.id
        self._match(time, positions, free, ids)
        seen = {track_id: i for i, track_id in enumerate(ids)}
        for track in list(self._tracks.values()):
            if track.id in seen:
                self._move(track, time, positions[seen[track.id]])
            else:
                track.missed += 1
                if track.missed > self.max_missed:
                    ended.append(self._end(track.id))
        return TrackUpdate([int(i) for i in ids], ended)  # type: ignore[arg-type]

    def _match(self, time: float, positions: np.ndarray, free: list[int], ids: list[int | None]) -> None:
        """Give id-less bodies the nearest predicted id-less tracks (optimal, gated), or new ones."""
        candidates = [t for t in self._tracks.values() if t.key is None and t.id not in ids]
        if free and candidates:
            predicted = np.array([t.predict(time) for t in candidates])
            cost = np.linalg.norm(positions[free][:, None] - predicted[None], axis=-1)
            cost[cost > self.max_distance] = _FAR
            for r, c in zip(*linear_sum_assignment(cost)):
                if cost[r, c] < _FAR:
                    ids[free[r]] = candidates[c].id
        for i in free:
            if ids[i] is None:
                ids[i] = self._new(time, positions[i], None).id

    def _new(self, time: float, position: np.ndarray, key: tuple[str, int] | None) -> _Track:
        track = _Track(self._next_id, position.copy(), time, key)
        self._next_id += 1
        self._tracks[track.id] = track
        if key is not None:
            self._by_key[key] = track.id
        return track

    def _move(self, track: _Track, time: float, position: np.ndarray) -> None:
        dt = time - track.time
        if dt > 0:
            measured = (position - track.position) / dt
            weight = self.smoothing if track.moved else 1.0
            track.velocity = weight * measured + (1 - weight) * track.velocity
            track.moved = True
        track.position, track.time, track.missed = position.copy(), time, 0

    def _end(self, track_id: int) -> int:
        track = self._tracks.pop(track_id)
        if track.key is not None and self._by_key.get(track.key) == track_id:
            del self._by_key[track.key]
        return track_id
