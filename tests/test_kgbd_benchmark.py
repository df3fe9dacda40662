"""The KGBD benchmark end to end on a tiny fake KGBD tree and a hidden=8 model."""
import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")

from gaitcam.cli import main
from gaitcam.evaluation.kgbd_benchmark import format_table, run_kgbd_benchmark, save_cmc_plot
from gaitcam.evaluation.recognition import RNConfig
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.weights import save_weights
from gaitcam.recording.kgbd import list_walks, probe_split, split_sha256
from gaitcam.skeleton.layouts import KGBD

N_PEOPLE, N_WALKS, N_FRAMES = 4, 3, 60


@pytest.fixture(scope="module")
def kgbd(tmp_path_factory):
    """(root, weights): PersonNNN/K.txt walks of gently swaying person-specific skeletons."""
    root = tmp_path_factory.mktemp("kgbd")
    rng = np.random.default_rng(0)
    t = np.arange(N_FRAMES)[:, None, None] / 30.0
    for person in range(1, N_PEOPLE + 1):
        body = rng.uniform(-0.4, 0.4, (1, 20, 3)) + [0.0, 0.0, 2.5]
        folder = root / "Data" / f"Person{person:03d}"
        folder.mkdir(parents=True)
        for walk in range(1, N_WALKS + 1):
            joints = body + 0.05 * np.sin(2 * np.pi * t + rng.uniform(0, 6, (1, 20, 3)))
            lines = [f"{name};{x:.5f};{y:.5f};{z:.5f}"
                     for frame in joints for name, (x, y, z) in zip(KGBD.joints, frame)]
            (folder / f"{walk}.txt").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    weights = root / "weights" / "sgela"
    save_weights(SGELA(SGELAConfig(hidden=8)), weights, normalization="body")
    return root, weights


FAST_RN = RNConfig(max_epochs=3, patience=2, batch_size=64)


def _check_common(result, root):
    probes = probe_split(list_walks(root))[1]
    windows_per_probe = (N_FRAMES - 2 * 10) // 6
    assert result["level"] == "window" and result["n_identities"] == N_PEOPLE
    assert result["n_probe"] == N_PEOPLE * windows_per_probe and result["walk_level"]["n_probe"] == N_PEOPLE
    assert result["split_sha256"] == split_sha256(probes)
    assert set(result["controls"]) == {"untrained", "raw_windows"}
    assert set(result["walk_level"]) >= {"sgela", "untrained", "raw_windows"}
    json.dumps(result)  # JSON-ready
    for entry in (result, *result["controls"].values(), *(result["walk_level"][k] for k in result["controls"])):
        for key in ("rank1", "rank5", "rank10"):
            assert 0.0 <= entry[key] <= 1.0
        assert entry["cmc"][-1] == 1.0 or result["protocol"] == "retrieval"


def test_classifier_protocol(kgbd, tmp_path):
    root, weights = kgbd
    result = run_kgbd_benchmark(root, "classifier", weights, seed=0, rn_config=FAST_RN, progress=False,
                                rn_dir=tmp_path / "rn")
    _check_common(result, root)
    for entry in (result, *result["controls"].values()):
        assert 0.5 <= entry["nauc_cmc"] <= 1.0 and 0.0 <= entry["nauc_roc"] <= 1.0
        assert len(entry["cmc"]) == N_PEOPLE
    rn = result["rn"]["sgela"]
    assert rn["n_val_windows"] > 0 and 1 <= rn["best_epoch"] <= rn["epochs"] <= 3
    again = run_kgbd_benchmark(root, "classifier", weights, seed=0, rn_config=FAST_RN, progress=False,
                               rn_dir=tmp_path / "rn")
    assert again["rn"]["sgela"] == {"reused": str(tmp_path / "rn" / "rn_sgela")}
    assert again["rank1"] == result["rank1"] and again["controls"] == result["controls"]
    table = format_table(result)
    assert "SGE-LA" in table and "raw windows" in table and "nAUC(ROC)" in table
    assert save_cmc_plot(result, tmp_path / "cmc.png").stat().st_size > 1000


def test_retrieval_protocol_and_cli(kgbd, tmp_path, capsys):
    root, weights = kgbd
    out = tmp_path / "r.json"
    assert main(["benchmark", "kgbd", "--root", str(root), "--protocol", "retrieval", "--weights", str(weights),
                 "--json", str(out), "--threads", "1"]) == 0
    result = json.loads(out.read_text())
    _check_common(result, root)
    assert result["protocol"] == "retrieval" and 0.0 < result["map"] <= 1.0
    assert result["n_gallery_windows"] == N_PEOPLE * (N_WALKS - 1) * ((N_FRAMES - 2 * 10) // 6)
    assert (tmp_path / "kgbd_retrieval_cmc.png").is_file()
    assert "mAP" in capsys.readouterr().out


def test_without_controls_only_sgela_is_measured(kgbd, tmp_path, capsys):
    root, weights = kgbd
    out = tmp_path / "r.json"
    assert main(["benchmark", "kgbd", "--root", str(root), "--protocol", "retrieval", "--weights", str(weights),
                 "--json", str(out), "--threads", "1", "--no-controls"]) == 0
    result = json.loads(out.read_text())
    with_controls = run_kgbd_benchmark(root, "retrieval", weights, progress=False)
    assert result["controls"] == {} and set(result["walk_level"]) == {"level", "n_probe", "sgela"}
    assert result["rank1"] == with_controls["rank1"] and result["map"] == with_controls["map"]
    assert "untrained" not in capsys.readouterr().out


def test_missing_weights_is_one_line_error(kgbd, tmp_path, capsys):
    root, _ = kgbd
    assert main(["benchmark", "kgbd", "--root", str(root), "--protocol", "retrieval",
                 "--weights", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "weights config not found" in err and "\n" not in err


def test_released_model_selection_rule_is_run_and_labelled(kgbd, caplog):
    root, weights = kgbd
    r = run_kgbd_benchmark(root, "classifier", weights, seed=0, rn_config=FAST_RN, progress=False,
                           controls=False, select_on_probes=True)
    assert r["model_selection"].startswith("probe windows (the released code's rule")
    assert r["rn"]["sgela"]["n_val_windows"] == r["n_probe"]
    assert "chosen on the probe windows" in format_table(r)
    assert "nothing held out" not in caplog.text  # the probe windows are what is held out
