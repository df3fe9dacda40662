"""The window's X11 libraries are checked before Qt starts, and the packages to install named."""
import pytest

from gaitcam.cli import main
from gaitcam.ui import xcb


def test_missing_libraries_name_their_debian_packages():
    assert xcb.missing_packages(lambda lib: True) == []
    gone = {"libxcb-icccm.so.4", "libxcb-keysyms.so.1", "libxcb-cursor.so.0"}
    assert xcb.missing_packages(lambda lib: lib not in gone) == ["libxcb-cursor0", "libxcb-icccm4", "libxcb-keysyms1"]
    assert "sudo apt-get install libxcb-icccm4" in xcb.install_hint(["libxcb-icccm4"])


@pytest.mark.parametrize("env, xcb_used", [({"DISPLAY": ":0"}, True), ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}, True),
                                           ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, False),
                                           ({"WAYLAND_DISPLAY": "wayland-0"}, False), ({}, False)])
def test_only_an_x11_window_needs_them(monkeypatch, env, xcb_used):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert xcb.uses_xcb() is xcb_used


def test_the_app_says_what_to_install_instead_of_letting_qt_abort(monkeypatch, capsys):
    for var in ("WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(xcb, "_loads", lambda lib: lib != "libxcb-icccm.so.4")  # whatever this machine has
    assert main(["--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert "sudo apt-get install libxcb-icccm4" in err and "--headless" in err
