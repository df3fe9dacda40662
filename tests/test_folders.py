"""`evaluate` on identity folders: layout errors, metric definitions, and a small real run."""
from pathlib import Path

import numpy as np
import pytest

from conftest import KGBD_ROOT
from gaitcam.errors import FormatError
from gaitcam.evaluation.folders import _closed_set, evaluate_folders, format_result, identity_folders
from gaitcam.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.formats import read_recording, write_recording
from gaitcam.recording.recording import Recording


def test_closed_set_metrics_of_known_rankings():
    truth = np.array([0, 1, 2, 3])
    perfect = 1 - np.eye(4)
    m = _closed_set(perfect, truth)
    assert m["rank1"] == 1 and m["map"] == 1 and m["cmc"][-1] == 1
    worst = np.eye(4)  # the true identity is always the farthest
    m = _closed_set(worst, truth)
    assert m["rank1"] == 0 and m["map"] == pytest.approx(0.25) and m["rank5"] == 1
    tied = np.zeros((4, 4))  # ties count against the probe
    assert _closed_set(tied, truth)["rank1"] == 0


def test_layout_errors_name_the_folder(tmp_path):
    with pytest.raises(FormatError, match="no such folder"):
        identity_folders(tmp_path / "nowhere")
    (tmp_path / "alice").mkdir()
    with pytest.raises(FormatError, match="no identity folders"):
        identity_folders(tmp_path)


@pytest.mark.skipif(not KGBD_ROOT.exists(), reason="KGBD data not available")
def test_small_real_evaluation(tmp_path, one_thread):
    for part, walks in (("gallery", (1, 2)), ("probe", (3,))):
        for person in (1, 2, 3, 4):
            d = tmp_path / part / f"Person{person:03d}"
            d.mkdir(parents=True)
            for k in walks:
                (d / f"{k}.txt.gz").symlink_to(KGBD_ROOT / "Data" / f"Person{person:03d}" / f"{k}.txt.gz")
    probe = tmp_path / "probe" / "Person001"
    (probe / "broken.txt.gz").write_bytes(b"not gzip")  # a bad probe is skipped, not fatal
    meta = read_recording(probe / "3.txt.gz").meta
    write_recording(Recording(meta, {}), probe / "empty.gaitrec")
    encoder = GaitEncoder.from_weights("weights/sgela")
    params = MatcherParams.load("weights/sgela.matcher.json")
    r = evaluate_folders(tmp_path / "gallery", tmp_path / "probe", encoder, params, unknown=1, progress=False)
    assert r["n_probe"] == 4 and r["n_identities"] == 4
    assert sorted(Path(s.split(":")[0]).name for s in r["skipped"]) == ["broken.txt.gz", "empty.gaitrec"]
    assert "no skeletons" in " ".join(r["skipped"])
    for cue in ("age", "shape", "fused", "bone_1nn"):
        m = r["cues"][cue]
        assert 0 <= m["rank1"] <= m["rank5"] <= 1 and 0 < m["map"] <= 1 and len(m["cmc"]) == 4
    assert r["rank1"] == r["cues"]["fused"]["rank1"]
    o = r["open_set"]
    assert o["left_out"] == ["Person004"] and o["n_unknown_probes"] == 1 and o["n_enrolled_probes"] == 3
    assert 0 <= o["fpir"] <= 1 and 0 <= o["dir"] <= 1
    assert "fusion (shipped)" in format_result(r)
