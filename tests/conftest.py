"""Shared test settings: where the read-only shared data sits beside the checkout."""
from pathlib import Path

# CI and developers have ../shared beside the repository (the real KGBD data, media).
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
KGBD_ROOT = SHARED / "data" / "kgbd"
