"""Weights round-trip through safetensors + JSON, without pickle."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from gaitcam.cli import main
from gaitcam.config import WEIGHTS_DIR
from gaitcam.errors import FormatError
from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.weights import load_weights, save_weights


@pytest.fixture
def model():
    torch.manual_seed(1)
    return SGELA(SGELAConfig(attention="BA", decoder_input="teacher"))


def test_float32_round_trip_is_exact(model, tmp_path):
    meta = save_weights(model, tmp_path / "m", normalization="body", dtype="float32")
    loaded, meta2 = load_weights(tmp_path / "m.json")
    assert meta2["version"] == meta["version"] and meta2["model"] == model.cfg.to_dict()
    assert loaded.cfg == model.cfg
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k
    w = torch.randn(5, 6, 20, 3)
    assert torch.equal(model.age(w), loaded.age(w))


def test_float16_keeps_ages_within_tolerance(model, tmp_path):
    meta = save_weights(model, tmp_path / "m", normalization="body", dtype="float16")
    assert (tmp_path / "m.safetensors").stat().st_size < 14e6
    loaded, _ = load_weights(tmp_path / "m.safetensors")
    w = torch.randn(16, 6, 20, 3) * 0.3
    a, b = model.age(w), loaded.age(w)
    rel = (a - b).norm(dim=-1) / a.norm(dim=-1)
    assert float(rel.max()) < 5e-3
    assert meta["dtype"] == "float16"


def test_version_hash_changes_with_weights_and_config(model, tmp_path):
    v1 = save_weights(model, tmp_path / "a", normalization="body")["version"]
    assert save_weights(model, tmp_path / "b", normalization="body")["version"] == v1
    assert save_weights(model, tmp_path / "c", normalization="raw")["version"] != v1
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    assert save_weights(model, tmp_path / "d", normalization="body")["version"] != v1


def test_no_pickle_in_the_files(model, tmp_path):
    save_weights(model, tmp_path / "m", normalization="body")
    header_len = int.from_bytes((tmp_path / "m.safetensors").read_bytes()[:8], "little")
    header = json.loads((tmp_path / "m.safetensors").read_bytes()[8 : 8 + header_len])
    assert "axes.0.encoder.weight_ih_l0" in header
    json.loads((tmp_path / "m.json").read_text())


def test_bad_weights_are_clear_errors(model, tmp_path):
    with pytest.raises(FormatError, match="not found"):
        load_weights(tmp_path / "missing")
    save_weights(model, tmp_path / "m", normalization="body")
    (tmp_path / "m.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(FormatError, match="m.safetensors"):
        load_weights(tmp_path / "m")
    (tmp_path / "m.json").write_text("{")
    with pytest.raises(FormatError, match="m.json"):
        load_weights(tmp_path / "m")


def test_encoder_normalises_and_rejects_nan(model, tmp_path):
    save_weights(model, tmp_path / "m", normalization="centred", dtype="float32")
    enc = GaitEncoder.from_weights(tmp_path / "m", device="cpu")
    w = torch.randn(3, 6, 20, 3).numpy()
    shifted = w + [[[[1.0, 2.0, 3.0]]]]  # centred normalisation removes a translation
    torch.testing.assert_close(torch.from_numpy(enc.encode(w)), torch.from_numpy(enc.encode(shifted)),
                               rtol=1e-4, atol=1e-5)
    assert enc.encode(w, level="window").shape == (3, 6 * 768)
    assert enc.encode(w[:0]).shape == (0, 6, 768)
    w[0, 2, 5, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        enc.encode(w)


def _scale_one_tensor(stem: Path, factor: float = 1.01) -> None:
    """Rewrite STEM.safetensors with one tensor scaled, keeping its recorded version."""
    tensors = load_file(str(stem.with_suffix(".safetensors")))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] * factor
    save_file(tensors, str(stem.with_suffix(".safetensors")), metadata={"version": "kept"})


def test_shipped_weights_verify():
    for stem in sorted(p.with_suffix("") for p in WEIGHTS_DIR.glob("*.safetensors") if "matcher" not in p.name):
        _, meta = load_weights(stem)
        assert meta["version"] == json.loads(stem.with_suffix(".json").read_text())["version"]


def test_weights_modified_since_written_are_refused(model, tmp_path):
    save_weights(model, tmp_path / "m", normalization="body")
    _scale_one_tensor(tmp_path / "m")
    with pytest.raises(FormatError, match="modified since it was written"):
        load_weights(tmp_path / "m")
    save_weights(model, tmp_path / "c", normalization="body")
    meta = json.loads((tmp_path / "c.json").read_text())
    (tmp_path / "c.json").write_text(json.dumps({**meta, "normalization": "centred"}))  # version kept
    with pytest.raises(FormatError, match="modified since it was written"):
        load_weights(tmp_path / "c")
    del meta["layout"]
    (tmp_path / "c.json").write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="lacks 'layout'"):
        load_weights(tmp_path / "c")


def test_commands_refuse_modified_weights_and_leave_the_gallery_alone(tmp_path, capsys):
    for f in WEIGHTS_DIR.glob("sgela.*"):
        shutil.copy(f, tmp_path / f.name)
    weights, db = str(tmp_path / "sgela"), tmp_path / "g.db"
    run = ["--weights", weights, "--gallery", str(db)]
    assert main(["enroll", "Ada", "recordings/demo/Ada.gaitrec", *run]) == 0
    before = db.read_bytes()
    capsys.readouterr()
    _scale_one_tensor(tmp_path / "sgela")
    for argv in (["enroll", "Ben", "recordings/demo/Ben.gaitrec"], ["identify", "recordings/demo/Ada.gaitrec"],
                 ["fit-matcher", "--from-gallery"]):
        assert main([*argv, *run]) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "modified since it was written" in err[0], (argv, err)
    assert db.read_bytes() == before
