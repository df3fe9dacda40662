"""gaitcam: real-time person re-identification from 3-D skeleton gait (SGE-LA).

    import gaitcam
    session = gaitcam.open_session(gallery="site.db")

`open_session` (gaitcam.session) is the library's entry point; `gaitcam.events` holds the
events' JSON Schema. Importing gaitcam itself loads nothing heavy: torch comes with the session.
"""
import os
import sys
from typing import TYPE_CHECKING, Any

# numpy's OpenBLAS keeps a thread per extra core spinning after every product, and the live loop
# makes many small ones (the matcher's): on 2 cores that thread burned most of one (the pipeline,
# 6 people at stride 2: 104 % of a core, 23 % with one BLAS thread, the same latency). One BLAS
# thread unless the environment says otherwise; it only counts before numpy is first imported
# (`open_session` warns a library user who imported numpy or torch first).
BLAS_ON_EVERY_CORE = "numpy" in sys.modules and not any(
    v in os.environ for v in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"))  # what OpenBLAS reads
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
__all__ = ["open_session", "Session", "__version__"]

if TYPE_CHECKING:
    from gaitcam.session import Session, open_session


def __getattr__(name: str) -> Any:
    if name in ("open_session", "Session"):
        from gaitcam import session

        return getattr(session, name)
    raise AttributeError(f"module 'gaitcam' has no attribute {name!r}")
