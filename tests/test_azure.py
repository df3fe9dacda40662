"""Azure Kinect backend through a fake pykinect_azure: body ids, confidence levels, millimetres
and the depth camera's axes, device timestamps, an unplugged device, a missing libk4a. The fake
fails like the real package: it prints a line to stdout and calls sys.exit(1)."""
import ctypes.util
import sys
import types
from types import SimpleNamespace

import numpy as np
import pytest

from gaitcam.sensors.azure import AzureSource, status
from gaitcam.sensors.base import SourceError, SourceLost, source_class
from gaitcam.skeleton.layouts import AZURE_KINECT
from gaitcam.skeleton.sequence import JointState

NONE, LOW, MEDIUM, HIGH = range(4)  # k4abt_joint_confidence_level_t
# pykinect_azure's own failure paths (pykinect_azure/k4a/_k4a.py), in a module of their own as
# in the real package, so its `print` is that module's.
_K4A = '''
import sys
def setup_library(path, loads):
    if not loads:
        print("Failed to load library", OSError(f"{path}: cannot open shared object file"))
        sys.exit(1)
def VERIFY(result, error):
    if result != 0:
        print(error)
        sys.exit(1)
'''


def _skeleton(offset_mm: float, confidence: dict[str, int]) -> np.ndarray:
    """Body.numpy(): [32, 8] x, y, z mm (joint j at (offset + j, -1000 + j, 2000 + j)), quaternion, confidence."""
    rows = np.zeros((32, 8))
    rows[:, 0] = offset_mm + np.arange(32)
    rows[:, 1] = -1000.0 + np.arange(32)
    rows[:, 2] = 2000.0 + np.arange(32)
    rows[:, 3] = 1.0
    rows[:, 7] = [confidence.get(name, MEDIUM) for name in AZURE_KINECT.joints]
    return rows


class _BodyFrame:
    def __init__(self, usec: int, bodies: list[tuple[int, np.ndarray]]) -> None:
        self.usec, self.bodies = usec, bodies

    def get_device_timestamp_usec(self) -> int:
        return self.usec

    def get_num_bodies(self) -> int:
        return len(self.bodies)

    def get_body_id(self, i: int) -> int:
        return self.bodies[i][0]

    def get_body(self, i: int):
        return SimpleNamespace(numpy=lambda: self.bodies[i][1])


@pytest.fixture
def fake_sdk(monkeypatch):
    """A fake pykinect_azure; `sdk.frames` are the tracker's results, `sdk.libk4a` whether the library loads."""
    sdk = SimpleNamespace(frames=[], libk4a=True, unplugged=False, devices=[], configs=[])
    k4a_module = types.ModuleType("pykinect_azure.k4a._k4a")
    exec(_K4A, k4a_module.__dict__)

    class Device:
        @staticmethod
        def device_get_installed_count() -> int:
            return 1

        def __init__(self, index: int) -> None:
            self.index, self.closed = index, False

        def update(self):
            k4a_module.VERIFY(int(sdk.unplugged), "Get capture failed!")
            return "capture"

        def close(self) -> None:
            self.closed = True

    class Tracker:
        destroyed = False

        def update(self, capture=None):
            assert capture == "capture"
            return sdk.frames.pop(0)

        def destroy(self) -> None:
            self.destroyed = True

    def initialize_libraries(track_body: bool = False) -> None:
        assert track_body
        k4a_module.setup_library("/usr/lib/x86_64-linux-gnu/libk4a.so", sdk.libk4a)

    def start_device(device_index: int = 0, config=None):
        sdk.configs.append(vars(config).copy())
        sdk.devices.append(Device(device_index))
        return sdk.devices[-1]

    package = types.ModuleType("pykinect_azure")
    package.__dict__.update(
        initialize_libraries=initialize_libraries, start_device=start_device, Device=Device,
        start_body_tracker=lambda: sdk.__dict__.setdefault("tracker", Tracker()),
        Configuration=type("Configuration", (), {}), K4A_COLOR_RESOLUTION_OFF=0, K4A_DEPTH_MODE_NFOV_UNBINNED=2,
        K4A_FRAMES_PER_SECOND_30=2,
    )
    monkeypatch.setitem(sys.modules, "pykinect_azure", package)
    monkeypatch.setitem(sys.modules, "pykinect_azure.k4a._k4a", k4a_module)
    return sdk


def test_body_frames_become_frames(fake_sdk, capsys):
    fake_sdk.frames = [
        _BodyFrame(2_000_000, [(1, _skeleton(0.0, {"HANDTIP_LEFT": NONE, "FOOT_RIGHT": LOW, "HEAD": HIGH})),
                               (4, _skeleton(500.0, {}))]),
        _BodyFrame(2_033_333, [(4, _skeleton(510.0, {}))]),
    ]
    assert source_class("azure") is AzureSource
    with AzureSource("0") as source:
        first, second = source.read(), source.read()
    assert fake_sdk.configs == [{"color_resolution": 0, "depth_mode": 2, "camera_fps": 2}]
    assert fake_sdk.devices[0].closed and fake_sdk.tracker.destroyed
    assert first.layout == AZURE_KINECT and (first.time, second.time) == pytest.approx((2.0, 2.033333))
    assert [b.track for b in first.bodies] == [1, 4] and [b.track for b in second.bodies] == [4]
    body = first.bodies[0]
    neck = AZURE_KINECT.index("NECK")
    # Millimetres -> metres; the depth camera's x right, y down -> Kinect's x left, y up.
    np.testing.assert_allclose(body.joints[neck], [-neck / 1000, (1000 - neck) / 1000, 2 + neck / 1000], rtol=1e-6)
    tip, foot, head = (AZURE_KINECT.index(j) for j in ("HANDTIP_LEFT", "FOOT_RIGHT", "HEAD"))
    assert body.states[tip] == JointState.MISSING and np.isnan(body.joints[tip]).all()
    assert body.states[foot] == JointState.INFERRED and body.states[head] == JointState.TRACKED
    assert (np.delete(body.states, [tip, foot]) == JointState.TRACKED).all()
    assert body.joints.dtype == np.float32
    assert capsys.readouterr().out == ""


def test_unplugged_device_is_lost_not_an_exit(fake_sdk, capsys):
    fake_sdk.frames = [_BodyFrame(1_000_000, [])]
    with AzureSource() as source:
        assert source.read().bodies == []
        fake_sdk.unplugged = True
        with pytest.raises(SourceLost, match=r"azure: reading the Azure Kinect failed \(Get capture failed!\)"):
            source.read()
    assert capsys.readouterr().out == ""  # the SDK's print did not reach stdout (the app's JSON lines)


def test_missing_library_is_a_one_line_source_error(fake_sdk, capsys):
    fake_sdk.libk4a = False
    with pytest.raises(SourceError) as err:
        AzureSource().open()
    message = str(err.value)
    assert "\n" not in message and "libk4a.so" in message and "Body Tracking SDK" in message
    assert "realsense, webcam, video, replay or demo" in message
    assert fake_sdk.devices == [] and capsys.readouterr().out == ""


def test_bad_device_index():
    with pytest.raises(SourceError, match="azure: --source must be a device index"):
        AzureSource("front")


@pytest.mark.skipif(ctypes.util.find_library("k4a") is not None, reason="libk4a is installed here")
def test_real_pykinect_azure_without_libk4a_says_so(capsys):
    pytest.importorskip("pykinect_azure")
    with pytest.raises(SourceError, match="azure: starting Azure Kinect 0 failed .*libk4a"):
        AzureSource().open()
    assert "libk4a" in status()
    assert capsys.readouterr().out == ""
