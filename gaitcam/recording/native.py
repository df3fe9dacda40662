"""gaitcam's own recording format (`.gaitrec`): what the recorder writes live.

It must survive the app being killed mid-recording, so it is append-only and self-checking:

    b"GAITCAM-REC 1\\n"                  magic + format version
    record: header                      the RecordingMeta as UTF-8 JSON (+ the layout's joint names)
    record: rows, record: rows, ...     one per flushed chunk of frames

An encrypted file (`record --encrypt`; see `sealed`) is the same records behind another first
line and a plaintext envelope, each record's payload sealed with AES-GCM:

    b"GAITCAM-REC 1 sealed\\n"           magic + format version, encrypted
    record: envelope                    JSON: cipher, file id, the data key wrapped by the gallery key
    record: sealed header, record: sealed rows, ...

Every record is `uint32 length, uint32 CRC32 of the payload, payload` (little-endian). A rows
payload is `uint32 n, uint32 J` then n times (float64 s), n track ids (int64), n×J×3 joints
(float32 m, NaN where missing) and n×J states (int8 JointState): one row per body per frame.

The writer flushes (and by default fsyncs) a chunk at least every `flush_seconds` of recording
time, so a crash loses at most that much. The reader keeps every complete record and stops at
the first truncated or CRC-failing one, reporting the dropped bytes instead of failing. In an
encrypted file a record whose CRC matches but which does not authenticate was tampered with,
not cut off: that is a FormatError.

A rekey rewrites only an encrypted file's envelope (`rewrap_file`), in place; `content_sha256`,
the hash the gallery keeps to tell whether a recording is still the one enrolled, leaves the
envelope out, so a rekey does not make enrolled recordings look changed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import zlib
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Literal

import numpy as np

from gaitcam.errors import FormatError
from gaitcam.identity.protect import Key, fsync_folder, private_folder
from gaitcam.recording import sealed
from gaitcam.recording.recording import (
    IMPLAUSIBLE, MAX_BINARY_BYTES, Recording, RecordingMeta, check_fps, open_regular, read_file, screen_joints,
    tracks_from_rows,
)
from gaitcam.recording.sealed import Opener, Sealer
from gaitcam.sensors.base import Frame
from gaitcam.skeleton.layouts import LAYOUTS, JointLayout
from gaitcam.skeleton.sequence import JointState

log = logging.getLogger(__name__)

SUFFIX = ".gaitrec"
MAGIC = b"GAITCAM-REC "
VERSION = 1
SEALED_VERSION = "1 sealed"  # the same records, encrypted: older readers refuse it by its version
_SEALED_START = MAGIC + f"{SEALED_VERSION}\n".encode()
_RECORD = struct.Struct("<II")  # payload length, CRC32
_ROWS = struct.Struct("<II")  # rows, joints per row
_HEAD_BYTES = 4096  # enough for the first line and an envelope record
Rewrap = Literal["rewrapped", "current", "plain", "missing", "unopenable"]


class RecordingWriter:
    """Appends frames to a new `.gaitrec` file; use as a context manager.

    Frames are buffered and written as one chunk once the buffer spans `flush_seconds` of
    recording time (frame timestamps, not wall time: a replay at any speed writes the same
    file), and on close. `fsync` makes each chunk durable against power loss, not just a crash.
    Every body needs a track id: the stream assigns them before recording. With `key` (the
    gallery's: `sealed.writing_key`) every record is encrypted.
    """

    def __init__(self, path: str | Path, meta: RecordingMeta, flush_seconds: float = 1.0, fsync: bool = True,
                 key: Key | None = None) -> None:
        if meta.layout not in LAYOUTS:
            raise FormatError(path, f"unknown joint layout {meta.layout!r}; known: {', '.join(LAYOUTS)}")
        check_fps(path, meta.fps)  # a file whose rate the reader refuses must not be written
        # Stale notes from reading a damaged source would be false of this complete file.
        extra = {k: v for k, v in meta.extra.items() if k not in ("truncated_tail_bytes", IMPLAUSIBLE)}
        header = {
            "sensor": meta.sensor, "layout": meta.layout, "fps": meta.fps, "calibration": meta.calibration,
            "subject": meta.subject, "created": meta.created, "extra": extra,
            "joints": list(LAYOUTS[meta.layout].joints),
        }
        try:
            header_json = json.dumps(header, allow_nan=False).encode()
        except (TypeError, ValueError) as e:
            raise FormatError(path, f"recording metadata is not plain JSON ({e})") from e
        self.path = Path(path)
        self.meta = meta
        self.flush_seconds = flush_seconds
        self.fsync = fsync
        self._joints = LAYOUTS[meta.layout].n_joints
        self._rows: list[tuple[float, int, np.ndarray, np.ndarray]] = []
        self._chunk_start: float | None = None
        self._last_time = -np.inf
        try:
            # O_EXCL: a recording is never overwritten (someone may be enrolled from it); 0600:
            # a recording of people walking is biometric data, for its owner only.
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._file: BinaryIO | None = os.fdopen(fd, "wb")  # closed by close()
        except FileExistsError as e:
            raise FormatError(path, "already exists; recordings are never overwritten") from e
        except OSError as e:
            raise FormatError(path, f"cannot create ({e.strerror or e})") from e
        self._sealer = None if key is None else Sealer(key)
        self._append(header_json, self._start())

    def write(self, frame: Frame) -> None:
        """Buffer one frame's bodies; write a chunk if the buffer now spans `flush_seconds`."""
        if self._file is None:
            raise FormatError(self.path, "write after close")
        if frame.layout.name != self.meta.layout:
            raise FormatError(self.path, f"frame in layout {frame.layout.name!r}, recording is {self.meta.layout!r}")
        if not frame.time > self._last_time:
            raise FormatError(self.path, f"frame time {frame.time} s does not follow {self._last_time} s")
        rows = []  # checked whole before buffering, so a bad body never leaves half a frame
        for body in frame.bodies:
            if body.track is None:
                raise FormatError(self.path, f"body without a track id at {frame.time} s "
                                  "(assign tracks before recording)")
            if not -2**63 <= body.track < 2**63:  # else flush() fails with an OverflowError, chunk lost
                raise FormatError(self.path, f"track id {body.track} at {frame.time} s does not fit in 64 bits")
            if any(body.track == row[1] for row in rows):
                raise FormatError(self.path, f"track {body.track} twice in the frame at {frame.time} s")
            joints = np.array(body.joints, dtype=np.float32)
            if joints.shape != (self._joints, 3):
                raise FormatError(self.path, f"track {body.track}: joints {joints.shape}, expected ({self._joints}, 3)")
            states = (np.full(self._joints, JointState.TRACKED, np.int8) if body.states is None
                      else np.array(body.states, dtype=np.int8))
            if states.shape != (self._joints,):
                raise FormatError(self.path, f"track {body.track}: states {states.shape}, expected ({self._joints},)")
            states[np.isnan(joints).any(axis=1)] = JointState.MISSING
            rows.append((frame.time, body.track, joints, states))
        self._rows.extend(rows)
        self._last_time = frame.time
        if self._chunk_start is None:
            self._chunk_start = frame.time
        if frame.time - self._chunk_start >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one chunk now."""
        if self._file is None:
            return
        if self._rows:
            times, tracks, joints, states = zip(*self._rows)
            self._append(b"".join((
                _ROWS.pack(len(times), self._joints),
                np.asarray(times, "<f8").tobytes(), np.asarray(tracks, "<i8").tobytes(),
                np.stack(joints).astype("<f4").tobytes(), np.stack(states).tobytes(),
            )))
            self._rows.clear()
        self._chunk_start = None

    def close(self) -> None:
        """Write what is buffered and close the file; safe to call twice."""
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    def _start(self) -> bytes:
        """What precedes the header record: the first line, and an encrypted file's envelope."""
        if self._sealer is None:
            return MAGIC + f"{VERSION}\n".encode()
        return MAGIC + f"{SEALED_VERSION}\n".encode() + _frame(self._sealer.envelope)

    def _append(self, payload: bytes, prefix: bytes = b"") -> None:
        """One record (sealed when encrypting), on disk before returning (and durable with fsync)."""
        assert self._file is not None
        if self._sealer is not None:
            payload = self._sealer.seal(payload)
        try:
            self._file.write(prefix + _frame(payload))
            self._file.flush()
            if self.fsync:
                os.fsync(self._file.fileno())
        except OSError as e:
            raise FormatError(self.path, f"cannot write ({e.strerror or e})") from e

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _frame(payload: bytes) -> bytes:
    """A record: length, CRC32, payload."""
    return _RECORD.pack(len(payload), zlib.crc32(payload)) + payload


def write_native(rec: Recording, path: str | Path, key: Key | None = None) -> None:
    """A whole recording as `.gaitrec`, encrypted with `key` if given (conversion: no fsync per
    chunk, one file write pass)."""
    with RecordingWriter(path, rec.meta, fsync=False, key=key) as writer:
        for frame in rec.frames():
            writer.write(frame)


def read_native(path: str | Path) -> Recording:
    """Every complete chunk of a `.gaitrec` file; a cut-off tail is dropped with a warning.

    The dropped byte count goes to `meta.extra["truncated_tail_bytes"]`. A bad magic, an
    unsupported version or a broken header is a FormatError: nothing could be trusted. An
    encrypted file is opened with the gallery's key (`sealed.reading_keys`); without it, or with
    another, that is one FormatError too.
    """
    path = Path(path)
    data = read_file(path, MAX_BINARY_BYTES)
    end = data.find(b"\n", 0, 32)
    if not data.startswith(MAGIC) or end < 0:
        raise FormatError(path, f"{'empty file, ' if not data else ''}not a gaitcam recording (bad magic)")
    opener, pos = _opener(path, data, data[len(MAGIC):end].decode("ascii", "replace"), end + 1)
    header, after = _next_record(data, pos)
    if header is None:
        raise FormatError(path, "truncated or corrupt header record")
    meta, layout = _parse_header(path, header if opener is None else opener.open(header, 0, pos))
    pos = after

    chunks: list[tuple[np.ndarray, ...]] = []
    while pos < len(data):
        payload, after = _next_record(data, pos)
        if payload is None:
            break
        if opener is not None:
            payload = opener.open(payload, len(chunks) + 1, pos)
        chunks.append(_parse_rows(path, payload, pos, layout.n_joints))
        pos = after
    if pos < len(data):
        meta.extra["truncated_tail_bytes"] = len(data) - pos
        log.warning("%s: dropped %d bytes of an unfinished or corrupt record at byte %d (recording cut off?); "
                    "the %d chunks before it are kept", path, len(data) - pos, pos, len(chunks))
    if chunks:
        times, tracks, joints, states = (np.concatenate(parts) for parts in zip(*chunks))
        # The writer keeps what a sensor gave, inf included: dropped per joint and counted, not fatal.
        joints, states = screen_joints(path, joints, states, meta, sensor_space=False)
        found = tracks_from_rows(path, times, tracks, joints, states, layout)
    else:
        found = {}
    return Recording(meta, found, path)


def _opener(path: Path, data: bytes, version: str, pos: int) -> tuple[Opener | None, int]:
    """How the records from `pos` on are read: as they are (None), or opened with the key that
    the encryption envelope there asks for; and where the header record starts."""
    if version == str(VERSION):
        return None, pos
    if version != SEALED_VERSION:
        raise FormatError(path, f"unsupported .gaitrec version {version!r} "
                          f"(this gaitcam reads {VERSION}, plain or {SEALED_VERSION!r})")
    envelope, after = _next_record(data, pos)
    if envelope is None:
        raise FormatError(path, "truncated or corrupt encryption header record")
    return Opener(path, envelope), after


def is_sealed(path: str | Path) -> bool:
    """Whether `path` starts as an encrypted `.gaitrec` (False for anything unreadable)."""
    try:
        with open_regular(Path(path)) as f:
            return f.read(len(_SEALED_START)) == _SEALED_START
    except (FormatError, OSError):
        return False


def _envelope_span(data: bytes) -> tuple[int, int, bytes] | None:
    """Where the envelope record of an encrypted file starts and ends in `data` (the file's first
    bytes), and its payload; None for any other file, or when that record is cut off or corrupt."""
    if not data.startswith(_SEALED_START):
        return None
    envelope, end = _next_record(data, len(_SEALED_START))
    return None if envelope is None else (len(_SEALED_START), end, envelope)


def rewrap_file(path: str | Path, old: Key, new: Key) -> Rewrap:
    """Wrap the data key of the encrypted recording `path` with `new` instead of `old`, durably.

    "missing" when there is no such file, "plain" when it is not an encrypted `.gaitrec`,
    "current" when `new` already opens it, "unopenable" when neither key does or its envelope is
    cut off or corrupt (the old key cannot help it either). The new envelope record is written
    over the old one when it is as long (it is, for any file gaitcam wrote: one small write, never
    a torn file after a kill); else the file is rewritten beside itself and renamed over it. A
    file that cannot be read or written is a FormatError: it may still need the old key.
    """
    path = Path(path)
    if not path.exists():
        return "missing"
    with open_regular(path) as f:
        head = f.read(_HEAD_BYTES)
    span = _envelope_span(head)
    if span is None:
        return "unopenable" if head.startswith(_SEALED_START) else "plain"
    start, end, envelope = span
    try:
        payload = sealed.rewrap(path, envelope, old, new)
    except FormatError:
        return "unopenable"
    if payload is None:
        return "current"
    record = _frame(payload)
    try:
        if len(record) == end - start:
            _write_over(path, start, record)
        else:
            _rewrite(path, start, end, record)
    except OSError as e:
        raise FormatError(path, f"cannot re-wrap ({e.strerror or e})") from e
    return "rewrapped"


def _write_over(path: Path, offset: int, data: bytes) -> None:
    """Write `data` over the bytes of `path` at `offset`, on disk before returning."""
    fd = os.open(path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        if os.pwrite(fd, data, offset) != len(data):
            raise OSError(f"short write at byte {offset}")
        os.fsync(fd)
    finally:
        os.close(fd)


def _rewrite(path: Path, start: int, end: int, record: bytes) -> None:
    """`path` with bytes start:end replaced by `record`: written to a new owner-only file beside
    it, then renamed over it, so a crash leaves the old file or the new one, never half of each."""
    data = read_file(path, MAX_BINARY_BYTES)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data[:start] + record + data[end:])
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_folder(path.parent)


def content_sha256(path: str | Path) -> str:
    """The sha256 by which the gallery knows a recording: of the whole file, except that an
    encrypted `.gaitrec`'s envelope is left out (a rekey rewrites it; the records after it are
    bound to the file id, and its data key, by their AES-GCM tags). OSError when unreadable."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        head = f.read(_HEAD_BYTES)
        span = _envelope_span(head)
        h.update(head if span is None else head[:span[0]] + head[span[1]:])
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _next_record(data: bytes, pos: int) -> tuple[bytes | None, int]:
    """(payload, position after it), or (None, pos) if the record there is cut off or corrupt."""
    if pos + _RECORD.size > len(data):
        return None, pos
    length, crc = _RECORD.unpack_from(data, pos)
    start = pos + _RECORD.size
    payload = data[start:start + length]
    if len(payload) != length or zlib.crc32(payload) != crc:
        return None, pos
    return payload, start + length


def _parse_header(path: Path, payload: bytes) -> tuple[RecordingMeta, JointLayout]:
    try:
        h = json.loads(payload)
        meta = RecordingMeta(
            sensor=str(h["sensor"]), layout=str(h["layout"]), fps=float(h["fps"]), calibration=h.get("calibration"),
            subject=h.get("subject"), created=h.get("created"), extra=dict(h.get("extra") or {}),
        )
        joints = tuple(h["joints"])
        # What the app reads from them is checked here, once, not met as a crash in replay.
        for name, value in (("subject", meta.subject), ("created", meta.created)):
            if not isinstance(value, (str, type(None))):
                raise TypeError(f"{name} is not text")
        _check_calibration(meta.calibration)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as e:
        raise FormatError(path, f"corrupt header record ({type(e).__name__}: {e})") from e
    except RecursionError:  # JSON nested thousands deep: only a hostile file does that
        raise FormatError(path, "corrupt header record (JSON nested too deeply)") from None
    check_fps(path, meta.fps)
    layout = LAYOUTS.get(meta.layout)
    if layout is None:
        raise FormatError(path, f"unknown joint layout {meta.layout!r}; known: {', '.join(LAYOUTS)}")
    if joints != layout.joints:
        raise FormatError(path, f"joint names differ from this gaitcam's {meta.layout!r} layout")
    return meta, layout


def _check_calibration(calibration: object) -> None:
    """TypeError/ValueError unless None or a dict whose "floor", if any, is 4 finite numbers."""
    if calibration is None:
        return
    if not isinstance(calibration, dict):
        raise TypeError("calibration is not an object")
    floor = calibration.get("floor")
    if floor is not None and not (isinstance(floor, list) and len(floor) == 4
                                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in floor)
                                  and np.isfinite(np.array(floor, dtype=np.float64)).all()):
        raise ValueError("calibration floor is not 4 finite numbers")


def _parse_rows(path: Path, payload: bytes, offset: int, n_joints: int) -> tuple[np.ndarray, ...]:
    """A chunk whose CRC matched: any inconsistency now is a writer bug, not a crash, so it fails."""
    if len(payload) < _ROWS.size:
        raise FormatError(path, f"chunk at byte {offset} is too short")
    n, j = _ROWS.unpack_from(payload)
    if j != n_joints or len(payload) != _ROWS.size + n * (8 + 8 + 12 * j + j):
        raise FormatError(path, f"chunk at byte {offset}: {n} rows of {j} joints do not fit its {len(payload)} bytes")
    arrays, pos = [], _ROWS.size
    for dtype, shape in (("<f8", (n,)), ("<i8", (n,)), ("<f4", (n, j, 3)), ("i1", (n, j))):
        count = int(np.prod(shape))
        arrays.append(np.frombuffer(payload, dtype, count, pos).reshape(shape))
        pos += count * np.dtype(dtype).itemsize
    if not np.isin(arrays[3], list(JointState)).all():
        raise FormatError(path, f"chunk at byte {offset}: a joint state is not one of {[int(s) for s in JointState]}")
    return tuple(arrays)


def new_recording_path(folder: str | Path, stem: str) -> Path:
    """A file name for a new recording in `folder`, by what and when, never an existing one.

    The folder is made owner-only (0700): the recordings in it are biometric data, and their
    names (`enroll-Ada-...`) say who was recorded and when.
    """
    from datetime import datetime

    folder = Path(folder)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_folder(folder, "recordings of people")
    base = f"{stem}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    path, n = folder / f"{base}{SUFFIX}", 1
    while path.exists():
        n += 1
        path = folder / f"{base}-{n}{SUFFIX}"
    return path
