"""Device timestamps as frame times that keep increasing through a device's restarts."""
from __future__ import annotations


class DeviceClock:
    """Maps a device's timestamps (seconds) to frame times.

    Sensors stamp frames with their own clock, which is the right time base (no host jitter),
    but it starts again from zero when a lost device is reopened, while a run's frame times
    must keep increasing. A timestamp that does not advance shifts the clock so the frame
    lands one frame step after the last; everything after it keeps the device's spacing.
    """

    def __init__(self, fps: float) -> None:
        self.step = 1.0 / fps
        self._offset = 0.0
        self._last: float | None = None

    def __call__(self, device_seconds: float) -> float:
        t = device_seconds + self._offset
        if self._last is not None and t <= self._last:
            self._offset += self._last + self.step - t
            t = self._last + self.step
        self._last = t
        return t
