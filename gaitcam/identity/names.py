"""Person names: one spelling per name, and a warning for names that only look different.

Names are shown on screen, in events and in one-line messages, and they are what an operator
trusts. So a name is stored NFKC-normalised (a full-width "Ａda" is "Ada"), with no control or
formatting characters, not padded, at most `MAX_LENGTH` characters. A name that reads like one
already enrolled but is spelt with letters of another script (Cyrillic "Аda" for Latin "Ada")
or mixes scripts gets a warning: a typo, or someone passing as someone else.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from gaitcam.errors import GaitcamError

MAX_LENGTH = 64

# Letters of other scripts that render like Latin ones (lower case; names are compared casefolded).
_HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t",
    "у": "y", "х": "x", "і": "i", "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "һ": "h", "ԛ": "q", "ԝ": "w", "ӏ": "l",
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u",
    "χ": "x", "ω": "w", "ζ": "z",
})


def normalise(name: str) -> str:
    """The stored form of `name`, or GaitcamError saying what is wrong with it."""
    if not isinstance(name, str):
        raise GaitcamError(f"invalid name {name!r}: a name is text")
    form = unicodedata.normalize("NFKC", name)
    if not form.strip() or form != form.strip():
        raise GaitcamError(f"invalid name {name[:80]!r}: use text without leading or trailing spaces")
    if len(form) > MAX_LENGTH:
        raise GaitcamError(f"invalid name {form[:20]!r}...: at most {MAX_LENGTH} characters, got {len(form)}")
    bad = next((c for c in form if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")), None)
    if bad is not None:
        raise GaitcamError(f"invalid name {form!r}: it holds the invisible or control character U+{ord(bad):04X}")
    return form


def _scripts(name: str) -> set[str]:
    """The scripts of a name's letters (LATIN, CYRILLIC, GREEK, ...), from their Unicode names."""
    return {unicodedata.name(c, "UNKNOWN").split()[0] for c in name if c.isalpha()}


def skeleton(name: str) -> str:
    """What a name looks like: casefolded, other scripts' Latin look-alikes turned Latin."""
    return unicodedata.normalize("NFKC", name).casefold().translate(_HOMOGLYPHS)


def lookalike_warning(name: str, existing: Iterable[str]) -> str | None:
    """A warning when `name` reads like another enrolled name, or mixes scripts; else None."""
    form = normalise(name)
    twin = next((other for other in existing if other != form and skeleton(other) == skeleton(form)), None)
    if twin is not None:
        return f"{form!r} reads like already enrolled {twin!r} but is spelt differently: a typo, or a spoof?"
    scripts = _scripts(form)
    if len(scripts) > 1:
        return f"{form!r} mixes letters of {' and '.join(sorted(s.title() for s in scripts))}: a spoof?"
    return None
