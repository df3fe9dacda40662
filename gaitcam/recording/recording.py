"""A recording in memory: who was seen (one skeleton sequence per track) plus what recorded it.

Every reader returns this, whatever the file format, and every writer takes it, so conversion
is read-then-write and the app never cares where a recording came from.
"""
from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from gaitcam.errors import FormatError
from gaitcam.sensors.base import Body, Frame
from gaitcam.skeleton.layouts import JointLayout
from gaitcam.skeleton.sequence import JointState, SkeletonSequence

log = logging.getLogger(__name__)

MAX_BINARY_BYTES = 1 << 30
"""Largest `.gaitrec` read (1 GiB: over 14 hours of one Kinect v2 body at 30 fps): a reader
holds the whole file, so a bigger one is refused with a clear error, never read into GBs."""
MAX_TEXT_BYTES = 256 << 20
"""Largest text recording read (NTU, Azure JSON, CSV, KGBD after decompression): parsed text
takes several times its size in memory."""
MAX_RANGE_M = 10.0
"""No skeleton sensor gaitcam reads sees a joint farther than this (Kinect v2 and Azure Kinect
stop near 5-8 m): a position beyond it is a glitch or corruption (see screen_joints)."""
MAX_ABS_TIME_S = 1e10
"""Times more than 1e10 s from 0 (317 years; Unix-epoch seconds fit) are corruption, not a recording."""
FPS_RANGE = (0.1, 10_000.0)
"""A frame rate outside this is broken (0, negative, NaN), and would divide by zero downstream."""
IMPLAUSIBLE = "implausible_joints"
"""`meta.extra` key: how many implausible joint positions a reader found (see screen_joints)."""

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


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
    try:
        track_ids = np.asarray(track_ids, dtype=np.int64)
    except OverflowError:  # a Python int beyond int64 (hostile or corrupt id)
        raise FormatError(path, "a track id does not fit in 64 bits") from None
    if not np.isfinite(times).all():
        raise FormatError(path, f"time is not finite in row {int(np.argmin(np.isfinite(times)))}")
    if (far := np.flatnonzero(np.abs(times) > MAX_ABS_TIME_S)).size:
        raise FormatError(path, f"time {times[far[0]]:.6g} s in row {far[0]} is not a plausible time "
                          f"(more than {MAX_ABS_TIME_S:g} s from 0)")
    ids, first = np.unique(track_ids, return_index=True)
    tracks: dict[int, SkeletonSequence] = {}
    for tid in ids[np.argsort(first)]:
        rows = np.flatnonzero(track_ids == tid)
        back = np.flatnonzero(np.diff(times[rows]) <= 0)
        if len(back):
            raise FormatError(path, f"track {tid}: time does not increase after {times[rows[back[0]]]:.6f} s")
        tracks[int(tid)] = SkeletonSequence(joints[rows], times[rows], layout, states[rows], source=str(path))
    return tracks


def check_fps(path: object, fps: float, line: int | None = None) -> float:
    """fps itself if a usable frame rate, else FormatError (0, negative, NaN and inf all are not)."""
    if not FPS_RANGE[0] <= fps <= FPS_RANGE[1]:  # also False for NaN
        raise FormatError(path, f"fps {fps!r} is not a usable frame rate "
                          f"(expected {FPS_RANGE[0]:g} to {FPS_RANGE[1]:g})", line=line)
    return fps


def screen_joints(
    path: object, joints: np.ndarray, states: np.ndarray, meta: RecordingMeta | None = None, sensor_space: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(joints, states) with joint positions no sensor reports found, counted and warned about.

    A joint not already MISSING is implausible when its position is not finite (as float32),
    lies farther than MAX_RANGE_M from the sensor, or is exactly (0, 0, 0), the
    sensor itself (what an all-zero walk or a zero-filled glitch holds). A non-finite one is
    always made MISSING (NaN). Far and (0, 0, 0) ones are made MISSING too when `sensor_space`
    (a dataset of one known depth sensor, in its camera's metres: NTU, Azure JSON, KGBD); the
    app's own lossless formats (.gaitrec, CSV) keep them as written, as they may hold any
    coordinates the app wrote, and only warn. Either way the count goes to
    `meta.extra[IMPLAUSIBLE]` and a warning names the file, so a damaged recording never reads
    as a silent success. Arrays are [..., J, 3] and [..., J]; copied only when changed.
    """
    present = np.asarray(states) != JointState.MISSING
    with np.errstate(all="ignore"):  # overflow to inf is exactly what is looked for
        # As float32, which SkeletonSequence stores: 1e300 "kept as written" would become inf.
        finite = np.isfinite(np.asarray(joints, dtype=np.float32)).all(axis=-1)
        square = np.einsum("...i,...i->...", joints, joints)
        far = finite & ~(square <= MAX_RANGE_M ** 2)
    origin = (joints == 0).all(axis=-1)
    counts = {"not finite": int((present & ~finite).sum()), f"beyond {MAX_RANGE_M:g} m": int((present & far).sum()),
              "at exactly (0, 0, 0)": int((present & origin).sum())}
    total = sum(counts.values())
    if not total:
        return joints, states
    bad = present & ((~finite | far | origin) if sensor_space else ~finite)
    if bad.any():
        joints, states = np.array(joints), np.array(states)  # copies: the inputs may be read-only views
        joints[bad] = np.nan
        states[bad] = JointState.MISSING
    if meta is not None:
        meta.extra[IMPLAUSIBLE] = int(meta.extra.get(IMPLAUSIBLE, 0)) + total
    log.warning("%s: %d implausible joint positions (%s): %s", path, total,
                ", ".join(f"{n} {why}" for why, n in counts.items() if n),
                "read as missing" if sensor_space else "non-finite ones read as missing, the others kept as written")
    return joints, states


def open_regular(path: Path, limit: int | None = None) -> BinaryIO:
    """The file opened for reading, if it is a regular file of at most `limit` bytes.

    A FIFO would block the reader forever and a device (/dev/zero) never ends, so anything
    but a regular file is refused before it is opened (opening some devices acts on them).
    """
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise FormatError(path, f"not a regular file but {_kind(st.st_mode)}: recordings are read from files")
        # O_NONBLOCK: should the path be swapped for a FIFO after the stat, open does not wait.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise FormatError(path, f"cannot read file ({e.strerror or e})") from e
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        f.close()
        raise FormatError(path, f"not a regular file but {_kind(st.st_mode)}: recordings are read from files")
    if limit is not None and st.st_size > limit:
        f.close()
        raise _too_large(path, st.st_size, limit)
    return f


def read_file(path: Path, limit: int) -> bytes:
    """The whole content of a regular file of at most `limit` bytes (see open_regular)."""
    with open_regular(path, limit) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            data = f.read(size + 1)  # read(n) allocates n: ask for what is there, not for the limit
            if len(data) > size:  # the file grew, or lies about its size (/proc): read on, bounded
                parts, total = [data], len(data)
                while total <= limit and (chunk := f.read(min(1 << 20, limit + 1 - total))):
                    parts.append(chunk)
                    total += len(chunk)
                data = b"".join(parts)
        except OSError as e:
            raise FormatError(path, f"cannot read file ({e.strerror or e})") from e
    if len(data) > limit:
        raise _too_large(path, len(data), limit)
    return data


def check_text(path: object, data: bytes, what: str = "") -> None:
    """FormatError if data holds a NUL byte: no text format has one, and a NUL-filled file
    (a disk or copy failure) must fail at once, not be parsed as one gigantic line."""
    if (at := data.find(b"\0")) >= 0:
        raise FormatError(path, f"{what}binary data, not text (a NUL byte at byte {at})")


def _too_large(path: object, size: int, limit: int) -> FormatError:
    return FormatError(path, f"too large to read: {size} bytes, over the limit of {limit} ({limit / 2**20:g} MiB); "
                       "split the recording")


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "some other kind of file")


def _layout(name: str) -> JointLayout:
    from gaitcam.skeleton.layouts import LAYOUTS

    return LAYOUTS[name]
