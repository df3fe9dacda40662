"""How long the view takes to draw a busy scene, and whether drawing ever costs capture a frame.

`bench_view` runs the real pipeline (shipped encoder, matcher, a demo gallery) on a
`CrowdSource`: `people` demo walkers, every one in view in every frame, paced like a camera
at `fps`. The window is shown (offscreen without a display) and redrawn at `fps` by the
benchmark itself instead of its timer, so each redraw can be timed from the moment it starts
until Qt has painted it (`processEvents`). Capture losses are reported two ways: `dropped`,
frames and windows the pipeline's queues threw away, and `source_skipped`, frames the
camera-paced source had to skip because its thread was not scheduled in time (a real
camera's driver would drop those).
"""
from __future__ import annotations

import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from gaitcam.benchmarks.scene import crowd_recording
from gaitcam.config import WEIGHTS_DIR
from gaitcam.identity.enrollment import demo_gallery
from gaitcam.session import Session, load_models
from gaitcam.sensors.base import Body, Frame, Source
from gaitcam.sensors.demo import DEMO_FLOOR
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.ui.app import application
from gaitcam.ui.view import LiveView

WARMUP = 1.0  # seconds of redraws not counted: the first paints load fonts and caches once
IMAGE_SIZE = (480, 640)  # rows, columns: a VGA camera
FOCAL = 525.0  # pixels: a Kinect v1-like colour camera at VGA
_ROUND_IDS = 1_000_000  # body ids of each new round of the crowd: new people, as each pass is


def project(joints: np.ndarray, size: tuple[int, int] = IMAGE_SIZE, focal: float = FOCAL) -> np.ndarray:
    """Camera-space joints [..., 3] (Kinect axes: x left, y up, z ahead, metres) to pixels
    [..., 2] (x right, y down) of a pinhole camera at the sensor, looking along z."""
    rows, cols = size
    z = joints[..., 2]
    return np.stack([cols / 2 - focal * joints[..., 0] / z, rows / 2 - focal * joints[..., 1] / z], axis=-1)


class CrowdSource(Source):
    """The benchmarks' crowd (`crowd_recording`: `people` walkers, everyone in every frame)
    played round and round, paced like a camera: a frame the reader comes too late for is
    skipped and counted, not queued. With `image`, frames carry a VGA image and every body's
    projected joints as image points, as the MediaPipe-based sources do.
    """

    name = "crowd"

    def __init__(self, people: int = 6, fps: float = 30.0, image: bool = False, seconds: float = 30.0) -> None:
        self.fps = float(fps)
        self.layout = CANONICAL
        self.skipped = 0  # frames skipped because the reader came late
        self._frames = list(crowd_recording(people, seconds, fps).frames())
        rows, cols = IMAGE_SIZE
        self._image = None
        if image:
            ramp = np.linspace(40, 200, cols, dtype=np.uint8)
            self._image = np.repeat(np.repeat(ramp[None, :, None], rows, axis=0), 3, axis=2)
        self._index = 0
        self._start: float | None = None

    def open(self) -> None:
        self._start = None

    def read(self) -> Frame:
        now = time.monotonic()
        if self._start is None:
            self._start = now - self._index / self.fps
        due = int((now - self._start) * self.fps)
        if due > self._index:  # late: the frames in between are gone, as from a camera
            self.skipped += due - self._index
            self._index = due
        else:
            time.sleep(max(self._start + self._index / self.fps - now, 0.0))
        rounds, k = divmod(self._index, len(self._frames))
        bodies = [Body(b.track + rounds * _ROUND_IDS, b.joints, b.states) for b in self._frames[k].bodies]
        extras: dict = {"floor": DEMO_FLOOR}
        if self._image is not None:
            extras["image_points"] = project(np.stack([b.joints for b in bodies]))
        frame = Frame(self._index / self.fps, bodies, self.layout, self._image, self._index, extras)
        self._index += 1
        return frame


def bench_view(people: int = 6, fps: float = 30.0, seconds: float = 10.0, *, image: bool = False,
               weights: Path = WEIGHTS_DIR / "sgela") -> dict:
    """Redraw the window at `fps` for `seconds` with `people` in view; draw times and losses.

    `draw_ms_*` time a whole redraw, items updated and painted, after the first `WARMUP`
    seconds; `update_ms_p50` the item updates alone. Loads the encoder and enrols the demo
    gallery first (about 2 s). Without a display it draws offscreen (Qt would abort trying to
    reach one), which paints the same pixels in the same way.
    """
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = application()
    models = load_models(weights)
    encoder, params = models.encoder, models.params
    with ExitStack() as stack:
        stack.callback(torch.set_num_threads, torch.get_num_threads())
        torch.set_num_threads(1)  # as live: one thread for batch-1 inference
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gaitcam-bench-")))
        gallery = demo_gallery(stack, encoder, params)
        source = CrowdSource(people, fps, image)
        run = stack.enter_context(Session(models, gallery, source.name, keep_events=False)).live(source)
        view = LiveView(run, sensor_name=source.name, recordings_dir=folder)
        view.show()
        view.start()
        view.timer.stop()  # the benchmark redraws, on a steady clock
        draws, shown = [], []
        step = 1.0 / fps
        start = next_draw = time.monotonic()
        while time.monotonic() - start < seconds:
            began = time.perf_counter()
            drew = view.tick()
            app.processEvents()
            if drew and time.monotonic() - start >= WARMUP:
                draws.append(time.perf_counter() - began)
                shown.append(len(view.drawn()["tracks"]))
            next_draw += step
            time.sleep(max(next_draw - time.monotonic(), 0.0))
        view.close()
        stats, error = view.runner.stats, view.runner.error
        updates = np.array(view.draw_seconds) * 1000
        view.deleteLater()
    if stats is None:
        raise RuntimeError(f"the pipeline failed: {error}")
    ms = np.array(draws) * 1000
    return {
        "people": people, "fps": fps, "seconds": seconds, "image": image, "draws": len(draws),
        "draw_ms_p50": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "draw_ms_p99": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
        "update_ms_p50": round(float(np.percentile(updates, 50)), 2) if len(updates) else None,
        "people_drawn_mean": round(float(np.mean(shown)), 2) if shown else 0.0,
        "frames": stats.frames, "expected_frames": int(seconds * fps), "dropped": stats.dropped,
        "source_skipped": source.skipped, "windows": stats.windows,
    }
