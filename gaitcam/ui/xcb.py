"""Before Qt opens a window on X11: are the xcb libraries its platform plugin loads there?

Without them Qt aborts the process with its own message ("Could not load the Qt platform plugin
xcb"), which does not say what to install. Checked here first, by loading each library, so the
app can name the Debian/Ubuntu packages instead.
"""
from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

# The libraries PySide6's xcb platform plugin (libqxcb, libQt6XcbQpa) links, and their packages.
XCB_LIBRARIES = {
    "libxcb.so.1": "libxcb1", "libX11-xcb.so.1": "libx11-xcb1", "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4", "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0", "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0", "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-randr.so.0": "libxcb-randr0", "libxcb-xkb.so.1": "libxcb-xkb1", "libxcb-util.so.1": "libxcb-util1",
    "libxcb-sync.so.1": "libxcb-sync1", "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-shm.so.0": "libxcb-shm0",
}


def _loads(name: str) -> bool:
    try:
        ctypes.CDLL(name)
        return True
    except OSError:
        return False


def uses_xcb() -> bool:
    """Qt will pick its xcb (X11) platform: a DISPLAY, and no other platform asked for."""
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    return platform in ("", "xcb") and bool(os.environ.get("DISPLAY")) and not (
        platform == "" and os.environ.get("WAYLAND_DISPLAY"))


def missing_packages(loads: Callable[[str], bool] | None = None) -> list[str]:
    """The Debian/Ubuntu packages whose libraries the xcb plugin needs and cannot load here."""
    loads = loads or _loads
    return sorted({package for library, package in XCB_LIBRARIES.items() if not loads(library)})


def install_hint(packages: list[str]) -> str:
    return (f"the window needs X11 libraries that are missing here; install them with\n"
            f"  sudo apt-get install {' '.join(packages)}\n"
            f"or run without a window (--headless)")
