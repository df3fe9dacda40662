"""One person's data written out for an access request (GDPR art. 15): `gallery export`.

The export holds decrypted templates and, optionally, copies of the recordings, so it is as
sensitive as the gallery: its folders are made owner-only (0700) and its files are created
owner-only (0600) from the start, never widened after the fact. An existing export is never
replaced silently: an old one could hold recordings the person has since had deleted. An
encrypted recording is copied decrypted: the export is for the person, who has no gallery key.
An export is written into a temporary folder beside its own and put in place when complete, so
one that fails part way leaves no decrypted copies behind (only a killed process can leave that
temporary folder, `.NAME.*.partial`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gaitcam.errors import GaitcamError
from gaitcam.recording import native

PERSON_FILE = "person.json"
RECORDINGS_DIR = "recordings"


@dataclass(frozen=True)
class Written:
    """What an export wrote: the person file, and how much it holds (never the vectors)."""

    path: Path
    templates: int
    recordings: int  # references in the gallery
    copied: int  # recording files copied beside it


def safe_name(name: str) -> str:
    """A folder name for `name`: letters, digits, '-', '_' and '.' kept, anything else '_'.

    A name that had to change gets a short hash of itself appended, so two names that
    differ only in such characters ("A/B", "A_B") never share (and overwrite) one export.
    """
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".") or "person"
    return safe if safe == name else f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def _private_dir(path: Path) -> None:
    """Create `path` and its missing parents owner-only (0700); existing ones are left as they are."""
    try:
        for folder in [*reversed(path.parents), path]:
            if not folder.exists():
                folder.mkdir(mode=0o700)
    except OSError as e:
        raise GaitcamError(f"{path}: cannot create the export folder ({e.strerror})") from None


def _create_private(path: Path) -> int:
    """A new file opened for writing, owner-only from its creation (no window readable by others)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise GaitcamError(f"{path}: cannot write the export ({e.strerror})") from None
    os.fchmod(fd, 0o600)  # whatever the umask
    return fd


def _install(staged: Path, folder: Path) -> None:
    """Put the complete export `staged` in place as `folder`: renamed whole, or, over a previous
    export (forced), its files moved in once the old ones are gone (only what an export writes:
    anything else there is not ours to delete). The person file goes last: it marks an export."""
    try:
        if not folder.exists():
            staged.rename(folder)
            return
        folder.chmod(0o700)
        if (folder / RECORDINGS_DIR).exists():
            shutil.rmtree(folder / RECORDINGS_DIR)
        (folder / PERSON_FILE).unlink()
        for name in (RECORDINGS_DIR, PERSON_FILE):
            if (staged / name).exists():
                (staged / name).rename(folder / name)
        staged.rmdir()
    except OSError as e:
        raise GaitcamError(f"{folder}: cannot put the export in place ({e.strerror})") from None


def _target(source: Path, folder: Path, taken: set[str]) -> Path:
    """Where in `folder` the copy of `source` goes: its name, numbered if already taken."""
    stem, suffix, n = source.stem, source.suffix, 1
    name = source.name
    while name in taken:
        n += 1
        name = f"{stem}-{n}{suffix}"
    taken.add(name)
    return folder / name


def _copy(source: Path, target: Path) -> str:
    """Copy `source` to `target` owner-only; the sha256 of what was copied."""
    h = hashlib.sha256()
    try:
        with source.open("rb") as src, os.fdopen(_create_private(target), "wb") as dst:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                h.update(chunk)
                dst.write(chunk)
    except OSError as e:
        raise GaitcamError(f"{source}: cannot copy the recording ({e.strerror})") from None
    return h.hexdigest()


def _copy_decrypted(source: Path, target: Path) -> str:
    """Write the encrypted recording `source` to `target` as a plain `.gaitrec` (owner-only);
    the hash the gallery keeps of `source` (`native.content_sha256`)."""
    try:
        sha = native.content_sha256(source)
    except OSError as e:
        raise GaitcamError(f"{source}: cannot copy the recording ({e.strerror})") from None
    native.write_native(native.read_native(source), target)
    return sha


def _copy_recordings(export: dict[str, Any], folder: Path) -> int:
    """Copy the recordings that still exist into `folder/recordings/`, noting in each reference
    where its copy is, whether the file is still the one enrolled (same sha256) and whether the
    copy was decrypted."""
    present = [r for r in export["recordings"] if r["exists"]]
    if not present:
        return 0
    target = folder / RECORDINGS_DIR
    _private_dir(target)
    taken: set[str] = set()
    for ref in present:
        source = Path(ref["path"])
        copy = _target(source, target, taken)
        ref["decrypted"] = native.is_sealed(source)
        sha = _copy_decrypted(source, copy) if ref["decrypted"] else _copy(source, copy)
        ref["copy"] = str(copy.relative_to(folder))
        ref["unchanged"] = sha == ref["sha256"]
    return len(present)


def write_export(export: dict[str, Any], out: str | Path, *, force: bool = False,
                 with_recordings: bool = False) -> Written:
    """Write `export` (`Gallery.export`) as `out/<safe name>/person.json`, with copies of the
    recordings that still exist under `recordings/` when `with_recordings`.

    Refuses an existing export of the person unless `force`, which replaces it whole (its old
    recording copies go too, so a replaced export never keeps what the new one lacks). Nothing
    changes until the new export is complete: a failure removes what it wrote and leaves a
    previous export as it was.
    """
    folder = Path(out).expanduser() / safe_name(export["name"])
    if folder.exists():
        if not force:
            raise GaitcamError(f"{folder}: an export of {export['name']!r} is already there; --force replaces it")
        if not (folder / PERSON_FILE).is_file():
            raise GaitcamError(f"{folder}: exists and is not a gaitcam export (no {PERSON_FILE}); not touched")
    _private_dir(folder.parent)
    try:
        staged = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))  # 0700
    except OSError as e:
        raise GaitcamError(f"{folder.parent}: cannot create the export folder ({e.strerror})") from None
    try:
        copied = _copy_recordings(export, staged) if with_recordings else 0
        with os.fdopen(_create_private(staged / PERSON_FILE), "w", encoding="utf-8") as f:
            json.dump(export, f, ensure_ascii=False, indent=1)
            f.write("\n")
        _install(staged, folder)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return Written(folder / PERSON_FILE, len(export["templates"]), len(export["recordings"]), copied)
