"""`sensor_status`: every registered sensor, usable or with the one line that says why not."""
from gaitcam.sensors import base
from gaitcam.sensors.base import SENSORS, Source, sensor_status, source_class


def test_every_sensor_is_registered_and_reports_a_status():
    assert set(SENSORS) == {"demo", "replay", "video", "webcam", "kinect", "azure", "realsense", "orbbec"}
    for name in SENSORS:
        assert issubclass(source_class(name), Source) and source_class(name).name == name
    status = sensor_status()
    assert list(status) == list(SENSORS)
    assert status["demo"] is None and status["replay"] is None  # no device, no SDK: always usable
    for name, why in status.items():
        assert why is None or (why.startswith(f"{name}: ") and "\n" not in why)


def test_a_backend_module_tells_its_own_status(monkeypatch):
    monkeypatch.setitem(base.SENSORS, "probe", "gaitcam.sensors.kinect:KinectSource")
    monkeypatch.setattr("gaitcam.sensors.kinect.status", lambda: "probe: unplugged")
    assert sensor_status()["probe"] == "probe: unplugged"
