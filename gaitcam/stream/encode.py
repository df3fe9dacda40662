"""The encoder worker: windows of every track in, AGEs out, in batches, on its own thread.

The network is the slowest stage and gains most from batching (one call for many windows,
on CUDA when the encoder picked it), so windows wait in one bounded queue and the worker
takes whatever has gathered at each turn. A frame's windows are queued as one item, so the
worker never starts on part of a frame and calls the encoder once more for the rest. A full
queue drops the new windows and counts them: capture and tracking never wait for the model.
"""
from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gaitcam.skeleton.windows import Window

log = logging.getLogger(__name__)


class WindowEncoder(Protocol):
    """What the worker needs of `gaitcam.model.encoder.GaitEncoder`."""

    def encode(self, windows: np.ndarray, level: str = ..., mirror_mean: bool = ...) -> np.ndarray: ...


@dataclass(frozen=True)
class EncodedWindow:
    track: int
    time: float  # time of the window's last frame
    window: Window
    age: np.ndarray  # window-level AGE [f * 768]
    captured: float = math.nan  # monotonic time its newest frame was read: the lag's start


@dataclass
class EncodeStats:
    submitted: int = 0
    encoded: int = 0
    batches: int = 0
    dropped: int = 0  # refused: queue full
    errors: int = 0  # windows lost to a failed encode or result callback
    seconds: float = 0.0  # spent in the encoder, over all batches (latency = seconds / batches)

    @property
    def done(self) -> int:
        """Windows taken from the queue and finished with (results delivered, or counted lost)."""
        return self.encoded + self.errors


_STOP = object()


class EncodeWorker:
    """Use as a context manager, or `start` and `close`; `close` encodes what is still queued."""

    def __init__(
        self,
        encoder: WindowEncoder,
        on_result: Callable[[list[EncodedWindow]], None],
        max_batch: int = 256,
        queue_size: int = 1024,
    ) -> None:
        """`queue_size` counts submissions (a frame's windows each), not windows."""
        self.encoder = encoder
        self.on_result = on_result
        self.max_batch = max_batch
        self.stats = EncodeStats()
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._run, name="gaitcam-encode", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def queued(self) -> int:
        """Submissions (frames' windows) waiting for the encoder: how far behind it is."""
        return self._queue.qsize()

    def submit(self, windows: list[tuple[int, float, Window]], captured: float = math.nan) -> bool:
        """Queue (track, time, window) triples to be encoded in the same batch, e.g. all windows
        a frame completed, read at monotonic time `captured`; False (and all counted as dropped)
        when the queue is full."""
        if not windows:
            return True
        try:
            self._queue.put_nowait([(k, t, w, captured) for k, t, w in windows])
        except queue.Full:
            self.stats.dropped += len(windows)
            return False
        self.stats.submitted += len(windows)
        return True

    def close(self) -> None:
        """Encode everything queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def __enter__(self) -> EncodeWorker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        held = None  # a submission that did not fit the last batch: the next one starts with it
        while True:
            item = self._queue.get() if held is None else held
            if item is _STOP:
                return
            batch, held = list(item), None
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP or len(batch) + len(item) > self.max_batch:
                    held = item  # never split a submission (a frame) across two calls
                    break
                batch.extend(item)
            self._encode(batch)

    def _encode(self, batch: list[tuple[int, float, Window, float]]) -> None:
        windows = np.stack([w.joints for _, _, w, _ in batch])
        try:
            began = time.perf_counter()
            ages = self.encoder.encode(windows, level="window", mirror_mean=True)  # as enrolment encodes
            self.stats.seconds += time.perf_counter() - began
            self.on_result([EncodedWindow(k, t, w, a, c) for (k, t, w, c), a in zip(batch, ages)])
        except Exception:  # one bad batch must not stop the live loop; it is counted and logged
            self.stats.errors += len(batch)
            log.exception("encoding %d windows failed", len(batch))
            return
        self.stats.batches += 1
        self.stats.encoded += len(batch)
