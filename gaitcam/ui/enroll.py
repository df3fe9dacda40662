"""Enrolment from the window: encode a recorded walk into the gallery without freezing the view.

Encoding a walk takes a second or more, so it runs on its own thread; the result comes back
to the GUI thread as a Qt signal (queued across threads), carrying the gallery's new index
for the live matcher. The same `enroll_recording` as `python main.py enroll` does the work,
with its quality checks, so a name given in the window means the same as one given there.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from gaitcam.identity.enrollment import enroll_recording, load_index
from gaitcam.errors import GaitcamError
from gaitcam.identity.gallery import Gallery
from gaitcam.identity.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder

log = logging.getLogger(__name__)


class Enroller(QObject):
    """`enroll(name, path, track)` in the background; `done(message, index)` or `failed(message)`."""

    done = Signal(str, object)  # what happened, the gallery's new GalleryIndex
    failed = Signal(str)

    def __init__(self, gallery: Gallery, encoder: GaitEncoder, params: MatcherParams) -> None:
        super().__init__()
        self.gallery, self.encoder, self.params = gallery, encoder, params
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
            result = enroll_recording(self.gallery, self.encoder, self.params, name, path, track)
            index = load_index(self.gallery, self.params)
        except GaitcamError as e:
            self.failed.emit(f"enrolling {name} failed: {e}")
            return
        except Exception as e:  # on this thread nobody else would see it: the window must
            log.exception("enrolling %s from %s failed", name, path)
            self.failed.emit(f"enrolling {name} failed: {type(e).__name__}: {e}")
            return
        notes = "".join(f"; {w}" for w in result.warnings)
        self.done.emit(f"enrolled {name}: {result.seconds:.1f} s, {result.windows} windows from {path}{notes}", index)
