"""Errors that reach the user as one line, naming the file or device at fault."""
from __future__ import annotations

import reprlib

MAX_MESSAGE = 300
"""Characters of a FormatError's message (after the file name): a reader that quotes what it
found must never turn a huge or hostile file into a huge error line."""


class _Excerpt(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        # repr() of an int over 4300 digits raises ValueError; a long one says only its size.
        return repr(x) if x.bit_length() <= 128 else f"<{x.bit_length()}-bit integer>"


_EXCERPT = _Excerpt()
_EXCERPT.maxstring = _EXCERPT.maxother = 60
_EXCERPT.maxlevel = 2  # a deeply nested value is shown as [[...]], never walked (RecursionError)


class GaitcamError(Exception):
    """Base class: the CLI prints these as a one-line message and exits non-zero."""


class FormatError(GaitcamError, ValueError):
    """Malformed or unsupported input; the message names the file (and line when known).

    The message is one line of at most MAX_MESSAGE characters (clipped with "..."), whatever
    the caller put in it.
    """

    def __init__(self, path: object, message: str, line: int | None = None) -> None:
        message = " ".join(str(message).splitlines())
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE - 3] + "..."
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


def excerpt(value: object) -> str:
    """A short repr of something found in a file, for an error message (bounded length and depth)."""
    return _EXCERPT.repr(value)
