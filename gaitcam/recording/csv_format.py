"""gaitcam CSV: a recording as a spreadsheet, one row per body per frame, and back.

    # gaitcam-csv v1 layout=kinect_v2 fps=30.0 sensor=ntu [subject=P001]
    time,track,SpineBase_x,SpineBase_y,SpineBase_z,SpineBase_state,...
    0.0,0,0.2181153,0.1725972,3.785547,2,...

time in seconds, x y z in metres, state a `JointState` number (0 missing, 1 inferred,
2 tracked, 3 derived). A missing joint has empty x y z. Values in the comment line are
percent-encoded, so a subject name may hold spaces. Calibration and other metadata are not
kept: use `.gaitrec` for a lossless copy.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np

from gaitcam.errors import FormatError, excerpt
from gaitcam.recording.recording import (
    MAX_ABS_TIME_S, MAX_TEXT_BYTES, Recording, RecordingMeta, check_fps, check_text, read_file, screen_joints,
    tracks_from_rows,
)
from gaitcam.skeleton.layouts import LAYOUTS, JointLayout
from gaitcam.skeleton.sequence import JointState

SUFFIX = ".csv"
MAGIC = "# gaitcam-csv"
VERSION = 1
_COMMENT = re.compile(r"# gaitcam-csv v(\d+)((?: \w+=\S*)*)\s*")
_STATES = {int(s) for s in JointState}
_MAX_COMMENT = 4096  # characters of the first line read: it is short, a NUL-filled file is not


def columns(layout: JointLayout) -> list[str]:
    """The header row for a layout."""
    return ["time", "track"] + [f"{j}_{c}" for j in layout.joints for c in ("x", "y", "z", "state")]


def write_csv(rec: Recording, path: str | Path) -> None:
    """Every body of every frame as one row, in time order."""
    path = Path(path)
    meta = {"layout": rec.meta.layout, "fps": rec.meta.fps, "sensor": rec.meta.sensor}
    if rec.meta.subject is not None:
        meta["subject"] = rec.meta.subject
    try:
        with open(path, "w", newline="", encoding="utf-8") as f:
            f.write(f"{MAGIC} v{VERSION} " + " ".join(f"{k}={quote(str(v), safe='')}" for k, v in meta.items()) + "\n")
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(columns(rec.layout))
            for frame in rec.frames():
                for body in frame.bodies:
                    row: list[object] = [repr(frame.time), body.track]
                    for xyz, state in zip(body.joints, body.states):
                        missing = state == JointState.MISSING or np.isnan(xyz).any()
                        row += ["", "", "", 0] if missing else [f"{v:.9g}" for v in xyz] + [int(state)]
                    writer.writerow(row)
    except OSError as e:
        raise FormatError(path, f"cannot write ({e.strerror or e})") from e


def read_csv(path: str | Path) -> Recording:
    """A gaitcam CSV file back into a Recording (tracks in order of first appearance)."""
    path = Path(path)
    data = read_file(path, MAX_TEXT_BYTES)  # whole and bounded: a FIFO or /dev/zero never gets here
    if not data.strip():
        raise FormatError(path, f"first line is not '{MAGIC} v{VERSION} layout=... fps=... sensor=...' "
                          "(the file is empty)", line=1)
    check_text(path, data)
    try:
        with io.TextIOWrapper(io.BytesIO(data), newline="", encoding="utf-8") as f:
            meta, layout = _parse_comment(path, f.readline(_MAX_COMMENT))
            reader = csv.reader(f)
            header = next(reader, None)
            if header != columns(layout):
                raise FormatError(path, f"header row does not name the {layout.name} joints as "
                                  f"time,track,<joint>_x,_y,_z,_state,...", line=2)
            rows = [_parse_row(path, reader.line_num + 1, row, layout.n_joints) for row in reader if row]
    except OSError as e:
        raise FormatError(path, f"cannot read file ({e.strerror or e})") from e
    except UnicodeDecodeError as e:
        raise FormatError(path, f"not a text file ({e.reason})") from e
    except csv.Error as e:
        raise FormatError(path, f"malformed CSV ({e})") from e
    if not rows:
        return Recording(meta, {}, path)
    times, tracks, joints, states = zip(*rows)
    xyz, joint_states = screen_joints(path, np.stack(joints), np.stack(states), meta,
                                       sensor_space=False)
    return Recording(meta, tracks_from_rows(path, np.array(times), np.array(tracks, dtype=np.int64), xyz,
                                            joint_states, layout), path)


def _parse_comment(path: Path, line: str) -> tuple[RecordingMeta, JointLayout]:
    m = _COMMENT.fullmatch(line)
    if not m:
        raise FormatError(path, f"first line is not '{MAGIC} v{VERSION} layout=... fps=... sensor=...'", line=1)
    if int(m.group(1)) != VERSION:
        raise FormatError(path, f"unsupported gaitcam CSV version v{m.group(1)} (this gaitcam reads v{VERSION})",
                          line=1)
    fields = {k: unquote(v) for k, v in (item.split("=", 1) for item in m.group(2).split())}
    missing = [k for k in ("layout", "fps", "sensor") if k not in fields]
    if missing:
        raise FormatError(path, f"first line lacks {', '.join(missing)}", line=1)
    if fields["layout"] not in LAYOUTS:
        raise FormatError(path, f"unknown joint layout {fields['layout']!r}; known: {', '.join(LAYOUTS)}", line=1)
    try:
        fps = float(fields["fps"])
    except ValueError:
        raise FormatError(path, f"fps is not a number: {excerpt(fields['fps'])}", line=1) from None
    check_fps(path, fps, line=1)
    meta = RecordingMeta(sensor=fields["sensor"], layout=fields["layout"], fps=fps, subject=fields.get("subject"))
    return meta, LAYOUTS[fields["layout"]]


def _parse_row(path: Path, line: int, row: list[str], n_joints: int) -> tuple[float, int, np.ndarray, np.ndarray]:
    if len(row) != 2 + 4 * n_joints:
        raise FormatError(path, f"expected {2 + 4 * n_joints} values, found {len(row)}", line=line)
    try:
        time, track = float(row[0]), int(row[1])
        cells = np.array(row[2:], dtype=object).reshape(n_joints, 4)
        states = cells[:, 3].astype(np.int64)
        empty = cells[:, :3] == ""
        xyz = np.where(empty, "nan", cells[:, :3]).astype(np.float64)
    except (ValueError, OverflowError) as e:  # OverflowError: a state like 18446744073709551616
        raise FormatError(path, f"not a number ({e})", line=line) from None
    if not -2**63 <= track < 2**63:
        raise FormatError(path, f"track id {excerpt(track)} does not fit in 64 bits", line=line)
    if not abs(time) <= MAX_ABS_TIME_S:  # also catches NaN
        raise FormatError(path, f"time {time!r} s is not a plausible time (finite, within {MAX_ABS_TIME_S:g} s of 0)",
                          line=line)
    if bad := set(states.tolist()) - _STATES:
        raise FormatError(path, f"joint state not in {sorted(_STATES)}: {sorted(bad)}", line=line)
    present = states != JointState.MISSING
    if (empty.any(axis=1) & present).any() or not np.isfinite(xyz[present]).all():
        raise FormatError(path, "a joint whose state is not 0 (missing) has no finite x, y, z", line=line)
    xyz[~present] = np.nan
    return time, track, xyz, states.astype(np.int8)
