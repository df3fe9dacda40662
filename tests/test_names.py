"""Person names: one stored spelling, refused when unusable, warned when they only look different."""
import re

import numpy as np
import pytest

from gaitcam.errors import GaitcamError
from gaitcam.identity.gallery import Gallery, Template
from gaitcam.identity.names import MAX_LENGTH, lookalike_warning, normalise


def test_names_are_stored_nfkc_and_bad_ones_refused_in_one_line():
    assert normalise("Ａda") == "Ada" and normalise("José") == "José" and normalise("李小龍") == "李小龍"
    for bad, why in [("", "spaces"), (" Ada", "spaces"), ("Ada\n", "spaces"), ("A\x00da", "U+0000"),
                     ("Ad\u200ba", "U+200B"), ("A\u202eda", "U+202E"), ("x" * (MAX_LENGTH + 1), "at most"),
                     ("x" * 100_000, "at most"), (42, "text")]:
        with pytest.raises(GaitcamError, match=re.escape(why)) as e:
            normalise(bad)
        assert "\n" not in str(e.value) and len(str(e.value)) < 200


def test_lookalikes_and_mixed_scripts_are_warned():
    assert lookalike_warning("Аda", ["Ada", "Ben"]) == "'Аda' reads like already enrolled 'Ada' but is spelt differently: a typo, or a spoof?"
    assert "reads like already enrolled 'Ben'" in lookalike_warning("ben", ["Ada", "Ben"])
    assert "mixes letters of Cyrillic and Latin" in lookalike_warning("Воb", ["Ada"])  # Cyrillic В, о
    assert lookalike_warning("Chloe", ["Ada", "Ben"]) is None and lookalike_warning("Алёна", ["Ada"]) is None


def test_the_gallery_keeps_one_spelling_and_finds_it_by_any(tmp_path, caplog):
    t = Template("age", "v1", "demo", np.ones((2, 4), np.float32))
    with Gallery(tmp_path / "g.db") as g:
        g.enroll("Ａda", [t])
        g.enroll("Ada", [t])  # the same person: NFKC makes them one name
        assert [(p.name, p.n_templates) for p in g.people()] == [("Ada", 2)]
        g.enroll("Ben", [t])
        g.rename("Ben", "Аda2")
        assert "mixes letters" in caplog.text
        g.remove("Ａda")
        assert [p.name for p in g.people()] == ["Аda2"]

