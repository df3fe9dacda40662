"""The pipeline on a worker thread, so the GUI thread only ever draws and answers the user."""
from __future__ import annotations

import logging
import threading

from gaitcam.session import LiveRun
from gaitcam.stream.pipeline import Stats

log = logging.getLogger(__name__)


class PipelineThread:
    """Runs a session's live run once (its events published as in a headless run); keeps its
    Stats, or the exception that ended it for the window to show (and `run_gui` to raise after
    the window has closed)."""

    def __init__(self, run: LiveRun) -> None:
        self.live = run
        self.stats: Stats | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="gaitcam-pipeline", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Ask the pipeline to end and wait for it (it finishes the windows already queued)."""
        self.live.stop()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        try:
            self.stats = self.live.run()
        except Exception as e:  # the window shows it; run_gui raises it once the window is closed
            log.error("the pipeline stopped: %s", e)
            self.error = e
