"""The library: open_session enrols and identifies recordings, and reports both as schema events."""
import os

import jsonschema
import pytest

import gaitcam
import gaitcam.session as session_module
from gaitcam.config import DEMO_DIR
from gaitcam.errors import GaitcamError
from gaitcam.events import SCHEMA


def test_a_session_enrols_identifies_removes_and_says_so_in_events(tmp_path):
    with gaitcam.open_session(gallery=tmp_path / "g.db", device="cpu") as session:
        for name in ("Ada", "Ben", "Chloe"):
            assert session.enroll(name, DEMO_DIR / f"{name}.gaitrec").windows > 0
        assert session.people() == ["Ada", "Ben", "Chloe"]
        (decision,) = session.identify(DEMO_DIR / "Ada.gaitrec")
        assert decision["identity"] == "Ada" and decision["score"] >= 0.5 and decision["failure"] is None
        (stranger,) = session.identify(DEMO_DIR / "Dev.gaitrec")  # never enrolled
        assert stranger["identity"] is None and stranger["nearest"] in ("Ada", "Ben", "Chloe")
        session.remove("Ben")
        assert session.people() == ["Ada", "Chloe"]
        events = list(session.events())
        assert list(session.events()) == []  # each event is yielded once
    for e in events:
        jsonschema.validate(e, SCHEMA)
    assert [e["event"] for e in events] == ["enrolled"] * 3 + ["identity", "identity", "removed"]
    assert [e["seq"] for e in events] == list(range(1, 7)) and {e["camera"] for e in events} == {"library"}
    named = events[3]
    assert named["identity"] == "Ada" and named["margin"] == pytest.approx(named["score"] - named["threshold"], abs=1e-4)
    assert "identity" not in events[0] and events[4]["identity"] is None  # only decisions carry the key


def test_a_session_in_bfloat16_names_the_enrolled_and_not_the_stranger(tmp_path):
    with gaitcam.open_session(gallery=tmp_path / "g.db", device="cpu", precision="bfloat16") as session:
        assert session.models.encoder.precision == "bfloat16"
        for name in ("Ada", "Ben"):
            session.enroll(name, DEMO_DIR / f"{name}.gaitrec")
        (known,) = session.identify(DEMO_DIR / "Ben.gaitrec")
        (stranger,) = session.identify(DEMO_DIR / "Dev.gaitrec")
    assert known["identity"] == "Ben" and stranger["identity"] is None


def test_a_failed_enrolment_changes_nothing_and_emits_nothing(tmp_path):
    bad = tmp_path / "bad.gaitrec"
    bad.write_bytes(b"not a recording")
    with gaitcam.open_session(gallery=tmp_path / "g.db", device="cpu") as session:
        with pytest.raises(GaitcamError):
            session.enroll("Ada", bad)
        assert session.people() == [] and list(session.events()) == []


def test_an_unknown_gallery_store_is_refused_with_a_clear_error():
    with pytest.raises(GaitcamError, match="mysql://: not a gallery store"):
        gaitcam.open_session(gallery="mysql://localhost/gaitcam", device="cpu")


def test_a_session_warns_when_numpy_came_first_with_blas_on_every_core(monkeypatch, caplog):
    for on_every_core in (True, False):
        monkeypatch.setattr(gaitcam, "BLAS_ON_EVERY_CORE", on_every_core)
        monkeypatch.setattr(session_module, "_warned_blas", False)  # once a process: earlier tests may have
        caplog.clear()
        with pytest.raises(GaitcamError):  # the warning comes first, before any model loads
            gaitcam.open_session(gallery="mysql://localhost/gaitcam", device="cpu")
        warned = [r.getMessage() for r in caplog.records if "OPENBLAS_NUM_THREADS=1" in r.getMessage()]
        assert len(warned) == (on_every_core and (os.cpu_count() or 1) > 1) and "%%" not in "".join(warned)
        with pytest.raises(GaitcamError):
            gaitcam.open_session(gallery="mysql://localhost/gaitcam", device="cpu")
        assert sum("OPENBLAS_NUM_THREADS=1" in r.getMessage() for r in caplog.records) == len(warned)  # once


def test_two_sessions_on_one_postgresql_gallery_see_each_others_changes_within_a_second(postgres_url):
    """Two cameras on one shared gallery: what one enrols the other names, and what one removes
    the other forgets, without a restart."""
    with gaitcam.open_session(gallery=postgres_url, device="cpu", camera="a") as a, \
            gaitcam.open_session(gallery=postgres_url, device="cpu", camera="b") as b:
        for name in ("Ada", "Chloe"):
            a.enroll(name, DEMO_DIR / f"{name}.gaitrec")
        assert b.people() == ["Ada", "Chloe"]
        assert b.identify(DEMO_DIR / "Ben.gaitrec")[0]["identity"] is None  # b has read its index now
        a.enroll("Ben", DEMO_DIR / "Ben.gaitrec")
        assert wait_until(lambda: "Ben" in b.index.names, 1.0)
        assert b.identify(DEMO_DIR / "Ben.gaitrec")[0]["identity"] == "Ben"
        a.remove("Ben")
        assert wait_until(lambda: "Ben" not in b.index.names, 1.0)
        assert b.identify(DEMO_DIR / "Ben.gaitrec")[0]["identity"] != "Ben"


def wait_until(condition, seconds: float) -> bool:
    """Polls `condition` for at most `seconds`."""
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_live_run_tells_when_its_sensor_is_lost_and_back(tmp_path):
    from test_capture import ScriptedSource

    with gaitcam.open_session(gallery=tmp_path / "g.db", device="cpu") as session:
        run = session.live(ScriptedSource(n=30, lose_at=[10]))
        run.run()
        events = list(session.events())
    status = [e["status"] for e in events if e["event"] == "sensor_status"]
    assert status == ["started", "lost", "restarted", "ended"] and events[-1]["event"] == "summary"
    assert events[-1]["summary"]["frames"] == 30


def test_importing_gaitcam_first_keeps_numpy_to_one_blas_thread():
    """OpenBLAS's spinning threads burned most of a core in the live loop; one thread unless the
    environment asks for more (it counts only before numpy loads: gaitcam notes when it came late)."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    for given, first, expected in ((None, "gaitcam, numpy", "1 False"), ("3", "gaitcam, numpy", "3 False"),
                                   (None, "numpy, gaitcam", "1 True"), ("3", "numpy, gaitcam", "3 False")):
        code = f"import os, {first}; print(os.environ['OPENBLAS_NUM_THREADS'], gaitcam.BLAS_ON_EVERY_CORE)"
        run_env = env if given is None else {**env, "OPENBLAS_NUM_THREADS": given}
        out = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True, text=True, timeout=60,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        assert out.returncode == 0 and out.stdout.strip() == expected, (first, given, out.stderr)
