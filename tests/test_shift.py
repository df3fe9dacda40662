"""`benchmark shift` end to end on a small fake KGBD tree and a hidden=8 model: the clean row
first, one row per perturbation asked for, the JSON the checks read."""
import json

import pytest
import torch

from fake_kgbd import write_fake_kgbd
from gaitcam.cli import main
from gaitcam.skeleton.perturb import DESCRIPTIONS
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.weights import save_weights

pytestmark = pytest.mark.usefixtures("one_thread")


def test_shift_cli_writes_a_row_per_perturbation_beside_the_clean_row(tmp_path, capsys):
    write_fake_kgbd(tmp_path, people=5, walks=3)
    torch.manual_seed(0)
    weights = tmp_path / "weights" / "sgela"
    save_weights(SGELA(SGELAConfig(hidden=8)), weights, normalization="body")
    split = tmp_path / "split"  # the matcher these weights need, fitted as a user would
    assert main(["kgbd-layout", "--root", str(tmp_path), "--out", str(split)]) == 0
    assert main(["fit-matcher", "--train", str(split / "gallery"), "--weights", str(weights)]) == 0
    out = tmp_path / "shift.json"
    assert main(["benchmark", "shift", "--root", str(tmp_path), "--weights", str(weights),
                 "--only", "mirrored", "hands_untracked", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["name"] for r in rows] == ["clean", "hands_untracked", "mirrored"]
    for r in rows:
        assert 0 <= r["rank1"] <= 1 and 0 <= r["fnir_at_fpir_0.01"] <= 1 and r["fta_rate"] == 0
        assert r["n_probe"] == 5 * 4 and r["n_stranger_probes"] == 5 * 3  # 5 folds of one stranger each
    printed = capsys.readouterr().out
    assert DESCRIPTIONS["mirrored"] in printed and "largest drop" in printed
