"""Enrolment from the window: encode a recorded walk into the gallery without freezing the view.

Encoding a walk takes a second or more, so it runs on its own thread; the result comes back
to the GUI thread as a Qt signal (queued across threads). The session's `enroll` does the work,
as for `python main.py enroll` and the service, with the same quality checks; it recalibrates,
hands the live matcher the new gallery and publishes the `enrolled` event.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from collections.abc import Callable

from gaitcam.errors import GaitcamError
from gaitcam.identity.enrollment import EnrollResult

log = logging.getLogger(__name__)


class Enroller(QObject):
    """`enroll(name, path, track)` in the background; `done(message)` or `failed(message)`."""

    done = Signal(str)  # what happened
    failed = Signal(str)

    def __init__(self, enroll: Callable[[str, Path, int | None], EnrollResult]) -> None:
        super().__init__()
        self._enroll = enroll  # Session.enroll
        self._threads: list[threading.Thread] = []

    @property
    def busy(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def enroll(self, name: str, path: Path, track: int | None = None) -> None:
        thread = threading.Thread(target=self._run, args=(name, path, track), name="gaitcam-enroll", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def wait(self) -> None:
        """Let running enrolments finish (before the gallery is closed)."""
        for thread in self._threads:
            thread.join()

    def _run(self, name: str, path: Path, track: int | None) -> None:
        try:
            result = self._enroll(name, path, track)
        except GaitcamError as e:
            self.failed.emit(f"enrolling {name} failed: {e}")
            return
        except Exception as e:  # on this thread nobody else would see it: the window must
            log.exception("enrolling %s from %s failed", name, path)
            self.failed.emit(f"enrolling {name} failed: {type(e).__name__}: {e}")
            return
        notes = "".join(f"; {w}" for w in result.warnings)
        self.done.emit(f"enrolled {name}: {result.seconds:.1f} s, {result.windows} windows from {path}{notes}")
