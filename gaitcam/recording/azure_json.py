"""Azure Kinect body-tracking JSON, as the SDK samples' `offline_processor` writes it.

    {"joint_names": ["PELVIS", "SPINE_NAVEL", ...],          32 k4abt joint names
     "frames": [{"timestamp_usec": 0, "num_bodies": 1,
                 "bodies": [{"body_id": 1,
                             "joint_positions": [[x, y, z], ...],      32, millimetres
                             "joint_orientations": [[w, x, y, z], ...]}]}, ...], ...}

Joints are matched to `layouts.AZURE_KINECT` by name (case-insensitive; the samples spell them
exactly as the layout does), so a file listing them in another order still reads right.
Positions become metres in Kinect camera space (x left, y up), the depth camera's optical axes
(y down) turned by `sensors.camera.optical_to_kinect` as the live azure source turns them, so a
recording and a live run agree; timestamps become seconds. The writer turns them back. The file
carries no confidence, so every joint reads as TRACKED; a `null` position (gaitcam's writer, for
a missing joint) reads as MISSING. The frame rate is inferred from the timestamps (the device
runs at 5, 15 or 30 fps), 30 when it cannot be.
Orientations are not read, and the writer leaves them out.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from gaitcam.errors import FormatError, excerpt
from gaitcam.recording.recording import (
    MAX_TEXT_BYTES, Recording, RecordingMeta, check_text, read_file, screen_joints, tracks_from_rows,
)
from gaitcam.sensors.camera import optical_to_kinect
from gaitcam.skeleton.layouts import AZURE_KINECT
from gaitcam.skeleton.sequence import JointState

SUFFIX = ".json"
DEVICE_FPS = (5.0, 15.0, 30.0)
_J = AZURE_KINECT.n_joints


def read_azure_json(path: str | Path) -> Recording:
    """One offline_processor JSON file: every body id as a track, in the azure_kinect layout."""
    path = Path(path)
    data = read_file(path, MAX_TEXT_BYTES)
    if not data.strip():
        raise FormatError(path, "empty file, not valid JSON")
    check_text(path, data)
    try:
        doc = json.loads(data)
    except json.JSONDecodeError as e:
        raise FormatError(path, f"not valid JSON ({e.msg})", line=e.lineno) from e
    except UnicodeDecodeError as e:
        raise FormatError(path, f"not a text file ({e.reason})") from e
    except ValueError as e:  # an integer of over 4300 digits
        raise FormatError(path, f"not valid JSON ({e})") from e
    except RecursionError:  # arrays nested thousands deep: no recording is, only a hostile file
        raise FormatError(path, "not valid JSON for a recording (nested too deeply)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("joint_names"), list):
        raise FormatError(path, "not Azure Kinect body-tracking JSON: no top-level 'joint_names' list")
    if not isinstance(doc.get("frames"), list):
        raise FormatError(path, "no top-level 'frames' list")
    order = _joint_order(path, doc["joint_names"])

    frame_times, times, tracks, joints = [], [], [], []
    for i, frame in enumerate(doc["frames"]):
        where = f"frames[{i}]"
        try:
            frame_times.append(float(frame["timestamp_usec"]) / 1e6)
            bodies = frame["bodies"]
            if len(bodies) != frame.get("num_bodies", len(bodies)):
                raise FormatError(path, f"{where}: num_bodies is {excerpt(frame['num_bodies'])} "
                                  f"but {len(bodies)} bodies follow")
            for k, body in enumerate(bodies):
                tracks.append(_body_id(path, f"{where}.bodies[{k}]", body["body_id"]))
                joints.append(_positions(path, f"{where}.bodies[{k}]", body["joint_positions"])[order])
                times.append(frame_times[-1])
        except FormatError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as e:
            raise FormatError(path, f"{where}: malformed frame ({type(e).__name__}: {e})") from e
    meta = RecordingMeta(sensor="azure", layout=AZURE_KINECT.name, fps=_infer_fps(np.array(frame_times)))
    if not times:
        return Recording(meta, {}, path)
    xyz = optical_to_kinect(np.stack(joints) / 1000.0)
    states = np.where(np.isnan(xyz).any(axis=2), JointState.MISSING, JointState.TRACKED).astype(np.int8)
    xyz, states = screen_joints(path, xyz, states, meta)
    return Recording(meta, tracks_from_rows(path, np.array(times), np.array(tracks), xyz, states, AZURE_KINECT), path)


def _body_id(path: Path, where: str, value: object) -> int:
    """A body id as an int64 track id; anything else (text, 1.5, true, 2**64) fails."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -2**63 <= value < 2**63:
        raise FormatError(path, f"{where}: body_id is not a 64-bit integer: {excerpt(value)}")
    return value


def _joint_order(path: Path, names: list) -> np.ndarray:
    """Index into the file's joints for each AZURE_KINECT joint; unknown or missing names fail."""
    upper = [n.upper() if isinstance(n, str) else excerpt(n) for n in names]  # excerpt: never str() a deep list
    unknown = sorted(set(upper) - set(AZURE_KINECT.joints))
    missing = [j for j in AZURE_KINECT.joints if j not in upper]
    if unknown or missing or len(upper) != _J:
        raise FormatError(path, f"joint_names do not match the {_J} Azure Kinect joints "
                          f"(unknown: {unknown or 'none'}; missing: {missing or 'none'}; {len(upper)} names)")
    return np.array([upper.index(j) for j in AZURE_KINECT.joints])


def _positions(path: Path, where: str, positions: list) -> np.ndarray:
    """[J, 3] float64 millimetres, NaN for a null entry."""
    if not isinstance(positions, list) or len(positions) != _J:
        raise FormatError(path, f"{where}: joint_positions must be a list of {_J} [x, y, z]")
    out = np.full((_J, 3), np.nan)
    for j, p in enumerate(positions):
        if p is None:
            continue
        if not (isinstance(p, list) and len(p) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)):
            raise FormatError(path, f"{where}: joint {j} is not [x, y, z] numbers: {excerpt(p)}")
        out[j] = p  # an int too large for a float raises OverflowError: the caller's "malformed frame"
    if not np.isfinite(out[~np.isnan(out).all(axis=1)]).all():
        raise FormatError(path, f"{where}: a joint position is not finite")
    return out


def _infer_fps(times: np.ndarray) -> float:
    """The device rate nearest the median frame step; 30 with fewer than two frames."""
    steps = np.diff(times)
    steps = steps[steps > 0]
    if not len(steps):
        return 30.0
    rate = 1.0 / float(np.median(steps))
    return min(DEVICE_FPS, key=lambda fps: abs(fps - rate))


def write_azure_json(rec: Recording, path: str | Path) -> None:
    """An azure_kinect recording in the offline_processor layout (missing joints as null)."""
    path = Path(path)
    if rec.meta.layout != AZURE_KINECT.name:
        raise FormatError(path, f"Azure Kinect JSON holds azure_kinect skeletons only, this recording is "
                          f"{rec.meta.layout} (write .gaitrec, .csv or .skeleton instead)")
    frames = []
    for frame in rec.frames():
        bodies = [{"body_id": body.track,
                   "joint_positions": [None if np.isnan(p).any() else [float(v) * 1000.0 for v in p]
                                       for p in optical_to_kinect(body.joints)]}
                  for body in frame.bodies]
        frames.append({"timestamp_usec": round(frame.time * 1e6), "num_bodies": len(bodies), "bodies": bodies})
    doc = {"joint_names": list(AZURE_KINECT.joints), "frames": frames}
    try:
        path.write_text(json.dumps(doc))
    except OSError as e:
        raise FormatError(path, f"cannot write ({e.strerror or e})") from e
