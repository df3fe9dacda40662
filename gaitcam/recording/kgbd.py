"""KGBD (Kinect Gait Biometry Dataset): walk files, the walk list and the one probe split.

A walk file holds `Name;x;y;z` lines (metres, Kinect v1 camera space), 20 per frame in the
KGBD order of `layouts.KGBD`, a new frame at every `Head` line, no timestamps. The dataset
ships gzip-compressed (`K.txt.gz`); users who download it themselves get `K.txt`: both read.

Reading is vectorised because training reads all 822 walks (9.8 M lines): a cheap whole-file
check accepts well-formed files, and only a file that fails it is walked line by line, which
names the first bad line.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import math
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gaitcam.errors import FormatError
from gaitcam.recording.recording import (
    MAX_TEXT_BYTES, Recording, RecordingMeta, check_text, read_file, screen_joints,
)
from gaitcam.skeleton.layouts import KGBD
from gaitcam.skeleton.sequence import JointState, SkeletonSequence

_NAMES = list(KGBD.joints)
_N = len(_NAMES)
_KNOWN = set(_NAMES)
# The separators of one well-formed line: three ';' then '\n'.
_LINE_SEPS = np.frombuffer(b";;;\n", dtype=np.uint8)
_WALK_FILE = re.compile(r"(\d+)\.txt(\.gz)?")
_PERSON_DIR = re.compile(r"Person\d+")


def read_kgbd(path: str | Path, fps: float = 30.0) -> SkeletonSequence:
    """One KGBD walk in the KGBD layout; timestamps are frame index / fps (files carry none)."""
    path = Path(path)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return _read_walk(path, fps, None)


def kgbd_recording(path: str | Path) -> Recording:
    """One KGBD walk as a Recording: one track (id 0), subject = its PersonNNN folder if in one."""
    path = Path(path)
    person = path.parent.name if _PERSON_DIR.fullmatch(path.parent.name) else None
    meta = RecordingMeta(sensor="kgbd", layout=KGBD.name, fps=30.0, subject=person)
    return Recording(meta, {0: _read_walk(path, meta.fps, meta)}, path)


def _read_walk(path: Path, fps: float, meta: RecordingMeta | None) -> SkeletonSequence:
    """read_kgbd's work; implausible joints are counted into meta (when given) as they go missing."""
    raw = _read_bytes(path).rstrip()  # blank trailing lines are harmless
    if not raw:
        raise FormatError(path, "empty file: no skeleton lines", line=1)
    check_text(path, raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(path, f"not a text file ({e.reason})", line=raw.count(b"\n", 0, e.start) + 1) from e
    xyz = _parse_fast(raw, text)
    if xyz is None:
        xyz = _parse_lines(path, text)
    joints = xyz.reshape(-1, _N, 3)
    # float64 until screened: 1e300 must read as implausible, not overflow to a float32 inf.
    joints, states = screen_joints(path, joints, np.full(joints.shape[:2], JointState.TRACKED, np.int8), meta)
    return SkeletonSequence(joints, np.arange(len(joints)) / fps, KGBD, states, source=str(path))


def _read_bytes(path: Path) -> bytes:
    raw = read_file(path, MAX_TEXT_BYTES)
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":  # the gzip magic catches a renamed .gz too
        try:
            # Bounded: a small gzip bomb must not inflate into GBs before anything is checked.
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
                text = f.read(MAX_TEXT_BYTES + 1)
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise FormatError(path, f"corrupt or truncated gzip file ({e})") from e
        if len(text) > MAX_TEXT_BYTES:
            raise FormatError(path, f"decompresses to over {MAX_TEXT_BYTES // 2**20} MiB: not a walk file")
        return text
    return raw


def _parse_fast(raw: bytes, text: str) -> np.ndarray | None:
    """Coordinates [lines, 3] of a well-formed file, or None if anything is off.

    Sound on its own: every line must have exactly three ';', the names must be the KGBD
    order repeated, and every number must parse and be finite.
    """
    buf = np.frombuffer(raw, dtype=np.uint8)
    seps = buf[(buf == ord(";")) | (buf == ord("\n"))]
    n_lines = len(seps) // 4 + 1  # the last line has no '\n' after rstrip
    if (
        n_lines % _N
        or len(seps) != 4 * n_lines - 1
        or not np.array_equal(seps, np.tile(_LINE_SEPS, n_lines)[:-1])
    ):
        return None
    tokens = text.replace("\n", ";").split(";")
    if tokens[0::4] != _NAMES * (n_lines // _N):
        return None
    try:
        xyz = np.array(tokens, dtype=object).reshape(n_lines, 4)[:, 1:].astype(np.float64)
    except ValueError:
        return None
    return xyz if np.isfinite(xyz).all() else None


def _parse_lines(path: Path, text: str) -> np.ndarray:
    """The slow, line-by-line reading: raises FormatError at the first bad line."""
    lines = text.split("\n")
    values: list[float] = []
    for number, line in enumerate(lines, start=1):
        fields = line.rstrip("\r").split(";")
        if len(fields) != 4:
            raise FormatError(path, f"expected 4 fields 'Name;x;y;z', found {len(fields)}", line=number)
        # Every earlier line matched, so this line's place in its frame is known.
        pos = (number - 1) % _N
        if fields[0] != _NAMES[pos]:
            raise FormatError(path, _order_fault(fields[0], pos, number), line=number)
        for axis, field in zip("xyz", fields[1:]):
            try:
                value = float(field)
            except ValueError:
                raise FormatError(path, f"{axis} is not a number: {field!r}", line=number) from None
            if not math.isfinite(value):
                raise FormatError(path, f"{axis} is not finite: {field!r}", line=number)
            values.append(value)
    if len(lines) % _N:
        start = len(lines) - len(lines) % _N + 1
        raise FormatError(
            path, f"truncated last frame: the file ends after {len(lines) % _N} of its {_N} joints", line=start
        )
    return np.array(values, dtype=np.float64).reshape(-1, 3)


def _order_fault(name: str, pos: int, line: int) -> str:
    if name not in _KNOWN:
        return f"unknown joint name {name!r}"
    if name == _NAMES[0]:
        return f"the frame starting at line {line - pos} has only {pos} of {_N} joints"
    if pos == 0:
        return f"the frame starting at line {line - _N} has more than {_N} joints (found {name!r}, expected 'Head')"
    return f"joints out of order: expected {_NAMES[pos]!r}, found {name!r}"


@dataclass(frozen=True)
class KgbdWalk:
    """One walk file: `person` "Person001", `walk` K of `PersonNNN/K.txt[.gz]`."""

    person: str
    walk: int
    path: Path


def list_walks(root: str | Path) -> list[KgbdWalk]:
    """All walks under `root` (the folder holding `Data/`, or `Data/` itself), by (person, walk)."""
    root = Path(root)
    data = root / "Data" if (root / "Data").is_dir() else root
    if not data.is_dir():
        raise FormatError(root, "no such folder")
    walks: dict[tuple[str, int], KgbdWalk] = {}
    for person_dir in data.iterdir():
        if not (person_dir.is_dir() and _PERSON_DIR.fullmatch(person_dir.name)):
            continue
        for file in person_dir.iterdir():
            m = _WALK_FILE.fullmatch(file.name)
            if not (m and file.is_file()):
                continue
            key = (person_dir.name, int(m.group(1)))
            if key in walks:  # K.txt next to K.txt.gz: which one is meant is unclear
                raise FormatError(file, f"walk {key[1]} of {key[0]} exists twice ({walks[key].path.name})")
            walks[key] = KgbdWalk(key[0], key[1], file)
    if not walks:
        raise FormatError(data, "no KGBD walks found (expected PersonNNN/K.txt or PersonNNN/K.txt.gz)")
    return [walks[key] for key in sorted(walks)]


def probe_split(walks: list[KgbdWalk]) -> tuple[list[KgbdWalk], list[KgbdWalk]]:
    """(training/gallery walks, probe walks): per person the highest-numbered walk is the probe.

    The project's one KGBD split (spec §1.7: one walk per person held out), fixed so that no
    run can pick its probes after seeing results.
    """
    last: dict[str, int] = {}
    for w in walks:
        last[w.person] = max(last.get(w.person, w.walk), w.walk)
    train = [w for w in walks if w.walk != last[w.person]]
    probes = [w for w in walks if w.walk == last[w.person]]
    return train, probes


def split_sha256(probe_walks: list[KgbdWalk]) -> str:
    """Fingerprint of a probe set: sha256 of the sorted `PersonNNN/K.txt.gz` paths, one per line.

    Recorded with every result so that numbers from different probe sets are never compared.
    """
    names = sorted(f"{w.path.parent.name}/{w.path.name}" for w in probe_walks)
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


def layout_split(root: str | Path, out: str | Path) -> tuple[Path, Path]:
    """(gallery, probe) folders `out/{gallery,probe}/<PersonNNN>/<walk file>` of the one split.

    What `evaluate` reads: symlinks with absolute targets, so nothing is copied. Re-running
    keeps links that already point at the same walk; any other file in the way is an error.
    """
    gallery_walks, probe_walks = probe_split(list_walks(root))
    out = Path(out)
    for part, walks in (("gallery", gallery_walks), ("probe", probe_walks)):
        for w in walks:
            link = out / part / w.person / w.path.name
            target = w.path.resolve()
            if link.is_symlink() and link.resolve() == target:
                continue
            if link.exists() or link.is_symlink():
                raise FormatError(link, f"already exists and is not a link to {target}")
            try:
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(target)
            except OSError as e:
                raise FormatError(link, f"cannot create link ({e.strerror or e})") from e
    return out / "gallery", out / "probe"
