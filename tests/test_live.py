"""The app as `python main.py` runs it: the demo names its enrolled walkers, not the stranger."""
import json
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from gaitcam.cli import main
from gaitcam.config import DEMO_DIR
from gaitcam.events import SCHEMA
from gaitcam.identity.enrollment import demo_gallery
from gaitcam.identity.enrollment import load_index
from gaitcam.identity.matcher import Matcher, MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.sensors.demo import DEMO_PEOPLE, DEMO_STRANGER, DemoSource
from gaitcam.stream.pipeline import Pipeline


class _TruthDemo(DemoSource):
    """The demo, remembering who each body is by its joints array (which the stream passes on)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.names: dict[int, tuple] = {}

    def read(self):
        frame = super().read()
        if frame is not None:
            for b in frame.bodies:
                self.names[id(b.joints)] = (b.joints, frame.extras["who"][b.track])
        return frame


def test_demo_names_the_enrolled_walkers_and_not_the_stranger(one_thread):
    encoder = GaitEncoder.from_weights("weights/sgela")
    params = MatcherParams.load("weights/sgela.matcher.json")
    source = _TruthDemo(duration=30, realtime=False)
    truth: dict[int, str] = {}
    verdicts: dict[int, list] = {}

    class Recorder:
        def write(self, frame):
            for b in frame.bodies:
                truth[b.track] = source.names[id(b.joints)][1]

    with ExitStack() as stack:
        index = load_index(demo_gallery(stack, encoder, params), params)
        assert index.people == sorted(DEMO_PEOPLE)
        pipeline = Pipeline(source, encoder, Matcher(index, params), recorder=Recorder(),
                            on_decision=lambda t, time, d: verdicts.setdefault(t, []).append(d.identity))
        stats = pipeline.run()
    assert stats.dropped == 0 and stats.windows > 300
    named = {t: v[-1] for t, v in verdicts.items()}
    strangers = [t for t in named if truth[t] == DEMO_STRANGER]
    enrolled = [t for t in named if truth[t] != DEMO_STRANGER]
    assert len(strangers) >= 3 and len(enrolled) >= 10
    assert all(named[t] is None for t in strangers)
    assert sum(named[t] == truth[t] for t in enrolled) >= 0.9 * len(enrolled)
    assert all(named[t] in (truth[t], None) for t in enrolled)  # never the wrong name


def test_headless_prints_schema_events_ending_with_the_summary(capsys):
    assert main(["--headless", "--duration", "6", "--camera", "hall-1"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    for line in lines:
        jsonschema.validate(line, SCHEMA)
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1)) and {e["camera"] for e in lines} == {"hall-1"}
    assert all(datetime.fromisoformat(e["time"]).utcoffset() == timedelta(0) for e in lines)
    kinds = [e["event"] for e in lines]
    assert kinds[0] == "sensor_status" and kinds[-2:] == ["sensor_status", "summary"]
    assert lines[-2]["status"] == "stopped"  # the demo is live: it was stopped by --duration
    summary = lines[-1]["summary"]
    assert set(summary) >= {"frames", "frames_with_pose", "windows", "tracks", "dropped"} and summary["frames"] > 0
    decisions = [e for e in lines if e["event"] == "identity"]
    assert decisions and summary["decisions"] == len(decisions)
    assert {d["identity"] for d in decisions} & set(DEMO_PEOPLE)
    assert all("identity" not in e for e in lines if e["event"] != "identity")
    # Every track starts before its decisions, and a track that ended had its verdicts first.
    started = {e["track"]: e["seq"] for e in lines if e["event"] == "track_started"}
    ended = {e["track"]: e["seq"] for e in lines if e["event"] == "track_ended"}
    assert ended and set(ended) <= set(started)
    for d in decisions:
        assert started[d["track"]] < d["seq"] < ended.get(d["track"], float("inf"))


def test_list_sensors_says_what_is_usable(capsys):
    assert main(["--list-sensors"]) == 0
    assert "demo: available" in capsys.readouterr().out


def test_the_window_saves_a_screenshot_and_prints_the_same_events_as_headless(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    shot = tmp_path / "app.png"
    assert main(["--duration", "4", "--screenshot", str(shot)]) == 0
    drawn = json.loads((tmp_path / "app.png.json").read_text())
    assert shot.stat().st_size > 10_000 and drawn["status"]["source"] == "demo"
    assert all({"track", "label", "joints"} <= set(t) for t in drawn["tracks"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for line in lines:
        jsonschema.validate(line, SCHEMA)
    kinds = [e["event"] for e in lines]
    assert kinds[0] == "sensor_status" and kinds[-1] == "summary" and "track_started" in kinds
    assert [e["seq"] for e in lines] == sorted(e["seq"] for e in lines)


def test_without_a_display_the_app_says_so_and_runs_headless(monkeypatch, capsys, caplog):
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(var, raising=False)
    assert main(["--duration", "3"]) == 0
    assert "running headless" in caplog.text
    assert "summary" in capsys.readouterr().out.strip().splitlines()[-1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_a_live_run_with_a_true_summary_and_exit_0(sig, tmp_path):
    """How services are stopped (SIGTERM) and Ctrl-C (SIGINT): the run drains and says what it did."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "QT_QPA_PLATFORM": "", "DISPLAY": ""}
    child = subprocess.Popen([sys.executable, str(root / "main.py"), "--headless",
                              "--log-level", "WARNING"], cwd=tmp_path, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        kinds = []
        while not kinds or kinds[-1] != "identity":  # a first decision: the demo has been running a while
            line = child.stdout.readline()
            assert line, "the run ended before its first decision"
            kinds.append(json.loads(line)["event"])
        time.sleep(1.0)
        child.send_signal(sig)
        rest, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 0, err
    summary = json.loads(rest.strip().splitlines()[-1])["summary"]
    assert summary["frames"] > 60 and summary["frames_with_pose"] > 0 and summary["windows"] > 0


def test_several_sources_in_one_process_share_one_encoder_and_each_is_its_own_camera(tmp_path, capsys):
    """Two recordings replayed side by side: each source's events carry its camera id and end
    with its own summary, each names its walker, and one encoder thread served both."""
    import gaitcam

    gallery = tmp_path / "site.db"
    with gaitcam.open_session(gallery=gallery, device="cpu") as session:
        for name in ("Ada", "Ben"):
            session.enroll(name, DEMO_DIR / f"{name}.gaitrec")
    ada, ben = (str(DEMO_DIR / f"{n}.gaitrec") for n in ("Ada", "Ben"))
    assert main(["--sensor", "replay", "--source", ada, "--source", ben, "--camera", "door-a", "--camera",
                 "door-b", "--speed", "0", "--headless", "--gallery", str(gallery)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    for line in lines:
        jsonschema.validate(line, SCHEMA)
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))  # one stream, two cameras
    for camera, name in (("door-a", "Ada"), ("door-b", "Ben")):
        mine = [e for e in lines if e["camera"] == camera]
        assert [e["event"] for e in mine][-2:] == ["sensor_status", "summary"] and mine[-2]["status"] == "ended"
        assert {e["identity"] for e in mine if e["event"] == "identity"} == {name}
        assert mine[-1]["summary"]["frames"] > 0
    # Ada and Ben walked past two doors at the same time, each several times: every pass got a
    # cross-camera decision, and none linked one door's walker to the other's.
    links = [e for e in lines if e["event"] == "link"]
    ended = {(e["camera"], e["track"]) for e in lines if e["event"] == "track_ended"}
    assert links and {(e["to_camera"], e["to_track"]) for e in links} <= ended
    assert not any(e["linked"] for e in links) and {e["camera"] for e in links} == {"site"}
    assert main(["--sensor", "replay", "--source", ada, "--source", ben, "--camera", "door-a", "--headless"]) == 2
    assert "give one per --source" in capsys.readouterr().err


def test_a_walker_who_leaves_one_camera_and_enters_the_next_keeps_one_site_id(tmp_path):
    """A stranger (nobody is enrolled) passes door A several times, then door B as often: the
    linker, fed by the session's two cameras, links every pass at B to one at A (one to one),
    by gait, and says so in `link` events."""
    import gaitcam
    from gaitcam.sensors.replay import ReplaySource

    with gaitcam.open_session(gallery=tmp_path / "g.db", device="cpu", camera="site") as session:
        a = session.live(ReplaySource(DEMO_DIR / "Dev.gaitrec", speed=0), camera="door-a")
        b = session.live(ReplaySource(DEMO_DIR / "Dev.gaitrec", speed=0), camera="door-b")
        a.run()
        b.run()
        session.flush_links()
        events = list(session.events())
    links = [e for e in events if e["event"] == "link"]
    for e in links:
        jsonschema.validate(e, SCHEMA)
    at_a = [e for e in links if e["to_camera"] == "door-a"]
    at_b = [e for e in links if e["to_camera"] == "door-b"]
    assert len(at_a) >= 3 and not any(e["linked"] for e in at_a)  # nobody came from elsewhere
    assert len(at_b) == len(at_a) and all(e["linked"] and e["from_camera"] == "door-a" for e in at_b)
    assert all(e["score"] >= e["threshold"] and e["basis"] == "gait" for e in at_b)
    assert sorted(e["site_id"] for e in at_b) == sorted(e["site_id"] for e in at_a)  # one to one


def test_live_runs_of_one_session_share_its_encoder_thread(tmp_path):
    import gaitcam
    from gaitcam.sensors.replay import ReplaySource

    with gaitcam.open_session(gallery=tmp_path / "g.db", device="cpu") as session:
        a = session.live(ReplaySource(DEMO_DIR / "Ada.gaitrec", speed=0), camera="a")
        b = session.live(ReplaySource(DEMO_DIR / "Ben.gaitrec", speed=0), camera="b")
        assert a.pipeline._worker.worker is b.pipeline._worker.worker
        a.start()
        b.start()
        assert a.join(60).windows > 0 and b.join(60).windows > 0
        assert a.pipeline.encoder_stats.encoded == a.stats.windows and b.pipeline.encoder_stats.encoded == b.stats.windows


def test_fov_reaches_the_image_sources_and_is_refused_for_depth_sensors(capsys):
    import argparse

    from gaitcam.cli.live import make_source

    video = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "media" / "vtest.avi")
    args = argparse.Namespace(sensor="video", speed=1.0, fov=36.0)
    assert make_source(args, gui=False, source=video).horizontal_fov == 36.0
    assert main(["--sensor", "replay", "--source", str(DEMO_DIR / "Ada.gaitrec"), "--fov", "40", "--headless"]) == 2
    assert "--fov: only for the video and webcam sensors" in capsys.readouterr().err
