"""Shared test settings: where the read-only shared data sits beside the checkout."""
from pathlib import Path

import pytest
import torch

# CI and developers have ../shared beside the repository (the real KGBD data, media).
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
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
    """No test may read or write the developer's own gallery or config (~/.local/share, ~/.config)."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
