"""Benchmark workloads built from the synthetic walkers of `gaitcam.sensors.demo`.

`crowd_recording` is the live pipeline's load: N people in view at every frame. A demo walk
leaves the view to turn round; here each person's passes are put back to back (each pass a
new body, as a sensor sees a new person walk in), so the number of tracks never drops, and
the odd lost joint is filled from the frame before, so no track restarts for it. Speed, not
recognition, is measured, so nothing else about the walks matters.
"""
from __future__ import annotations

import numpy as np

from gaitcam.recording.recording import Recording, RecordingMeta
from gaitcam.sensors.demo import DEMO_FLOOR, DEMO_PEOPLE, DEMO_STRANGER, demo_walk
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.skeleton.normalize import normalize_windows
from gaitcam.skeleton.sequence import SkeletonSequence
from gaitcam.skeleton.windows import WindowRule, track_windows

IDENTITIES = (*DEMO_PEOPLE, DEMO_STRANGER)
_PASS_ID = 1000  # body id = person slot * _PASS_ID + pass number


def _fill_missing(joints: np.ndarray) -> np.ndarray:
    """Joints [T, J, 3] with each lost joint copied from the nearest earlier frame (or, at the
    start, the first frame that has it)."""
    out = joints.copy()
    lost = np.isnan(out).any(axis=2)
    for t, j in zip(*np.nonzero(lost)):  # row-major: earlier frames are already filled
        out[t, j] = out[t - 1, j] if t > 0 else out[np.flatnonzero(~lost[:, j])[0], j]
    return out


def _walk_frames(name: str, walk_seed: int, frames: int, fps: float) -> SkeletonSequence:
    """At least `frames` in-view frames of one demo walk."""
    seconds = 2.0 * frames / fps
    while len(seq := demo_walk(name, walk_seed, seconds, fps)) < frames:
        seconds *= 2
    return seq


def crowd_recording(people: int = 6, seconds: float = 60.0, fps: float = 30.0, seed: int = 0) -> Recording:
    """`people` walkers in view together for `seconds`: one track per pass, passes of one
    person back to back, everyone in every frame."""
    frames = int(round(seconds * fps))
    times = np.arange(frames) / fps
    tracks: dict[int, SkeletonSequence] = {}
    for slot in range(people):
        seq = _walk_frames(IDENTITIES[slot % len(IDENTITIES)], 1000 * seed + slot, frames, fps)
        joints = _fill_missing(seq.joints[:frames])
        # A new pass starts where the walk left the view (a step longer than 1.5 frames).
        new_pass = np.concatenate([[0], np.cumsum(np.diff(seq.timestamps[:frames]) > 1.5 / fps)])
        for k in np.unique(new_pass):
            rows = new_pass == k
            tracks[slot * _PASS_ID + int(k)] = SkeletonSequence(joints[rows], times[rows], CANONICAL,
                                                               source=f"crowd:{slot}:{k}")
    meta = RecordingMeta(sensor="demo", layout=CANONICAL.name, fps=fps, calibration={"floor": list(DEMO_FLOOR)},
                         extra={"people": people, "seed": seed})
    return Recording(meta, tracks)


def demo_windows(n: int, f: int, normalization: str, seed: int = 0) -> np.ndarray:
    """`n` complete windows [n, f, 20, 3] of demo walks, normalised as the encoder expects."""
    fps = 30.0
    seconds = (n + f) / fps
    while True:
        rec = crowd_recording(people=2, seconds=seconds, fps=fps, seed=seed)
        parts = [track_windows(s, WindowRule(f=f, stride=1)).joints for s in rec.tracks.values()]
        windows = np.concatenate(parts)
        if len(windows) >= n:
            return normalize_windows(windows[:n], normalization)
        seconds *= 2
