"""NTU RGB+D `.skeleton` text files (Kinect v2, 25 joints): import and export.

    frame count
    per frame:  body count
      per body: bodyID clippedEdges handLeftConfidence handLeftState handRightConfidence
                handRightState isRestricted leanX leanY trackingState
                joint count (25)
                25 × "x y z depthX depthY colorX colorY orientationW orientationX orientationY
                      orientationZ trackingState"

Joints follow the Kinect v2 `JointType` order (= `layouts.KINECT_V2`), x y z in metres. Files
hold no timestamps: frames are 1/30 s apart. A joint's tracking state 0 (not tracked) reads as
MISSING (NaN), 1 as INFERRED, 2 as TRACKED. bodyIDs are 64-bit sensor ids; tracks are numbered
0, 1, ... in order of appearance and the original ids kept in `meta.extra["ntu_body_ids"]`
(track as a string -> bodyID). File names `SsssCcccPpppRrrrAaaa` give the subject `Pppp`.

Only x y z and the tracking state are read; image coordinates, orientations and the per-body
fields are not. The exporter writes those as 0 (body trackingState 2).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gaitcam.errors import FormatError, excerpt
from gaitcam.recording.recording import (
    MAX_TEXT_BYTES, Recording, RecordingMeta, check_text, read_file, screen_joints, tracks_from_rows,
)
from gaitcam.skeleton.layouts import CANONICAL, KINECT_V2
from gaitcam.skeleton.retarget import TABLES, to_canonical
from gaitcam.skeleton.sequence import JointState, SkeletonSequence

SUFFIX = ".skeleton"
FPS = 30.0
_J = KINECT_V2.n_joints
_SUBJECT = re.compile(r"S\d{3}C\d{3}(P\d{3})R\d{3}A\d{3}")
# NTU tracking state -> JointState: 0 not tracked, 1 inferred, 2 tracked.
_STATES = {0: JointState.MISSING, 1: JointState.INFERRED, 2: JointState.TRACKED}
_MAX_LINE = 1024  # characters: NTU lines are under 200; a longer one is not NTU (and is not split)
_MAX_COUNT_DIGITS = 18  # a count beyond int64 is not a count; also keeps int() off its 4300-digit error


class _Lines:
    """The file's lines with a cursor, so every error names the line it is about."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.number = 0  # 1-based number of the line last taken

    def take(self, what: str) -> list[str]:
        if self.number >= len(self.lines):
            raise FormatError(self.path, f"truncated file: ends where {what} should be", line=self.number + 1)
        self.number += 1
        line = self.lines[self.number - 1]
        if len(line) > _MAX_LINE:
            raise self.error(f"expected {what}, found a line of {len(line)} characters")
        return line.split()

    def count(self, what: str) -> int:
        fields = self.take(what)
        if len(fields) != 1 or not fields[0].isdigit() or len(fields[0]) > _MAX_COUNT_DIGITS:
            raise self.error(f"expected {what} (one whole number), found {excerpt(' '.join(fields))}")
        return int(fields[0])

    def error(self, message: str) -> FormatError:
        return FormatError(self.path, message, line=self.number)


def read_ntu(path: str | Path) -> Recording:
    """One `.skeleton` file: every body, as tracks in the kinect_v2 layout."""
    path = Path(path)
    data = read_file(path, MAX_TEXT_BYTES)
    if not data.strip():
        raise FormatError(path, "truncated file: ends where the frame count should be (the file is empty)", line=1)
    check_text(path, data, "cannot read as NTU text: ")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise FormatError(path, f"cannot read as NTU text ({e.reason} at byte {e.start})") from e
    lines = _Lines(path, text)
    n_frames = lines.count("the frame count")
    body_ids: dict[int, int] = {}  # NTU bodyID -> track
    times, tracks, joints, states = [], [], [], []
    for frame in range(n_frames):
        seen: set[int] = set()
        for _ in range(lines.count(f"the body count of frame {frame + 1}")):
            fields = lines.take("a body line")
            if len(fields) != 10 or not fields[0].isdigit():
                raise lines.error(f"expected a body line of 10 values starting with the bodyID, "
                                  f"found {len(fields)} values")
            if len(fields[0]) > 20 or (body_id := int(fields[0])) >= 2**64:  # bodyIDs are uint64
                raise lines.error(f"bodyID {excerpt(fields[0])} does not fit in 64 bits")
            if body_id in seen:
                raise lines.error(f"body {body_id} twice in frame {frame + 1}")
            seen.add(body_id)
            if (n := lines.count("the joint count")) != _J:
                raise lines.error(f"expected {_J} joints (Kinect v2), found {n}")
            xyz, state = _read_joints(lines)
            times.append(frame / FPS)
            tracks.append(body_ids.setdefault(body_id, len(body_ids)))
            joints.append(xyz)
            states.append(state)
    if any(line.strip() for line in lines.lines[lines.number:]):
        raise FormatError(path, f"unexpected content after the {n_frames} frames the first line announces",
                          line=lines.number + 1)
    subject = _SUBJECT.match(path.name)
    meta = RecordingMeta(
        sensor="ntu", layout=KINECT_V2.name, fps=FPS, subject=subject.group(1) if subject else None,
        extra={"ntu_body_ids": {str(track): body for body, track in body_ids.items()}},
    )
    if not times:
        return Recording(meta, {}, path)
    # float64 until screened: 1e300 must read as implausible, not overflow to a float32 inf.
    xyz, joint_states = screen_joints(path, np.stack(joints), np.stack(states), meta)
    found = tracks_from_rows(path, np.array(times), np.array(tracks), xyz, joint_states, KINECT_V2)
    return Recording(meta, found, path)


def _read_joints(lines: _Lines) -> tuple[np.ndarray, np.ndarray]:
    xyz = np.empty((_J, 3), np.float64)
    state = np.empty(_J, np.int8)
    for j in range(_J):
        fields = lines.take(f"joint {j + 1} of {_J}")
        if len(fields) != 12:
            raise lines.error(f"expected 12 values for joint {KINECT_V2.joints[j]}, found {len(fields)}")
        try:
            values = [float(v) for v in fields[:3]]
            ntu_state = int(fields[11])
        except ValueError:
            raise lines.error(f"joint {KINECT_V2.joints[j]}: x y z or trackingState is not a number") from None
        if ntu_state not in _STATES:
            raise lines.error(f"joint {KINECT_V2.joints[j]}: trackingState {ntu_state} is not 0, 1 or 2")
        state[j] = _STATES[ntu_state]
        if ntu_state == 0:
            xyz[j] = np.nan
        elif not np.isfinite(values).all():
            raise lines.error(f"joint {KINECT_V2.joints[j]} is tracked but its position is not finite")
        else:
            xyz[j] = values
    return xyz, state


def write_ntu(rec: Recording, path: str | Path) -> None:
    """A recording as a `.skeleton` file.

    kinect_v2 recordings are written as they are. Any other layout is retargeted to the
    canonical 20 joints, each written into its Kinect v2 counterpart (HipCenter -> SpineBase,
    Spine -> SpineMid, ShoulderCenter -> SpineShoulder, limbs by name); Neck, hand tips and
    thumbs, which the canonical layout lacks, are written not tracked (state 0). NTU has no
    "derived" state: derived joints are written as inferred (1), missing ones as state 0.

    Frames go on NTU's 1/30 s grid from the first frame on; a frame that would share the
    previous one's slot (recordings faster than 30 fps) takes the next slot, so none is lost.
    """
    path = Path(path)
    v2_tracks = {tid: _as_kinect_v2(seq) for tid, seq in rec.tracks.items()}
    as_v2 = Recording(RecordingMeta(rec.meta.sensor, KINECT_V2.name, rec.meta.fps), v2_tracks)
    ids = rec.meta.extra.get("ntu_body_ids", {})
    frames: list[list[str]] = []  # each NTU frame's lines; an empty frame is ["0"]
    t0: float | None = None
    for frame in as_v2.frames():
        t0 = frame.time if t0 is None else t0
        slot = max(round((frame.time - t0) * FPS), len(frames))
        frames.extend([["0"]] * (slot - len(frames)))  # empty frames keep the timing
        lines = [str(len(frame.bodies))]
        for body in frame.bodies:
            lines.append(f"{ids.get(str(body.track), body.track)} 0 0 0 0 0 0 0 0 2")
            lines.append(str(_J))
            lines.extend(_joint_line(xyz, state) for xyz, state in zip(body.joints, body.states))
        frames.append(lines)
    out = [str(len(frames))] + [line for lines in frames for line in lines]
    try:
        path.write_text("\n".join(out) + "\n", encoding="ascii")
    except OSError as e:
        raise FormatError(path, f"cannot write ({e.strerror or e})") from e


def _joint_line(xyz: np.ndarray, state: int) -> str:
    if state == JointState.MISSING or np.isnan(xyz).any():
        return "0 0 0 0 0 0 0 0 0 0 0 0"
    ntu_state = 2 if state == JointState.TRACKED else 1
    return f"{xyz[0]:.9g} {xyz[1]:.9g} {xyz[2]:.9g} 0 0 0 0 0 0 0 0 {ntu_state}"


def _as_kinect_v2(seq: SkeletonSequence) -> SkeletonSequence:
    """seq itself if kinect_v2; else its canonical joints placed in a Kinect v2 skeleton."""
    if seq.layout == KINECT_V2:
        return seq
    canon = to_canonical(seq)
    joints = np.full((len(seq), _J, 3), np.nan, np.float32)
    states = np.zeros((len(seq), _J), np.int8)
    for c, v2_name in TABLES[KINECT_V2.name].items():  # every v2 rule is a plain copy: invert it
        v2, ci = KINECT_V2.index(v2_name), CANONICAL.index(c)
        joints[:, v2], states[:, v2] = canon.joints[:, ci], canon.states[:, ci]
    return SkeletonSequence(joints, seq.timestamps, KINECT_V2, states, seq.source)
