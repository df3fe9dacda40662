"""How fast gaitcam starts, as a user meets it: `--help`, and the demo's first frame.

Each is a fresh process (imports included), timed from its start by the parent: `--help` until
it exits, the headless demo until its first `track_started` event (the first frame with a
person has gone through the pipeline). Medians of `repeats` runs.
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

MAIN = Path(__file__).resolve().parents[2] / "main.py"


def _help_seconds() -> float:
    began = time.monotonic()
    subprocess.run([sys.executable, str(MAIN), "--help"], stdout=subprocess.DEVNULL, check=True, timeout=120)
    return time.monotonic() - began


def _first_frame_seconds() -> float:
    began = time.monotonic()
    child = subprocess.Popen([sys.executable, str(MAIN), "--headless", "--log-level", "ERROR", "--duration", "60"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in child.stdout:
            if json.loads(line)["event"] == "track_started":
                return time.monotonic() - began
        raise RuntimeError("the demo ended without a first frame")
    finally:
        child.terminate()
        child.wait(timeout=60)


def bench_startup(repeats: int = 3) -> dict:
    helps = [_help_seconds() for _ in range(repeats)]
    firsts = [_first_frame_seconds() for _ in range(repeats)]
    return {"help_seconds": round(statistics.median(helps), 3), "first_frame_seconds": round(statistics.median(firsts), 3),
            "help_runs": [round(x, 3) for x in helps], "first_frame_runs": [round(x, 3) for x in firsts]}
