"""Shared test settings: where the read-only shared data sits beside the checkout."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

# CI and developers have ../shared beside the repository (the real KGBD data, media).
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
KGBD_ROOT = SHARED / "data" / "kgbd"


@pytest.fixture
def one_thread():
    """Tiny networks gain nothing from threads, and lose a lot when another job holds the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def private_user_folders(tmp_path_factory, monkeypatch):
    """No test may read or write the developer's own gallery or config (~/.local/share, ~/.config),
    nor use their gallery key."""
    monkeypatch.delenv("GAITCAM_GALLERY_KEY", raising=False)
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))


def kill_recorder_after(script: str, args: list[str], frames: int) -> int:
    """Run a child Python `script` that writes frames and prints each frame's index as it goes;
    SIGKILL it once it has printed `frames`. Returns the last index it printed."""
    child = subprocess.Popen([sys.executable, "-c", script, *args], cwd=Path(__file__).resolve().parents[1],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = -1
    try:
        while last < frames:
            line = child.stdout.readline()
            assert line, f"recorder died early: {child.stderr.read()}"
            last = int(line)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        child.stderr.close()
    return last


def free_port() -> int:
    """A loopback TCP port nothing listens on now (servers under test bind it next)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(folder: Path, *args: str, token: str | None = None, seconds: float = 60.0
                ) -> tuple[str, subprocess.Popen]:
    """`main.py serve` on a free loopback port, its data and config under `folder`, polled
    (bounded: `seconds`) until /healthz answers; (base URL, process)."""
    port = free_port()
    env = {**os.environ, "XDG_DATA_HOME": str(folder / "data"), "XDG_CONFIG_HOME": str(folder / "config")}
    child = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--log-level", "WARNING", "serve", "--port",
                              str(port), *args], cwd=folder, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    request = urllib.request.Request(f"{base}/healthz")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            urllib.request.urlopen(request, timeout=2).close()
            return base, child
        except OSError:
            pass
        if child.poll() is not None:
            pytest.fail(f"serve exited: {child.stderr.read()}")
        time.sleep(0.5)
    child.kill()
    pytest.fail(f"serve did not come up in {seconds:.0f} s")
