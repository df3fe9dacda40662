"""Azure Kinect through pykinect_azure: the Sensor SDK (k4a) and its Body Tracking SDK (k4abt).

32 joints in `AZURE_KINECT` order with the tracker's body ids. Each joint's confidence level
becomes its state: NONE (out of range) MISSING, LOW (not observed, predicted) INFERRED, MEDIUM
and HIGH TRACKED. Positions come in the depth camera's millimetres and optical axes (y down)
and leave in Kinect camera space metres (`camera.optical_to_kinect`, which the Azure JSON
reader uses too). Frame times are the device's timestamps. The depth camera runs in its narrow
unbinned mode (30 fps, 0.5-3.9 m), the range people walk through in front of it.

pykinect_azure reports every SDK failure (library missing, no device, capture failed) by
printing a line to stdout and calling sys.exit(1). Here that SystemExit becomes a SourceError
while starting and a SourceLost while running (an unplugged device), and the printed line
becomes the error's text instead of landing in stdout, which carries the app's JSON lines.
"""
from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from gaitcam.sensors.base import Body, Frame, Source, SourceError, SourceLost
from gaitcam.sensors.camera import optical_to_kinect
from gaitcam.sensors.device_clock import DeviceClock
from gaitcam.skeleton.layouts import AZURE_KINECT
from gaitcam.skeleton.sequence import JointState

log = logging.getLogger(__name__)

INSTALL = ("install the Azure Kinect Sensor SDK 1.4 and Body Tracking SDK 1.1, "
           "or use realsense, webcam, video, replay or demo")
# k4abt_joint_confidence_level_t NONE, LOW, MEDIUM, HIGH -> state.
_STATE_OF_CONFIDENCE = np.array(
    [JointState.MISSING, JointState.INFERRED, JointState.TRACKED, JointState.TRACKED], dtype=np.int8)
# The pykinect_azure modules that print their errors before exiting.
_PRINTING_MODULES = ("pykinect_azure.k4a._k4a", "pykinect_azure.k4abt._k4abt",
                     "pykinect_azure.k4arecord._k4arecord", "pykinect_azure.utils.utils")


class _SdkErrors:
    """Turns pykinect_azure's print-then-exit failures into gaitcam errors.

    The printing modules' `print` is replaced by this object (a module global shadows the
    builtin), which keeps the message for the error. Swapping sys.stdout instead would also
    swallow the other threads' output for as long as a read blocks.
    """

    def __init__(self) -> None:
        self.said = ""
        for name in _PRINTING_MODULES:
            module = sys.modules.get(name)
            if module is not None:
                module.print = self

    def __call__(self, *args: object, **_: object) -> None:
        self.said = " ".join(str(a) for a in args)

    @contextmanager
    def raising(self, error: type[SourceError], doing: str, hint: str = "") -> Iterator[None]:
        """SDK calls whose failure (exit or exception) raises `error`, saying what was being done."""
        self.said = ""
        try:
            yield
        except (SystemExit, Exception) as e:
            why = self.said if isinstance(e, SystemExit) and self.said else f"{type(e).__name__}: {e}"
            raise error(f"azure: {doing} failed ({why})" + (f"; {hint}" if hint else "")) from None


def _import_sdk():
    try:
        import pykinect_azure
    except ImportError as e:
        raise SourceError(f"azure: pykinect_azure is not installed ({e}); "
                          "pip install --no-deps pykinect_azure==0.0.4") from None
    return pykinect_azure


def status() -> str | None:
    """None if the SDK libraries load and an Azure Kinect is connected, else why not."""
    try:
        k4a = _import_sdk()
        with _SdkErrors().raising(SourceError, "loading the Azure Kinect SDK", INSTALL):
            k4a.initialize_libraries(track_body=True)
            count = k4a.Device.device_get_installed_count()
    except SourceError as e:
        return str(e)
    return None if count else "azure: no Azure Kinect connected"


def body_from_skeleton(body_id: int, skeleton: np.ndarray) -> Body:
    """pykinect_azure's Body.numpy() [32, 8] (x, y, z mm, orientation w, x, y, z, confidence) -> Body."""
    states = _STATE_OF_CONFIDENCE[np.clip(skeleton[:, 7].astype(np.int64), 0, len(_STATE_OF_CONFIDENCE) - 1)]
    joints = optical_to_kinect(skeleton[:, :3] / 1000.0).astype(np.float32)
    joints[states == JointState.MISSING] = np.nan
    return Body(int(body_id), joints, states)


class AzureSource(Source):
    """An Azure Kinect by device index (`--source`, default 0)."""

    name = "azure"
    layout = AZURE_KINECT
    fps = 30.0

    def __init__(self, source: int | str = 0) -> None:
        try:
            self.device_index = int(source)
        except ValueError:
            raise SourceError(f"azure: --source must be a device index (0, 1, ...), got {source!r}") from None
        self._errors: _SdkErrors | None = None
        self._device = None
        self._tracker = None
        self._clock = DeviceClock(self.fps)
        self._index = 0

    def open(self) -> None:
        k4a = _import_sdk()
        self._errors = _SdkErrors()
        try:
            with self._errors.raising(SourceError, f"starting Azure Kinect {self.device_index}", INSTALL):
                k4a.initialize_libraries(track_body=True)
                config = k4a.Configuration()
                config.color_resolution = k4a.K4A_COLOR_RESOLUTION_OFF
                config.depth_mode = k4a.K4A_DEPTH_MODE_NFOV_UNBINNED
                config.camera_fps = k4a.K4A_FRAMES_PER_SECOND_30
                self._device = k4a.start_device(device_index=self.device_index, config=config)
                self._tracker = k4a.start_body_tracker()
        except SourceError:
            self.close()
            raise

    def read(self) -> Frame:
        if self._tracker is None or self._errors is None:
            raise SourceError("azure: read before open")
        with self._errors.raising(SourceLost, "reading the Azure Kinect", "is it still plugged in?"):
            capture = self._device.update()
            result = self._tracker.update(capture=capture)
            stamp = result.get_device_timestamp_usec() / 1e6
            skeletons = [(result.get_body_id(i), result.get_body(i).numpy()) for i in range(result.get_num_bodies())]
        frame = Frame(self._clock(stamp), [body_from_skeleton(i, s) for i, s in skeletons], self.layout,
                      index=self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        """Stop the tracker, then the device; failures of a device that is gone are only logged."""
        parts = [(self._tracker, "destroy"), (self._device, "close")]
        self._tracker = self._device = None
        for part, method in parts:
            if part is None or self._errors is None:
                continue
            try:
                with self._errors.raising(SourceError, f"{method} ({type(part).__name__})"):
                    getattr(part, method)()
            except SourceError as e:
                log.warning("%s", e)
