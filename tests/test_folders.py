"""`evaluate` on identity folders: layout errors, metric definitions, folds and small real runs."""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import KGBD_ROOT
from gaitcam.cli import main
from gaitcam.errors import FormatError
from gaitcam.evaluation.folders import (_bootstrap, _closed, _det, _fnir_at, _folds, encode_folders, evaluate_folders,
                                        format_result, identity_folders)
from gaitcam.identity.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.formats import read_recording, write_recording
from gaitcam.recording.recording import Recording

needs_kgbd = pytest.mark.skipif(not KGBD_ROOT.exists(), reason="KGBD data not available")


def test_closed_set_metrics_of_known_ranks():
    m = _closed(np.array([1.0, 1.0, 2.0, 4.0, np.nan]), n_people=4)  # NaN: a stranger's row
    assert m["rank1"] == 0.5 and m["rank5"] == 1.0 and m["cmc"] == [0.5, 0.75, 0.75, 1.0]
    assert m["map"] == pytest.approx((1 + 1 + 0.5 + 0.25) / 4)


def test_fnir_at_fpir_names_at_most_that_share_of_strangers():
    stranger = np.array([True] * 100 + [False] * 4)
    score = np.r_[np.linspace(0.5, 1.0, 100), [0.1, 0.2, 0.6, 0.3]]
    correct = np.array([False] * 100 + [True, True, True, False])
    # FPIR 1 %: one stranger (score 0.5) may be named: below 0.505 names the enrolled at 0.1, 0.2
    # (right) and 0.3 (wrong name): FNIR = 1 - 2/4.
    fnir, got = _fnir_at(score, correct, stranger, 0.01)
    assert fnir == pytest.approx(0.5) and got == pytest.approx(0.01)
    fnir0, got0 = _fnir_at(score, correct, stranger, 0.003)  # no stranger may be named
    assert fnir0 == pytest.approx(0.5) and got0 == 0.0
    fpir, fnir_curve = _det(score, correct, stranger)
    assert fpir[0] == 0.0 and fpir[-1] == 1.0 and fnir_curve[-1] == pytest.approx(0.25)
    assert np.all(np.diff(fpir) >= 0) and np.all(np.diff(fnir_curve) <= 0)


def test_bootstrap_interval_holds_the_estimate_and_widens_with_noise():
    identity = np.repeat(np.arange(50), 4)
    hit = (np.arange(200) % 5 != 0).astype(float)  # 80 %
    lo, hi = _bootstrap(identity, lambda r: hit[r].mean(), 300, seed=0)
    assert lo < 0.8 < hi and hi - lo < 0.2
    assert _bootstrap(identity, lambda r: 1.0, 50, seed=0) == [1.0, 1.0]


def test_folds_make_every_identity_a_stranger_once():
    fold = _folds([f"p{i}" for i in range(23)], 10, seed=0)
    counts = np.bincount(list(fold.values()))
    assert len(fold) == 23 and len(counts) == 10 and counts.min() >= 2 and counts.max() <= 3


def test_layout_errors_name_the_folder(tmp_path):
    with pytest.raises(FormatError, match="no such folder"):
        identity_folders(tmp_path / "nowhere")
    (tmp_path / "alice").mkdir()
    with pytest.raises(FormatError, match="no identity folders"):
        identity_folders(tmp_path)


def _layout(tmp_path: Path, people: tuple[int, ...]) -> tuple[Path, Path]:
    for part, walks in (("gallery", (1, 2)), ("probe", (3,))):
        for person in people:
            d = tmp_path / part / f"Person{person:03d}"
            d.mkdir(parents=True)
            for k in walks:
                (d / f"{k}.txt.gz").symlink_to(KGBD_ROOT / "Data" / f"Person{person:03d}" / f"{k}.txt.gz")
    return tmp_path / "gallery", tmp_path / "probe"


@needs_kgbd
def test_small_real_evaluation_counts_failures_and_carries_on(tmp_path, one_thread):
    gallery, probes = _layout(tmp_path, (1, 2, 3, 4, 5))
    probe = probes / "Person001"
    (probe / "broken.txt.gz").write_bytes(b"not gzip")  # failures to acquire: counted, not fatal
    write_recording(Recording(read_recording(probe / "3.txt.gz").meta, {}), probe / "empty.gaitrec")
    encoder = GaitEncoder.from_weights("weights/sgela")
    params = MatcherParams.load("weights/sgela.matcher.json")
    r = evaluate_folders(gallery, probes, encoder, params, bootstrap=50, progress=False)
    assert r["folds"] == 5 and r["n_identities"] == 5
    assert r["n_probe"] == 5 * 4 and r["n_stranger_probes"] == 5 * 3  # each person enrolled in 4 folds
    assert r["fta_rate"] == pytest.approx(2 / 7) and r["fte_rate"] == 0
    assert sorted((Path(f["path"]).name, f["failure"].split(" ")[0]) for f in r["failures"]) == [
        ("broken.txt.gz", "unreadable"), ("empty.gaitrec", "no")]
    assert r["projection"].startswith("shipped")  # 4 enrolled: too few to fit a whitening on
    assert sorted(r["cues"]) == ["bone_1nn", "fused", "shape"]
    for cue in ("fused", "shape", "bone_1nn"):
        m = r["cues"][cue]
        assert 0 <= m["rank1"] <= m["rank5"] <= 1 and 0 < m["map"] <= 1 and len(m["cmc"]) == 5
        assert m["rank1_ci95"][0] <= m["rank1"] <= m["rank1_ci95"][1]
    assert set(r["fnir_at_fpir"]) == {"0.01", "0.003"} and all(0 <= v <= 1 for v in r["fnir_at_fpir"].values())
    assert r["rank1"] == r["cues"]["fused"]["rank1"] and 0 <= r["calibrated"]["fpir_obtained"] <= 1
    assert all("training walks" in t for t in r["calibrated"]["thresholds"])  # 4 enrolled: too few to calibrate
    assert "fusion (shipped)" in format_result(r)


@needs_kgbd
def test_evaluate_runs_with_no_options_on_two_identities(tmp_path, capsys):
    gallery, probes = _layout(tmp_path, (1, 2))
    out = tmp_path / "r.json"
    assert main(["evaluate", "--gallery", str(gallery), "--probe", str(probes), "--json", str(out),
                 "--threads", "1", "--bootstrap", "20"]) == 0
    r = json.loads(out.read_text())
    assert r["folds"] == 2 and r["n_identities"] == 2 and r["projection"].startswith("shipped")
    for key in ("rank1", "rank1_ci95", "fnir_at_fpir", "fta_rate", "rank5", "map", "n_probe"):
        assert key in r
    assert Path(r["plot"]).is_file() and "FNIR" in capsys.readouterr().out


@needs_kgbd
def test_encoding_in_worker_processes_gives_the_same_walks(tmp_path, one_thread):
    gallery, probes = _layout(tmp_path, (1, 2, 3))
    (probes / "Person001" / "broken.txt.gz").write_bytes(b"not gzip")  # a failure crosses the process boundary too
    encoder = GaitEncoder.from_weights("weights/sgela")
    params = MatcherParams.load("weights/sgela.matcher.json")
    serial, parallel = (encode_folders(gallery, probes, encoder, params, progress=False, workers=n) for n in (1, 2))
    assert [(w.path, w.role, w.failure) for w in serial] == [(w.path, w.role, w.failure) for w in parallel]
    assert sum(w.role == "augment" for w in parallel) == 6 and sum(w.failure is not None for w in parallel) == 1
    for a, b in zip(serial, parallel):
        assert sorted(a.evidence) == sorted(b.evidence)
        for key in a.evidence:  # one-thread onnxruntime in both: the same sums
            np.testing.assert_allclose(a.evidence[key].descriptor(), b.evidence[key].descriptor(), rtol=1e-5, atol=1e-6)
