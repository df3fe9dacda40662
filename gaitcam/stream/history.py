"""The last seconds of every live track, in memory: what "enrol the person in view" enrols from.

A `FrameRecorder` for the pipeline (passing each frame on to the recorder it wraps, if any): it
keeps each track's frames, in the source's layout with app track ids, for up to `seconds`, and
the most recent `max_tracks` tracks. `recording(track)` turns one track's kept frames into a
`Recording`, which enrolment then checks like any file.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque

import numpy as np

from gaitcam.recording.recording import Recording, RecordingMeta
from gaitcam.sensors.base import Frame
from gaitcam.skeleton.layouts import JointLayout
from gaitcam.skeleton.sequence import JointState, SkeletonSequence
from gaitcam.stream.pipeline import FrameRecorder


class TrackHistory:
    def __init__(self, sensor: str, fps: float, seconds: float = 30.0, max_tracks: int = 64,
                 downstream: FrameRecorder | None = None) -> None:
        self.sensor, self.fps = sensor, fps
        self.downstream = downstream
        self._frames = max(1, int(round(seconds * fps)))
        self._max_tracks = max_tracks
        self._tracks: OrderedDict[int, deque] = OrderedDict()  # track -> (time, joints, states), oldest first
        self._layout: JointLayout | None = None
        self._lock = threading.Lock()

    def write(self, frame: Frame) -> None:
        with self._lock:
            self._layout = frame.layout
            for body in frame.bodies:
                if body.track is None:
                    continue
                rows = self._tracks.get(body.track)
                if rows is None:
                    rows = self._tracks[body.track] = deque(maxlen=self._frames)
                    while len(self._tracks) > self._max_tracks:
                        self._tracks.popitem(last=False)  # the longest-gone track goes first
                states = body.states if body.states is not None else np.where(
                    np.isfinite(body.joints).all(axis=1), JointState.TRACKED, JointState.MISSING).astype(np.int8)
                rows.append((frame.time, np.array(body.joints, np.float32), np.array(states, np.int8)))
        if self.downstream is not None:
            self.downstream.write(frame)

    def tracks(self) -> list[int]:
        with self._lock:
            return list(self._tracks)

    def recording(self, track: int) -> Recording | None:
        """The kept frames of `track` as a one-track recording, or None if none are kept."""
        with self._lock:
            rows = list(self._tracks.get(track, ()))
            layout = self._layout
        if not rows or layout is None:
            return None
        times, joints, states = zip(*rows)
        seq = SkeletonSequence(np.stack(joints), np.array(times, np.float64), layout, np.stack(states))
        return Recording(RecordingMeta(self.sensor, layout.name, float(self.fps)), {track: seq})
