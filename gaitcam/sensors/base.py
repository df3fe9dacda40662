"""The one small interface every skeleton source implements, and the frames it yields.

A source owns its device or file and turns whatever its SDK gives into `Frame`s: bodies in the
source's own joint layout, in metres, with per-joint tracking states and a timestamp. Everything
after it (retargeting, calibration, tracking, windows) is shared code in `gaitcam.stream`, so
a new backend is one file that fills `open`, `read` and `close`.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from gaitcam.errors import GaitcamError
from gaitcam.skeleton.layouts import JointLayout


class SourceError(GaitcamError):
    """A source cannot start: SDK or device missing, file unreadable. One line, names the device."""


class SourceLost(SourceError):
    """A running source vanished (unplugged, driver reset); the capture thread retries it."""


@dataclass
class Body:
    """One person in one frame, in the source's layout.

    `track` is the sensor's body id; None for sources without ids (the tracker assigns them).
    `joints` [J, 3] float32 metres, NaN where missing; `states` [J] int8 `JointState` values.
    """

    track: int | None
    joints: np.ndarray
    states: np.ndarray | None = None


@dataclass
class Frame:
    """Everything a source saw at one instant. `time` in seconds, increasing within a run."""

    time: float
    bodies: list[Body]
    layout: JointLayout
    image: np.ndarray | None = None  # BGR uint8, for sources with a camera image
    index: int = 0  # the source's frame counter (gaps in it are dropped frames)
    extras: dict = field(default_factory=dict)  # per-source facts, e.g. a sensor's floor plane


class Source(ABC):
    """A skeleton source. Use as a context manager; `read` until it returns None (files only).

    `is_file` sources end the run when they end; live sources never return None and raise
    `SourceLost` when the device disappears.
    """

    name: ClassVar[str]
    is_file: ClassVar[bool] = False
    layout: JointLayout
    fps: float  # nominal frame rate (frames may still arrive irregularly)

    def open(self) -> None:
        """Acquire the device or file; raise SourceError with a one-line reason if impossible."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame (blocking at the source's pace), or None when a file source ends."""

    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    def interrupt(self) -> None:
        """Called from another thread that is stopping the run: a `read` blocked in pacing
        should return soon (None is fine). Device reads time out on their own: nothing to do."""

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# name -> "module:Class"; imported only when picked, so a missing SDK breaks only its backend.
SENSORS: dict[str, str] = {
    "demo": "gaitcam.sensors.demo:DemoSource",
    "replay": "gaitcam.sensors.replay:ReplaySource",
    "video": "gaitcam.sensors.video:VideoSource",
    "webcam": "gaitcam.sensors.webcam:WebcamSource",
    "kinect": "gaitcam.sensors.kinect:KinectSource",
    "azure": "gaitcam.sensors.azure:AzureSource",
    "realsense": "gaitcam.sensors.realsense:RealSenseSource",
    "orbbec": "gaitcam.sensors.orbbec:OrbbecSource",
}


def source_class(name: str) -> type[Source]:
    """The Source class registered under `name`, or a SourceError listing the known names."""
    if name not in SENSORS:
        raise SourceError(f"unknown sensor {name!r}; known: {', '.join(SENSORS)}")
    module, cls = SENSORS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def sensor_problem(name: str) -> str | None:
    """Why sensor `name` cannot run here (one line), or None if it can.

    A backend module may define `status() -> str | None` that checks its SDK and devices
    without opening one; a backend without it (demo, replay) always runs.
    """
    if name not in SENSORS:
        return f"unknown sensor {name!r}; known: {', '.join(SENSORS)}"
    probe = getattr(importlib.import_module(SENSORS[name].split(":")[0]), "status", None)
    return probe() if probe is not None else None


def sensor_status() -> dict[str, str | None]:
    """Every sensor -> None if it can run here, else the one-line reason (`--list-sensors`)."""
    return {name: sensor_problem(name) for name in SENSORS}
