"""`run_gui`: the live window around a pipeline, from start to a saved screenshot.

The command line builds a session's live run as for a headless run (the same events are
published) and hands it over; the window runs it and stops it. Scripted runs (a `duration`, or a
`screenshot` to save) also close when the source ends, so they always finish; an operator's
run keeps the window open on the last frame with the source marked ended. The screenshot is
taken after the pipeline has stopped and the last frame is drawn, and beside it goes what was
drawn as JSON, for checks that cannot look at pixels.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from gaitcam.session import LiveRun
from gaitcam.stream.pipeline import Stats
from gaitcam.ui.view import LiveView


def application() -> QApplication:
    """The process's QApplication, created on first use."""
    app = QApplication.instance()
    return app if isinstance(app, QApplication) else QApplication(sys.argv[:1])


def save_screenshot(view: LiveView, path: Path) -> None:
    """The window as PNG at `path`, and what it drew at `path` + ".json"."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not view.grab().save(str(path)):
        raise OSError(f"{path}: cannot save the screenshot")
    Path(f"{path}.json").write_text(json.dumps(view.drawn(), indent=1) + "\n")


def run_gui(run: LiveRun, *, sensor_name: str, recordings_dir: Path, screenshot: Path | None = None,
            duration: float | None = None) -> Stats:
    """Open the window, run `run` until the window closes (or `duration` seconds pass, or a
    scripted run's source ends), save the screenshot if asked, and return the pipeline's Stats.

    The window installs its own `on_frame` and `recorder` on the pipeline (calling on to the
    ones it had). An error that stopped the pipeline is shown in the window and raised here
    once it has closed, so the command line still exits non-zero.
    """
    application()
    view = LiveView(run, sensor_name=sensor_name, recordings_dir=recordings_dir)
    loop = QEventLoop()
    if screenshot is not None:
        view.closed.connect(lambda: save_screenshot(view, Path(screenshot)))
    view.closed.connect(loop.quit)
    if screenshot is not None or duration is not None:
        view.ended.connect(view.close)
    if duration is not None:
        deadline = QTimer(view)  # a child: it goes with the window
        deadline.setSingleShot(True)
        deadline.timeout.connect(view.close)
        deadline.start(int(duration * 1000))
    view.show()
    view.start()
    loop.exec()
    view.deleteLater()
    if view.runner.error is not None:
        raise view.runner.error
    return view.runner.stats if view.runner.stats is not None else run.pipeline.stats
