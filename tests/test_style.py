"""How people look: a stable colour per name, unknown people grey and dashed, pending ones light."""
import os
import subprocess
import sys

from gaitcam.identity.matcher import Decision
from gaitcam.sensors.demo import DEMO_PEOPLE, DEMO_STRANGER
from gaitcam.ui.style import PALETTE, UNKNOWN, identity_colour, look


def test_a_name_keeps_its_colour_in_every_process():
    code = "from gaitcam.ui.style import identity_colour; print(identity_colour('Ada'))"
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert seen == {f"{identity_colour('Ada')}\n"}


def test_the_demo_people_get_different_colours():
    names = [*DEMO_PEOPLE, DEMO_STRANGER]
    assert len({identity_colour(n) for n in names}) == len(names)
    assert all(identity_colour(n) in PALETTE for n in names)


def test_named_unknown_and_pending_look_different():
    named = look(3, Decision("Ada", 0.8, "Ada", 20))
    unknown = look(4, Decision(None, 0.3, "Ben", 20))
    pending = look(5, Decision(None, float("nan"), None, 2))
    assert (named.state, named.name, named.dashed) == ("named", "Ada", False)
    assert named.colour == identity_colour("Ada") and "Ada 0.80" in named.label and "#3" in named.label
    assert (unknown.state, unknown.name, unknown.dashed, unknown.colour) == ("unknown", None, True, UNKNOWN)
    assert "unknown 0.30" in unknown.label and "Ben" in unknown.label  # the nearest, as a hint
    assert pending.state == "pending" and not pending.dashed and pending.colour[3] < 255
    assert pending.width < unknown.width < named.width
    assert look(5, None) == pending
    assert look(3, Decision("Ada", 0.8, "Ada", 20), selected=True).width > named.width
