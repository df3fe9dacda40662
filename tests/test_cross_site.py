"""`benchmark cross-site` end to end on a small fake KGBD tree (8 people) and a hidden=8 model:
the lab/site/stranger groups, the site's own threshold, the partial-skeleton site through NTU
files, and the JSON the checks read."""
import json

import pytest
import torch

from fake_kgbd import write_fake_kgbd
from gaitcam.cli import main
from gaitcam.evaluation.cross_site import fpir_interval, groups
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.weights import save_weights
from gaitcam.recording.kgbd import list_walks

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("kgbd")
    write_fake_kgbd(root, people=8, walks=3)
    torch.manual_seed(0)
    weights = root / "weights" / "lab"
    save_weights(SGELA(SGELAConfig(hidden=8)), weights, normalization="body")
    return root, weights


def test_groups_are_kgbds_split_and_scale_with_the_tree(site):
    root, _ = site
    lab, here, strangers = groups(list_walks(root))
    assert (list(lab), list(here), list(strangers)) == ([1, 2, 3, 4], [5, 6], [7, 8])

    class Walk:  # KGBD's 164 people give the protocol's groups exactly
        def __init__(self, n):
            self.person = f"Person{n:03d}"

    lab, here, strangers = groups([Walk(n) for n in range(1, 165)])
    assert (lab, here, strangers) == (range(1, 83), range(83, 124), range(124, 165))


def test_fpir_interval_is_exact_and_holds_the_rate():
    lo, hi = fpir_interval(1, 203)
    assert lo < 1 / 203 < hi and hi == pytest.approx(0.0271, abs=1e-4)  # Clopper-Pearson, by the tables
    assert fpir_interval(0, 50)[0] == 0.0 and fpir_interval(50, 50)[1] == 1.0


def test_cross_site_cli_writes_what_the_checks_read(site, tmp_path, capsys):
    root, weights = site
    out = tmp_path / "cross.json"
    assert main(["benchmark", "cross-site", "--root", str(root), "--weights", str(weights), "--fpir", "0.05",
                 "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["fpir_target"] == 0.05 and r["persons"] == {"lab": [1, 4], "site": [5, 6], "strangers": [7, 8]}
    # Two folds, persons 5-6 and 7-8 each once the site and once the strangers: every stranger
    # walk a probe, each site person's last walk a probe.
    assert [(f["site"], f["strangers"]) for f in r["folds"]] == [([5, 6], [7, 8]), ([7, 8], [5, 6])]
    assert [f["n_stranger_probes"] for f in r["folds"]] == [6, 6] and r["n_stranger_probes"] == 12
    assert r["n_enrolled_probes"] == 4 and r["n_enrolled_people"] == 4 and r["n_stranger_people"] == 4
    assert r["n_strangers_named"] == sum(f["n_strangers_named"] for f in r["folds"])
    assert r["fpir_obtained"] == r["n_strangers_named"] / 12
    assert r["dir"] == sum(f["dir_named"] for f in r["folds"]) / 4
    lo, hi = r["fpir_obtained_ci95"]
    assert 0 <= lo <= r["fpir_obtained"] <= hi <= 1 and 0 <= r["dir"] <= r["rank1"] <= 1
    assert "from the gallery" in r["threshold"] or "training walks" in r["threshold"]
    p = r["partial"]
    assert p["joints_never_tracked"] == ["HandLeft", "HandRight", "ShoulderCenter"]
    assert p["enrolled_people"] == 4 and p["stranger_people"] == 4  # both folds
    assert 0 <= p["enrolled_named_correctly"] <= 4 and 0 <= p["strangers_named"] <= 4
    printed = capsys.readouterr().out
    assert "FPIR asked 5 %, obtained" in printed and "exact 95 % CI" in printed and "never tracked" in printed
