"""Device timestamps as frame times that keep increasing when a device restarts its clock."""
import pytest

from gaitcam.sensors.device_clock import DeviceClock


def test_device_spacing_is_kept_and_a_restart_carries_on_one_step_later():
    clock = DeviceClock(fps=10.0)
    assert [clock(t) for t in (5.0, 5.1, 5.3)] == pytest.approx([5.0, 5.1, 5.3])  # a dropped frame stays a gap
    # The device was reopened: its clock starts again near zero.
    assert [clock(t) for t in (0.02, 0.12)] == pytest.approx([5.4, 5.5])
    assert clock(0.12) == pytest.approx(5.6)  # a repeated stamp still moves on
