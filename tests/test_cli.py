"""The command line end to end: train on a real KGBD slice; bad input is one line, exit 2."""
import gzip
import json
import shutil

import pytest

from conftest import KGBD_ROOT
from gaitcam.cli import main

needs_kgbd = pytest.mark.skipif(not KGBD_ROOT.exists(), reason="KGBD data not available")


@needs_kgbd
def test_train_on_real_walks_writes_weights_and_curve(tmp_path, capsys):
    walks = [KGBD_ROOT / "Data" / "Person001" / f"{k}.txt.gz" for k in (1, 2)]
    out = tmp_path / "run"
    rc = main(["train", *map(str, walks), "--out", str(out), "--epochs", "1", "--hidden", "8",
               "--batch-size", "64", "--val-fraction", "0.5", "--threads", "1"])
    assert rc == 0
    assert "best validation loss" in capsys.readouterr().out
    meta = json.loads((out / "sgela.json").read_text())
    assert meta["normalization"] == "body" and meta["model"]["hidden"] == 8
    assert meta["notes"]["data"]["sequences"] == 2
    assert (out / "loss.png").stat().st_size > 0


def test_malformed_recording_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "1.txt"
    bad.write_text("Head;0;0;x\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1.txt:1" in err[0]


def test_no_inputs_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path)]) == 2
    assert "no recordings" in capsys.readouterr().err
