"""How a decision looks on screen: one colour per name, and unmistakable unknown / pending people.

The colour comes from a checksum of the name, not Python's `hash` (salted per process), so a
person keeps their colour across runs and machines. Unknown people are grey and dashed and
people without a verdict yet are drawn light and thin: an operator must never read a colour
as a name the matcher did not give.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from gaitcam.stream.pipeline import Decision

RGBA = tuple[int, int, int, int]

# Distinct, saturated hues that read on a white background (no greys: grey means unknown).
PALETTE: tuple[RGBA, ...] = (
    (31, 119, 180, 255), (255, 127, 14, 255), (44, 160, 44, 255), (214, 39, 40, 255),
    (148, 103, 189, 255), (140, 86, 75, 255), (227, 119, 194, 255), (188, 189, 34, 255),
    (23, 190, 207, 255), (0, 0, 139, 255),
)
UNKNOWN: RGBA = (110, 110, 110, 255)
PENDING: RGBA = (150, 150, 170, 130)

State = Literal["named", "unknown", "pending"]


def identity_colour(name: str) -> RGBA:
    """The same colour for the same name, in every run."""
    return PALETTE[zlib.crc32(name.encode("utf-8")) % len(PALETTE)]


@dataclass(frozen=True)
class Look:
    """Everything the view needs to draw one person: state, colour, line style and label."""

    state: State
    name: str | None  # the name shown, None unless named
    colour: RGBA
    dashed: bool
    width: float
    label: str


def look(track: int, decision: Decision | None, selected: bool = False) -> Look:
    """The look of `track` under its current decision; the selected person is drawn thicker."""
    extra = 2.0 if selected else 0.0
    if decision is None or not np.isfinite(decision.score):
        return Look("pending", None, PENDING, False, 1.5 + extra, f"#{track} identifying…")
    if decision.identity is None:
        nearest = getattr(decision, "candidate", None)
        hint = f" (~{nearest})" if nearest else ""
        return Look("unknown", None, UNKNOWN, True, 2.0 + extra, f"#{track} unknown {decision.score:.2f}{hint}")
    return Look("named", decision.identity, identity_colour(decision.identity), False, 3.0 + extra,
                f"#{track} {decision.identity} {decision.score:.2f}")
