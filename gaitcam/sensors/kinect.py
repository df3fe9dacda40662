"""Kinect v2 through pykinect2 (Kinect for Windows SDK 2.0): the sensor's own body tracking.

Up to six bodies per frame with the SDK's TrackingId, 25 joints in `KINECT_V2` order with
their TrackingState (Tracked / Inferred / NotTracked -> TRACKED / INFERRED / MISSING), in
camera-space metres, already gaitcam's axes (they are Kinect's); the body frame's RelativeTime
as the timestamp; the sensor's FloorClipPlane in `extras["floor"]` once it has seen the floor.

pykinect2 drives the SDK's COM interfaces, so this runs on Windows with the SDK installed only;
elsewhere `open` says so in one line and names the sources that do run. The SDK does not
report an unplugged sensor, it just stops sending body frames (30 a second, bodies or not), so
`read` raises SourceLost after `timeout` seconds without one.
"""
from __future__ import annotations

import time

import numpy as np

from gaitcam.sensors.base import Body, Frame, Source, SourceError, SourceLost
from gaitcam.sensors.device_clock import DeviceClock
from gaitcam.skeleton.layouts import KINECT_V2
from gaitcam.skeleton.sequence import JointState

ALTERNATIVES = "azure, realsense, webcam, video, replay or demo"
_TICKS_PER_SECOND = 1e7  # RelativeTime is a TIMESPAN, in 100 ns ticks
_POLL = 0.002  # seconds between checks for a new body frame (the SDK delivers one every 33 ms)


def _import_sdk():
    """(PyKinectV2, PyKinectRuntime), or a SourceError saying what is missing and what runs instead."""
    try:
        from pykinect2 import PyKinectRuntime, PyKinectV2
    except Exception as e:  # on Linux comtypes fails with LookupError "unknown encoding: mbcs"
        raise SourceError(
            f"kinect: Kinect v2 needs Windows with the Kinect for Windows SDK 2.0 and pykinect2 "
            f"(import failed: {type(e).__name__}: {e}); here use {ALTERNATIVES}") from None
    return PyKinectV2, PyKinectRuntime


def status() -> str | None:
    """None if pykinect2 loads (whether a sensor is plugged in shows only once it runs)."""
    try:
        _import_sdk()
    except SourceError as e:
        return str(e)
    return None


class KinectSource(Source):
    """The Kinect v2 sensor plugged in (the SDK drives one at a time, so there is no `--source`)."""

    name = "kinect"
    layout = KINECT_V2
    fps = 30.0

    def __init__(self, source: str | None = None, *, timeout: float = 2.0) -> None:
        if source is not None:
            raise SourceError(f"kinect: --source {source!r} does not apply: the Kinect v2 SDK drives the one "
                              "sensor plugged in")
        self.timeout = timeout
        self._runtime = None
        self._sdk = None
        self._clock = DeviceClock(self.fps)
        self._index = 0

    def open(self) -> None:
        v2, runtime = _import_sdk()
        try:
            self._runtime = runtime.PyKinectRuntime(v2.FrameSourceTypes_Body)
        except Exception as e:  # COMError / OSError: kinect20.dll missing, KinectService not running
            raise SourceError(f"kinect: cannot start the Kinect v2 runtime ({type(e).__name__}: {e}); "
                              "is the Kinect for Windows SDK 2.0 installed?") from None
        self._sdk = v2

    def read(self) -> Frame:
        if self._runtime is None:
            raise SourceError("kinect: read before open")
        deadline = time.monotonic() + self.timeout
        while not self._runtime.has_new_body_frame():
            if time.monotonic() > deadline:
                raise SourceLost(f"kinect: no body frame for {self.timeout:g} s (sensor unplugged, or the "
                                 "Kinect service stopped)")
            time.sleep(_POLL)
        data = self._runtime.get_last_body_frame()
        bodies = [self._body(b) for b in data.bodies if b is not None and b.is_tracked]
        plane = data.floor_clip_plane
        floor = (plane.x, plane.y, plane.z, plane.w)
        extras = {"floor": floor} if any(floor[:3]) else {}  # all zero until the SDK finds the floor
        t = self._clock(data.relative_time / _TICKS_PER_SECOND)
        frame = Frame(t, bodies, self.layout, index=self._index, extras=extras)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    def _body(self, body) -> Body:
        """One tracked pykinect2 KinectBody -> Body in KINECT_V2 order."""
        v2 = self._sdk
        state_of = {v2.TrackingState_Tracked: JointState.TRACKED, v2.TrackingState_Inferred: JointState.INFERRED}
        joints = np.full((self.layout.n_joints, 3), np.nan, dtype=np.float32)
        states = np.full(self.layout.n_joints, JointState.MISSING, dtype=np.int8)
        for j, name in enumerate(self.layout.joints):  # by the SDK's JointType names, not by position
            joint = body.joints[getattr(v2, f"JointType_{name}")]
            states[j] = state_of.get(joint.TrackingState, JointState.MISSING)
            if states[j] != JointState.MISSING:
                joints[j] = (joint.Position.x, joint.Position.y, joint.Position.z)
        return Body(int(body.tracking_id), joints, states)
