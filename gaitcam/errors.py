"""Errors that reach the user as one line, naming the file or device at fault."""


class GaitcamError(Exception):
    """Base class: the CLI prints these as a one-line message and exits non-zero."""


class FormatError(GaitcamError, ValueError):
    """Malformed or unsupported input; the message names the file (and line when known)."""

    def __init__(self, path: object, message: str, line: int | None = None) -> None:
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
