"""The encoder worker: windows of every track in, AGEs out, in batches, on its own thread.

The network is the slowest stage and gains most from batching (one call for many windows,
on CUDA when the encoder picked it), so windows wait in one bounded queue and the worker
takes whatever has gathered at each turn. A frame's windows are queued as one item, so the
worker never starts on part of a frame and calls the encoder once more for the rest. A full
queue drops the new windows and counts them: capture and tracking never wait for the model.
Several sources in one process share one worker (`client`: each gets its own results and
counts), so the windows of every camera go through the network in the same batches.
"""
from __future__ import annotations

import logging
import math
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import numpy as np

from gaitcam.skeleton.windows import Window

log = logging.getLogger(__name__)


class WindowEncoder(Protocol):
    """What the worker needs of `gaitcam.model.encoder.GaitEncoder`."""

    def encode(self, windows: np.ndarray, level: str = ..., mirror: bool = ...) -> np.ndarray: ...


@dataclass(frozen=True)
class EncodedWindow:
    track: int
    time: float  # time of the window's last frame
    window: Window
    age: np.ndarray  # window-level AGEs of the window and of its mirror image [2, f * 768]
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


class EncoderLoad(NamedTuple):
    """The encoder's counters so far, every source's."""

    busy: float  # seconds spent encoding, the batch being encoded included
    offered: int  # windows handed to the worker: queued, or refused by a full queue
    done: int  # windows finished with (`EncodeStats.done`)
    calls: int = 0  # encoder calls finished (batches), failed ones included
    # A call's seconds as fixed + per_window x windows (`CallCost`; None until enough batch
    # sizes have been seen): what a larger batch would cost
    call_cost: tuple[float, float] | None = None


class CallCost:
    """A call's cost against its batch size, learned from the calls made: per batch size the
    median of its last calls, and through the sizes a straight line (least squares, weighted by
    calls). At small batches most of a call is fixed (the call itself, and the weights read once
    for the whole batch), so a batch of 3 costs far less than 3 batches of 1: the stride control
    asks this line, not the windows alone, what a narrower stride's larger batches would cost."""

    RECENT = 15  # calls kept per size: their median is the size's cost (a stalled call does not move it)
    MIN_CALLS = 5  # calls of a size before it counts
    STALE = 900  # calls (30 s at one a frame) after which a size not called again no longer counts
    MIN_SPAN = 2  # windows between the smallest and largest size counted: two neighbours' noise is no slope

    def __init__(self) -> None:
        self._calls = 0
        self._sizes: dict[int, tuple[deque[float], int]] = {}  # windows -> (last seconds, call number)

    def add(self, windows: int, seconds: float) -> None:
        self._calls += 1
        times = self._sizes[windows][0] if windows in self._sizes else deque(maxlen=self.RECENT)
        times.append(seconds)
        self._sizes[windows] = (times, self._calls)

    def line(self) -> tuple[float, float] | None:
        """(fixed, per_window) seconds, both at least 0; None before sizes MIN_SPAN apart have
        MIN_CALLS recent calls each."""
        seen = [(n, statistics.median(times), len(times)) for n, (times, last) in self._sizes.items()
                if len(times) >= self.MIN_CALLS and self._calls - last < self.STALE]
        if len(seen) < 2 or max(n for n, _, _ in seen) - min(n for n, _, _ in seen) < self.MIN_SPAN:
            return None
        total = sum(w for _, _, w in seen)
        n_mean = sum(n * w for n, _, w in seen) / total
        t_mean = sum(t * w for _, t, w in seen) / total
        slope = max(sum(w * (n - n_mean) * (t - t_mean) for n, t, w in seen)
                    / sum(w * (n - n_mean) ** 2 for n, _, w in seen), 0.0)
        return max(t_mean - slope * n_mean, 0.0), slope


class _Progress(NamedTuple):
    """The worker's counters as one value, replaced whole so that `load` reads a consistent set
    from another thread."""

    seconds: float = 0.0  # spent on finished batches
    done: int = 0
    began: float | None = None  # perf_counter when the batch now being encoded began; None between batches
    calls: int = 0
    cost: tuple[float, float] | None = None  # `CallCost.line` after the last call


_STOP = object()


class EncodeClient:
    """One source's share of an `EncodeWorker`: its windows' results go to its `on_result`, and
    `stats` counts its windows only."""

    def __init__(self, worker: EncodeWorker, on_result: Callable[[list[EncodedWindow]], None]) -> None:
        self.worker, self.on_result = worker, on_result
        self.stats = EncodeStats()

    def load(self) -> EncoderLoad:
        """The shared encoder's load so far, every client's."""
        return self.worker.load()

    @property
    def queued(self) -> int:
        """Submissions waiting for the encoder, every client's: how far behind it is."""
        return self.worker.queued

    def submit(self, windows: list[tuple[int, float, Window]], captured: float = math.nan) -> bool:
        """Queue (track, time, window) triples to be encoded in the same batch, e.g. all windows
        a frame completed, read at monotonic time `captured`; False (and all counted as dropped)
        when the queue is full."""
        return self.worker._put(self, windows, captured)

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every window this client submitted is finished with (the worker runs on
        for the others); False if `timeout` passed first or the worker stopped."""
        with self.worker._finished:
            return self.worker._finished.wait_for(
                lambda: self.stats.done >= self.stats.submitted or not self.worker._thread.is_alive(), timeout)


class EncodeWorker:
    """Use as a context manager, or `start` and `close`; `close` encodes what is still queued.

    Built with `on_result`, it is one source's worker (`submit`, `stats`); `client` adds more
    sources to it, each with its own results and counts (`stats` is then the total)."""

    def __init__(
        self,
        encoder: WindowEncoder,
        on_result: Callable[[list[EncodedWindow]], None] | None = None,
        max_batch: int = 256,
        queue_size: int = 1024,
    ) -> None:
        """`queue_size` counts submissions (a frame's windows each), not windows."""
        self.encoder = encoder
        self.max_batch = max_batch
        self.stats = EncodeStats()
        self._own = None if on_result is None else EncodeClient(self, on_result)
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._finished = threading.Condition()  # notified after every batch: `EncodeClient.drain`
        self._thread = threading.Thread(target=self._run, name="gaitcam-encode", daemon=True)
        self._cost = CallCost()
        self._progress = _Progress()

    def client(self, on_result: Callable[[list[EncodedWindow]], None]) -> EncodeClient:
        """Another source on this worker."""
        return EncodeClient(self, on_result)

    def start(self) -> None:
        self._thread.start()

    def load(self) -> EncoderLoad:
        """How much work came in and how much was done so far (the stride control reads from it
        how busy the encoder was in each interval, and how busy keeping up would have made it)."""
        p = self._progress
        busy = p.seconds + (0.0 if p.began is None else time.perf_counter() - p.began)
        return EncoderLoad(busy, self.stats.submitted + self.stats.dropped, p.done, p.calls, p.cost)

    @property
    def queued(self) -> int:
        """Submissions (frames' windows) waiting for the encoder: how far behind it is."""
        return self._queue.qsize()

    def submit(self, windows: list[tuple[int, float, Window]], captured: float = math.nan) -> bool:
        """`EncodeClient.submit` for the worker's own source (the one `on_result` names)."""
        if self._own is None:
            raise TypeError("this worker serves clients only: submit through `client(...)`")
        return self._put(self._own, windows, captured)

    def _put(self, client: EncodeClient, windows: list[tuple[int, float, Window]], captured: float) -> bool:
        if not windows:
            return True
        try:
            self._queue.put_nowait([(client, k, t, w, captured) for k, t, w in windows])
        except queue.Full:
            client.stats.dropped += len(windows)
            self.stats.dropped += len(windows)
            return False
        client.stats.submitted += len(windows)
        self.stats.submitted += len(windows)
        return True

    def close(self) -> None:
        """Encode everything queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        with self._finished:
            self._finished.notify_all()

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

    def _encode(self, batch: list[tuple[EncodeClient, int, float, Window, float]]) -> None:
        """One call of the network for the whole batch, then each client's share to its consumer.
        A failed call loses the batch (counted, logged); a failing consumer loses its own share."""
        windows = np.stack([w.joints for _, _, _, w, _ in batch])
        try:
            began = time.perf_counter()
            self._progress = self._progress._replace(seconds=self.stats.seconds, done=self.stats.done, began=began)
            ages = self.encoder.encode(windows, level="window", mirror=True)  # as enrolment encodes
            seconds = time.perf_counter() - began
        except Exception:  # one bad batch must not stop the live loop
            log.exception("encoding %d windows failed", len(batch))
            ages, seconds = None, 0.0
        shares: dict[int, tuple[EncodeClient, list[int]]] = {}  # each client's rows of the batch
        for i, (client, *_) in enumerate(batch):
            shares.setdefault(id(client), (client, []))[1].append(i)
        for client, rows in shares.values():
            n, ok = len(rows), ages is not None
            if ok:
                try:
                    client.on_result([EncodedWindow(*batch[i][1:4], ages[i], batch[i][4]) for i in rows])
                except Exception:  # never the other sources' windows
                    log.exception("handing on %d encoded windows failed", n)
                    ok = False
            for stats in (client.stats, self.stats):
                if ok:
                    stats.encoded += n
                else:
                    stats.errors += n
            if ok:
                client.stats.batches += 1
                client.stats.seconds += seconds
        if ages is not None:
            self.stats.batches += 1
            self.stats.seconds += seconds
            self._cost.add(len(batch), seconds)
        self._progress = _Progress(self.stats.seconds, self.stats.done, None, self._progress.calls + 1,
                                   self._cost.line())
        with self._finished:
            self._finished.notify_all()
