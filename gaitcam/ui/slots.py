"""What crosses from worker threads to the GUI thread: the newest value only, never a queue.

The pipeline thread must never wait for the screen, and the screen only ever wants the
latest state, so each producer overwrites one slot under a lock (a few hundred nanoseconds)
and the GUI timer reads it when it redraws. The version counter tells the reader whether
anything new came, and how many values came between two reads (the frame rate).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestValue(Generic[T]):
    """A thread-safe slot holding the newest value and how many values were ever put."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: T | None = None
        self._version = 0

    def put(self, value: T) -> None:
        with self._lock:
            self._value = value
            self._version += 1

    def get(self) -> tuple[int, T | None]:
        """(how many values were put so far, the newest or None)."""
        with self._lock:
            return self._version, self._value


class WarningsToWindow(logging.Handler):
    """Keeps the newest warning or error logged by any thread, for the window's error line.

    Sensor loss, failed reopens and skipped bodies are logged by the capture and pipeline
    threads; an operator watching the window, not the terminal, must see them too.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.latest: LatestValue[str] = LatestValue()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
            self.latest.put(f"{stamp} {record.getMessage()}")
        except Exception:  # a logging handler must never raise into the thread that logged
            self.handleError(record)
