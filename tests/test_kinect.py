"""Kinect v2 backend through a fake pykinect2 (the real one is Windows-only): body ids, joint
states, units and axes, timestamps, the floor plane, a vanished sensor, a missing SDK."""
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from gaitcam.sensors.base import SourceError, SourceLost, source_class
from gaitcam.sensors.kinect import KinectSource, status
from gaitcam.skeleton.layouts import KINECT_V2
from gaitcam.skeleton.sequence import JointState

BODY_SOURCE = 0x20  # FrameSourceTypes_Body
NOT_TRACKED, INFERRED, TRACKED = 0, 1, 2
# A Kinect v2 TrackingId is a 64-bit number.
BIG_ID = 72057594037929000


def _joints(offset: float, states: dict[str, int]) -> list:
    """25 pykinect2-style joints, in the SDK's JointType order: joint j at (offset + j/100, 1 + j/100, 2.5)."""
    return [SimpleNamespace(Position=SimpleNamespace(x=offset + j / 100, y=1.0 + j / 100, z=2.5),
                            TrackingState=states.get(name, TRACKED))
            for j, name in enumerate(KINECT_V2.joints)]


def _body_frame(ticks: int, tracked: list, floor=(0.0, 0.0, 0.0, 0.0)):
    """KinectBodyFrameData: six body slots, untracked ones as the runtime leaves them."""
    bodies = [SimpleNamespace(is_tracked=True, tracking_id=tid, joints=_joints(off, states))
              for tid, off, states in tracked]
    bodies += [SimpleNamespace(is_tracked=False, tracking_id=-1)] * (6 - len(bodies))
    plane = SimpleNamespace(x=floor[0], y=floor[1], z=floor[2], w=floor[3])
    return SimpleNamespace(bodies=bodies, floor_clip_plane=plane, relative_time=ticks)


@pytest.fixture
def fake_sdk(monkeypatch):
    """Installs a fake pykinect2 whose runtime serves the body frames in `sdk.frames`."""
    sdk = SimpleNamespace(frames=[], runtimes=[], fail_start=None)

    class Runtime:
        def __init__(self, kinds: int) -> None:
            if sdk.fail_start:
                raise sdk.fail_start
            assert kinds == BODY_SOURCE
            self.closed = False
            sdk.runtimes.append(self)

        def has_new_body_frame(self) -> bool:
            return bool(sdk.frames)

        def get_last_body_frame(self):
            return sdk.frames.pop(0)

        def close(self) -> None:
            self.closed = True

    v2 = SimpleNamespace(FrameSourceTypes_Body=BODY_SOURCE, TrackingState_NotTracked=NOT_TRACKED,
                         TrackingState_Inferred=INFERRED, TrackingState_Tracked=TRACKED,
                         **{f"JointType_{name}": j for j, name in enumerate(KINECT_V2.joints)})
    package = types.ModuleType("pykinect2")
    package.PyKinectV2 = v2
    package.PyKinectRuntime = SimpleNamespace(PyKinectRuntime=Runtime)
    monkeypatch.setitem(sys.modules, "pykinect2", package)
    return sdk


def test_body_frames_become_frames(fake_sdk):
    fake_sdk.frames = [
        _body_frame(10_000_000, [(BIG_ID, 0.0, {"HandTipLeft": NOT_TRACKED, "FootRight": INFERRED}), (7, 1.0, {})],
                    floor=(0.01, 0.98, -0.17, 0.92)),
        _body_frame(10_333_333, [(7, 1.1, {})]),
    ]
    assert source_class("kinect") is KinectSource and status() is None
    with KinectSource() as source:
        first, second = source.read(), source.read()
    assert fake_sdk.runtimes[0].closed
    assert first.layout == KINECT_V2 and (first.index, second.index) == (0, 1)
    assert (first.time, second.time) == pytest.approx((1.0, 1.0333333))  # RelativeTime is in 100 ns ticks
    assert [b.track for b in first.bodies] == [BIG_ID, 7] and [b.track for b in second.bodies] == [7]
    body = first.bodies[0]
    head = KINECT_V2.index("Head")
    # Metres and axes pass through: they are already Kinect camera space.
    np.testing.assert_allclose(body.joints[head], [head / 100, 1 + head / 100, 2.5], rtol=1e-6)
    tip, foot = KINECT_V2.index("HandTipLeft"), KINECT_V2.index("FootRight")
    assert body.states[tip] == JointState.MISSING and np.isnan(body.joints[tip]).all()
    assert body.states[foot] == JointState.INFERRED and not np.isnan(body.joints[foot]).any()
    assert (np.delete(body.states, [tip, foot]) == JointState.TRACKED).all()
    assert body.joints.dtype == np.float32 and body.states.dtype == np.int8
    assert first.extras["floor"] == pytest.approx((0.01, 0.98, -0.17, 0.92))
    assert "floor" not in second.extras  # all zero: the SDK has not found the floor yet


def test_no_body_frames_means_the_sensor_is_lost(fake_sdk):
    with KinectSource(timeout=0.05) as source:
        with pytest.raises(SourceLost, match="kinect: no body frame for 0.05 s"):
            source.read()


def test_missing_sdk_is_one_line_naming_the_alternatives(monkeypatch):
    monkeypatch.setitem(sys.modules, "pykinect2", None)  # import fails, as on Linux
    with pytest.raises(SourceError) as err:
        KinectSource().open()
    message = str(err.value)
    assert "\n" not in message and "Windows" in message and "Kinect for Windows SDK 2.0" in message
    assert "azure, realsense, webcam, video, replay or demo" in message
    assert status() == message


def test_runtime_that_cannot_start_is_a_source_error(fake_sdk):
    fake_sdk.fail_start = OSError("kinect20.dll not found")
    with pytest.raises(SourceError, match="kinect: cannot start the Kinect v2 runtime .*kinect20.dll"):
        KinectSource().open()
    with pytest.raises(SourceError, match="kinect: --source '1' does not apply"):
        KinectSource("1")
