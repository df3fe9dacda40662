"""Every recording format in one place: read any file (by content, then name), write by suffix.

Content decides first, so a renamed or suffix-less file still reads as what it is; the suffix
only decides when the content is not recognisable (empty, cut off), so the error comes from
the format the file claims to be.
"""
from __future__ import annotations

import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gaitcam.errors import FormatError
from gaitcam.recording import azure_json, csv_format, native, ntu
from gaitcam.recording.kgbd import kgbd_recording
from gaitcam.recording.recording import Recording, open_regular
from gaitcam.recording.sealed import writing_key

Reader = Callable[[Path], Recording]
Writer = Callable[[Recording, Path], None]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Format:
    """One file format: what it is called, its file name endings, how to read and write it."""

    name: str
    suffixes: tuple[str, ...]
    read: Reader
    write: Writer | None = None


NATIVE = Format("gaitcam recording", (native.SUFFIX,), native.read_native, native.write_native)
NTU = Format("NTU RGB+D skeleton", (ntu.SUFFIX,), ntu.read_ntu, ntu.write_ntu)
AZURE_JSON = Format("Azure Kinect body-tracking JSON", (azure_json.SUFFIX,), azure_json.read_azure_json,
                    azure_json.write_azure_json)
CSV = Format("gaitcam CSV", (csv_format.SUFFIX,), csv_format.read_csv, csv_format.write_csv)
KGBD_TEXT = Format("KGBD text", (".txt", ".txt.gz"), kgbd_recording)
FORMATS: tuple[Format, ...] = (NATIVE, NTU, AZURE_JSON, CSV, KGBD_TEXT)

SUPPORTED = "; ".join(f"{f.name} ({', '.join(f.suffixes)})" for f in FORMATS)
"""The readable formats, for messages and the README."""
WRITABLE = "; ".join(f"{f.name} ({', '.join(f.suffixes)})" for f in FORMATS if f.write)

_SNIFF_BYTES = 4096
_KGBD_LINE = re.compile(rb"[A-Za-z][A-Za-z-]*;")
_COUNT_LINE = re.compile(rb"\s*\d+\s*")


def detect(path: str | Path) -> Format:
    """The format of a file: by its first bytes, else by its name; FormatError if neither."""
    path = Path(path)
    with open_regular(path) as f:  # a FIFO or device is refused here, never waited on
        try:
            head = f.read(_SNIFF_BYTES)
        except OSError as e:
            raise FormatError(path, f"cannot read file ({e.strerror or e})") from e
    found = _by_content(path, head)
    if found is None:
        found = next((f for f in FORMATS if path.name.endswith(f.suffixes)), None)
    if found is None:
        raise FormatError(path, f"unknown recording format (supported: {SUPPORTED})")
    return found


def _by_content(path: Path, head: bytes) -> Format | None:
    if head.startswith(b"\x1f\x8b"):
        # Only KGBD ships gzip-compressed; look inside to say so if it is something else.
        try:
            inner = zlib.decompressobj(wbits=31).decompress(head, _SNIFF_BYTES)  # a sniff, not a gzip bomb
        except zlib.error as e:
            raise FormatError(path, f"corrupt gzip file ({e})") from e
        if _by_content(path, inner) is KGBD_TEXT or not inner:
            return KGBD_TEXT  # an empty or cut-off start: let the KGBD reader say what is wrong
        raise FormatError(path, "gzip-compressed, but not KGBD text: decompress it first")
    if head.startswith(native.MAGIC):
        return NATIVE
    text = head.lstrip(b"\xef\xbb\xbf")
    first = text.split(b"\n", 1)[0].rstrip(b"\r")
    if text.lstrip().startswith(b"{"):
        return AZURE_JSON
    if first.startswith(csv_format.MAGIC.encode()):
        return CSV
    if _COUNT_LINE.fullmatch(first):
        return NTU
    if _KGBD_LINE.match(first):
        return KGBD_TEXT
    return None


def read_recording(path: str | Path) -> Recording:
    """Any supported recording file, whatever its name."""
    path = Path(path)
    return detect(path).read(path)


def _writer(path: Path) -> Writer:
    fmt = next((f for f in FORMATS if f.write and path.name.endswith(f.suffixes)), None)
    if fmt is None or fmt.write is None:
        raise FormatError(path, f"cannot write this kind of file; writable: {WRITABLE}")
    return fmt.write


def write_recording(rec: Recording, path: str | Path) -> None:
    """A recording in the format its file name asks for (.gaitrec, .skeleton, .json, .csv)."""
    path = Path(path)
    _writer(path)(rec, path)


def convert(src: str | Path, dst: str | Path) -> Recording:
    """Read src in any format and write it as dst's suffix says; returns what was read.

    A `.gaitrec` is written encrypted when src is (or the config's `encrypt_recordings` says
    so); any other format cannot be, so decrypting that way is said in the log."""
    dst = Path(dst)
    write = _writer(dst)  # fail on an unwritable name before reading anything
    if dst.exists():
        raise FormatError(dst, "already exists; remove it first (recordings are never overwritten)")
    rec = read_recording(src)
    encrypted = native.is_sealed(src)
    if write is native.write_native:  # stays encrypted, or becomes so if the config encrypts recordings
        native.write_native(rec, dst, writing_key(encrypted))
        return rec
    if encrypted:
        log.warning("%s: written unencrypted from the encrypted %s (only .gaitrec files are encrypted)", dst, src)
    write(rec, dst)
    return rec


def is_recording(path: Path) -> bool:
    return path.is_file() and path.name.endswith(tuple(s for f in FORMATS for s in f.suffixes))


def find_recordings(paths: list[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for recording files, in sorted order."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(q for q in p.rglob("*") if is_recording(q)))
        elif p.is_file():
            found.append(p)
        else:
            raise FormatError(p, "no such file or folder")
    return found
