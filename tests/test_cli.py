"""The command line end to end: train on a real KGBD slice; bad input is one line, exit 2."""
import json

import numpy as np
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


@needs_kgbd
def test_train_init_adapts_to_a_site_and_says_whether_it_helped(tmp_path, capsys):
    walks = [str(KGBD_ROOT / "Data" / "Person002" / f"{k}.txt.gz") for k in (1, 2, 3)]
    base = tmp_path / "base"
    assert main(["train", walks[0], "--out", str(base), "--max-steps", "2", "--hidden", "8", "--threads", "1"]) == 0
    capsys.readouterr()
    rc = main(["train", "--init", str(base / "sgela"), "--data", *walks[1:], "--out", str(tmp_path / "site"),
               "--max-steps", "4", "--val-every", "2", "--val-fraction", "0.5", "--mask-joints", "0.3",
               "--threads", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "held-out recordings" in out and f"with {base / 'sgela'}" in out and "fine-tuned" in out
    meta = json.loads((tmp_path / "site" / "sgela.json").read_text())
    assert meta["model"]["hidden"] == 8 and meta["notes"]["init"]["weights"] == str(base / "sgela")
    assert meta["notes"]["train"]["mask_joints"] == 0.3 and meta["notes"]["train"]["lr"] == pytest.approx(5e-5)


def test_malformed_recording_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "1.txt"
    bad.write_text("Head;0;0;x\n")
    assert main(["train", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1.txt:1" in err[0]


def test_no_inputs_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path)]) == 2
    assert "no recordings" in capsys.readouterr().err


@needs_kgbd
def test_enroll_identify_and_manage_the_gallery(tmp_path, capsys):
    db = str(tmp_path / "g.db")
    walk = KGBD_ROOT / "Data" / "Person001"
    assert main(["enroll", "Ann", str(walk / "1.txt.gz"), "--gallery", db]) == 0
    assert "enrolled Ann" in capsys.readouterr().out
    assert main(["identify", str(walk / "2.txt.gz"), "--json", "--gallery", db]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert row["track"] == 0 and row["nearest"] == "Ann" and row["windows"] > 0
    assert main(["gallery", "--gallery", db, "rename", "Ann", "Anna"]) == 0
    assert main(["gallery", "--gallery", db, "list"]) == 0
    assert "Anna: 1 recording(s)" in capsys.readouterr().out
    assert main(["gallery", "--gallery", db, "remove", "Anna"]) == 0
    said = capsys.readouterr().out
    assert "removed Anna and their 3 template(s)" in said and "deleted" not in said  # not asked to
    assert "kept 1 recording(s) of theirs" in said and str((walk / "1.txt.gz").resolve()) in said  # as stored
    assert main(["gallery", "--gallery", db, "remove", "Anna"]) == 2
    assert "Anna" in capsys.readouterr().err


def test_identify_reads_files_before_opening_the_gallery(tmp_path, capsys):
    bad = tmp_path / "x.skeleton"
    bad.write_text("3\n1\n")
    db = tmp_path / "g.db"
    assert main(["identify", str(bad), "--gallery", str(db)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "x.skeleton" in err[0]
    assert not db.exists()


@needs_kgbd
def test_convert_between_formats(tmp_path, capsys):
    src = KGBD_ROOT / "Data" / "Person001" / "1.txt.gz"
    csv, native = tmp_path / "w.csv", tmp_path / "w.gaitrec"
    assert main(["convert", str(src), str(csv)]) == 0
    assert main(["convert", str(csv), str(native)]) == 0
    assert "1 track(s)" in capsys.readouterr().out and native.stat().st_size > 0


def test_unknown_sensor_is_one_line(capsys):
    assert main(["--sensor", "nosuch", "--headless"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nosuch" in err[0] and "demo" in err[0]


def test_calibrate_recovers_the_demo_floor(tmp_path, capsys):
    from gaitcam.sensors.demo import DEMO_CAMERA_TILT
    from gaitcam.stream.calibration import Calibration

    out = tmp_path / "demo.json"
    assert main(["calibrate", "recordings/demo/Ada.gaitrec", "recordings/demo/Ben.gaitrec", "--out", str(out)]) == 0
    assert "floor for demo" in capsys.readouterr().out
    cal = Calibration.load(out)
    tilt = np.arccos(cal.rotation[1, 1])
    assert abs(tilt - DEMO_CAMERA_TILT) < np.radians(1) and 0.9 < cal.translation[1] < 1.0  # feet ~4 cm up


def test_record_writes_a_replayable_recording(tmp_path, capsys):
    from gaitcam.recording.formats import read_recording

    out = tmp_path / "r.gaitrec"
    assert main(["record", "--headless", "--duration", "4", "--out", str(out)]) == 0
    rec = read_recording(out)
    assert rec.meta.sensor == "demo" and rec.tracks and rec.duration > 2
    assert main(["--sensor", "replay", "--source", str(out), "--headless", "--speed", "0"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    assert summary["frames"] > 60 and summary["tracks"] >= 1


def test_options_before_the_command_are_kept():
    from gaitcam.cli import build_parser

    args = build_parser().parse_args(["--gallery", "x.db", "gallery", "list"])
    assert args.gallery == "x.db"
    args = build_parser().parse_args(["--sensor", "replay", "record"])
    assert args.sensor == "replay"
    assert build_parser().parse_args(["evaluate", "--gallery", "G", "--probe", "P"]).gallery_dir == "G"


def test_recordings_are_never_overwritten(tmp_path, capsys):
    out = tmp_path / "w.csv"
    out.write_text("precious")
    assert main(["convert", "recordings/demo/Ada.gaitrec", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "precious"


def test_the_readme_flow_record_enrol_identify(tmp_path, capsys):
    """As the README says: record the demo, enrol people from the recording, identify it."""
    rec, db = str(tmp_path / "walk.gaitrec"), str(tmp_path / "my.db")
    assert main(["record", "--headless", "--duration", "12", "--out", rec]) == 0
    said = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    live = {e["track"]: e["identity"] for e in said if e["event"] == "identity"}  # the demo gallery's verdicts
    first = {name: min(t for t, n in live.items() if n == name) for name in ("Ada", "Ben")}
    for name, track in first.items():
        assert main(["--gallery", db, "enroll", name, rec, "--track", str(track)]) == 0
        assert f"enrolled {name}" in capsys.readouterr().out
    assert main(["--gallery", db, "identify", rec, "--json"]) == 0
    now = {r["track"]: r["identity"] for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert all(now[t] == name for name, t in first.items())
    known = {t: name for t, name in live.items() if name in ("Ada", "Ben", "Chloe")}  # named live: their truth
    assert all(now[t] in (name, None) for t, name in known.items() if name != "Chloe")  # never the wrong name
    assert all(now[t] is None for t, name in known.items() if name == "Chloe")  # not enrolled here
    again = [t for t, name in known.items() if name != "Chloe" and t not in first.values()]
    assert again and sum(now[t] == known[t] for t in again) >= len(again) / 2  # their other passes


def test_enroll_live_records_the_walker_in_front_of_the_sensor_and_enrols_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the recording is kept under ./recordings
    db = str(tmp_path / "live.db")
    assert main(["--gallery", db, "enroll", "--live", "Walker"]) == 0
    out, err = capsys.readouterr()
    assert "/20 windows" in err and "enrolled Walker from recordings/enrol-demo-" in out
    (rec,) = (tmp_path / "recordings").glob("enrol-demo-*.gaitrec")
    assert main(["--gallery", db, "identify", str(rec), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert "Walker" in {r["identity"] for r in rows}
    assert main(["--gallery", db, "enroll", "--live", "Nobody", "--wait", "0.3"]) == 2  # no one walks that fast
    assert "nothing enrolled" in capsys.readouterr().err
    assert len(list((tmp_path / "recordings").glob("*.gaitrec"))) == 1  # the failed attempt left nothing


def test_gallery_export_writes_the_person_and_never_prints_vectors(tmp_path, capsys):
    import stat

    from gaitcam.identity.gallery import Gallery, RecordingRef, Template

    db, out, walk = tmp_path / "g.db", tmp_path / "dsar", tmp_path / "w.gaitrec"
    walk.write_bytes(b"walk")
    vectors = np.full((2, 4), 1234.5, dtype=np.float32)
    with Gallery(db) as g:
        g.enroll("Ann", [Template("age", "v1", "demo", vectors)], RecordingRef.from_file(walk, "demo"))
    argv = ["gallery", "--gallery", str(db), "export", "Ann", "--out", str(out)]
    assert main([*argv, "--with-recordings"]) == 0
    said = capsys.readouterr().out
    assert said.count("\n") == 1 and "1234" not in said
    assert "exported Ann: 1 template(s), 1 recording reference(s), 1 recording file(s) copied" in said
    person = out / "Ann" / "person.json"
    assert json.loads(person.read_text())["templates"][0]["vectors"] == vectors.tolist()
    assert stat.S_IMODE(person.stat().st_mode) == 0o600 and (out / "Ann" / "recordings" / "w.gaitrec").exists()
    assert main(argv) == 2  # never over an earlier export unasked
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--force" in err[0]
    assert main([*argv, "--force"]) == 0 and not (out / "Ann" / "recordings").exists()
    capsys.readouterr()
    assert main(["gallery", "--gallery", str(db), "export", "Nobody", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Nobody" in err[0] and not (out / "Nobody").exists()
