"""The Qt live view: skeletons, names and scores of everyone in view, and the operator's controls.

`run_gui` opens the window and runs a pipeline behind it; `bench_view` measures its drawing.
Both are imported on first use, so `gaitcam.ui.transport` (the replay with transport
controls) can be built without loading Qt. pyqtgraph must bind to PySide6 (the pinned Qt;
another binding in the environment would otherwise win), so the choice is made here, before
any submodule imports pyqtgraph.
"""
from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")

__all__ = ["bench_view", "run_gui"]


def __getattr__(name: str) -> Any:
    if name == "run_gui":
        from gaitcam.ui.app import run_gui
        return run_gui
    if name == "bench_view":
        from gaitcam.ui.bench import bench_view
        return bench_view
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
