"""Reading any supported recording file, picked by its content and name."""
from __future__ import annotations

from pathlib import Path

from gaitcam.errors import FormatError
from gaitcam.recording.kgbd import read_kgbd
from gaitcam.skeleton.sequence import SkeletonSequence

SUFFIXES = (".txt", ".txt.gz")


def is_recording(path: Path) -> bool:
    return path.is_file() and path.name.endswith(SUFFIXES)


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


def read_recording(path: str | Path) -> list[SkeletonSequence]:
    """All people's sequences in one recording file (KGBD text holds one walk)."""
    path = Path(path)
    if path.name.endswith(SUFFIXES):
        return [read_kgbd(path)]
    raise FormatError(path, f"unknown recording format (supported: {', '.join(SUFFIXES)} KGBD text)")
