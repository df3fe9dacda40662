"""One site id across camera processes: camera processes (`--site-links`) store their ended tracks
as sealed sightings in the shared gallery, and one linker (`SiteLinker`, `main.py link`) follows
them. On both stores: the same person linked and two people not, each sighting read once,
sealed, deleted once expired, bad rows counted and skipped; end to end with two Sessions and a
real second process replaying the demo walks; the command with --duration and with SIGTERM."""
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import gaitcam
from gaitcam.cli import main
from gaitcam.config import DEMO_DIR
from gaitcam.errors import GaitcamError
from gaitcam.events import SCHEMA, EventBus
from gaitcam.identity import protect, sightings
from gaitcam.identity.gallery import open_store
from gaitcam.identity.handoff import Linker
from gaitcam.identity.sightings import Sighting, SightingStore, SightingWriter, SiteLinker, report
from test_gallery import file_windows, gallery_files, leaks
from test_handoff import params, person  # noqa: F401 (params: test_handoff's synthetic matcher, a fixture)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request, tmp_path):
    """The site's gallery: a SQLite file, or a database on the test PostgreSQL server."""
    return str(tmp_path / "site.db") if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def seen(camera: str, track: int, start: float, end: float, who: int, params, identity=None) -> Sighting:
    """A track of synthetic person `who` (its own noise per camera and track)."""
    return Sighting(camera, track, start, end, params.template_version, identity,
                    person(who, 0.02, 100 * ord(camera[-1]) + track))


def walks(params, t0: float) -> tuple[list[Sighting], list[Sighting]]:
    """Camera A's process sees persons 0 and 1; camera B's then sees person 0 again (a transit
    of 5 s) and person 2, whom nobody saw before."""
    return ([seen("door-a", 1, t0, t0 + 5, 0, params), seen("door-a", 2, t0 + 1, t0 + 6, 1, params)],
            [seen("door-b", 1, t0 + 10, t0 + 15, 0, params), seen("door-b", 2, t0 + 12, t0 + 16, 2, params)])


def test_the_site_linker_links_the_same_person_across_processes_and_never_two_people(where, params):
    bus = EventBus("site")
    out = bus.subscribe()
    a_walks, b_walks = walks(params, time.time() - 60)
    with open_store(where) as a, open_store(where) as b, open_store(where) as site:  # three processes
        SightingStore(a).add(a_walks)
        SightingStore(b).add(b_walks)
        linker = SiteLinker(site, params, bus.publish, wait=5.0)
        links = linker.step() + linker.flush()
        assert linker.step() == [] and linker.counts.sightings == 4  # nothing is read twice
        later = seen("door-a", 3, time.time() - 2, time.time() - 1, 2, params)  # person 2 back at A
        SightingStore(a).add([later])
        (back,) = linker.step() + linker.flush()
        assert linker.counts.sightings == 5
    by_track = {(link.to_camera, link.to_track): link for link in links}
    assert by_track[("door-b", 1)].linked and by_track[("door-b", 1)].from_track == 1
    assert by_track[("door-b", 1)].site_id == by_track[("door-a", 1)].site_id and by_track[("door-b", 1)].basis == "gait"
    assert not by_track[("door-b", 2)].linked and by_track[("door-b", 2)].score < 0.5
    assert len({link.site_id for link in links}) == 3  # persons 0, 1 and 2
    assert not back.linked and back.score is None  # 40 s after person 2's last track: outside the window
    # The decisions a process linking its own cameras makes from the same tracks.
    own = Linker(params, wait=5.0)
    expected = [link for s in sorted(a_walks + b_walks, key=lambda s: s.end) for link in report(own, s)]
    assert [link.fields() for link in links] == [link.fields() for link in expected + own.flush()]
    bus.close()
    events = list(out)
    assert [e["event"] for e in events] == ["link"] * 5 and {e["camera"] for e in events} == {"site"}
    for e in events:
        jsonschema.validate(e, SCHEMA)
        assert "identity" not in e


def test_names_the_gallery_gave_decide_across_processes_too(tmp_path, params):
    t0 = time.time() - 60
    with open_store(tmp_path / "g.db") as g:
        SightingStore(g).add([seen("door-a", 1, t0, t0 + 5, 0, params, identity="Ada"),
                              seen("door-b", 1, t0 + 8, t0 + 12, 0, params, identity="Ben")])
        linker = SiteLinker(g, params, wait=5.0)
        links = linker.step() + linker.flush()
    assert [(link.to_camera, link.linked, link.basis, link.score) for link in links] == [
        ("door-a", False, None, None), ("door-b", False, "identity", 0.0)]


def sealed_rows(where: str) -> list[bytes]:
    with open_store(where) as g, g._transaction(write=False) as c:
        return [bytes(blob) for (blob,) in c.execute("SELECT evidence FROM sightings ORDER BY id")]


def test_sightings_are_sealed_in_the_store(where, params, request):
    descriptor = np.random.default_rng(7).normal(size=16)
    s = Sighting("door-a", 1, time.time() - 10, time.time() - 5, params.template_version, "Zebulon Quartermaine",
                 descriptor)
    with open_store(where) as g:
        SightingStore(g).add([s])
        ((_, _, back),) = SightingStore(g).since(0)
    np.testing.assert_array_equal(back.descriptor, descriptor)  # float64, as the linker compares it
    assert back.identity == "Zebulon Quartermaine" and (back.camera, back.track) == ("door-a", 1)
    assert "Quartermaine" not in repr(back) and "descriptor" not in repr(back)
    (blob,) = sealed_rows(where)
    plain = [descriptor.astype("<f8").tobytes(), descriptor.astype("<f4").tobytes()]
    if where.startswith("postgresql"):
        from test_postgres import table_files

        files = table_files(request.getfixturevalue("postgres_server"), where)
        assert blob[:64] in files  # the search finds what is stored
        assert not any(p[:32] in files for p in plain) and b"Quartermaine" not in files
    else:
        runs = file_windows(gallery_files(Path(where)))
        assert leaks(blob, runs)
        assert not any(leaks(p, runs) for p in plain)
        assert not any(b"Quartermaine" in p.read_bytes() for p in gallery_files(Path(where)) if p.exists())


def count(where: str) -> int:
    with open_store(where) as g:
        return len(SightingStore(g).since(0))


def test_sightings_older_than_keep_are_deleted_by_writers_and_by_the_linker(where, params):
    now = time.time()
    old = seen("door-a", 1, now - 200, now - 190, 0, params)  # ended long before the linker's 120 s
    with open_store(where) as camera, open_store(where) as site:
        store = SightingStore(camera)
        store.add([old])
        assert count(where) == 1
        store.add([seen("door-a", 2, now - 5, now - 1, 1, params)])  # the writer deletes the expired
        assert count(where) == 1
        store.add([old])
        linker = SiteLinker(site, params)
        linker.step()  # the linker deletes what it read once it has expired
        assert count(where) == 1 and linker.counts.sightings == 2
        SightingStore(site, keep=0.0).purge()  # all gone: a new row still gets an id never read
        assert count(where) == 0
        store.add([seen("door-b", 1, now - 2, now - 1, 0, params)])
        linker.step()
        assert linker.counts.sightings == 3


def test_bad_sightings_are_counted_and_skipped_with_one_warning_each(where, params, monkeypatch, caplog):
    """Sealed with another key (or altered), of another matcher, or a track reported again (its
    camera's process restarted): skipped, never fatal, the rest linked."""
    a_walks, b_walks = walks(params, time.time() - 60)
    other = protect.Key(os.urandom(protect.KEY_BYTES), None)
    with open_store(where) as camera, open_store(where) as site:
        store = SightingStore(camera)
        store.add(a_walks)
        with monkeypatch.context() as m:
            m.setattr(camera, "_current_key", lambda c: other)
            store.add([seen("door-c", 1, time.time() - 9, time.time() - 8, 0, params)] * 2)
        store.add([Sighting("door-c", 2, time.time() - 9, time.time() - 8, "another/d3", None, person(0))])
        store.add([*b_walks, a_walks[0]])
        linker = SiteLinker(site, params, wait=5.0)
        with caplog.at_level(logging.WARNING):
            links = linker.step() + linker.flush()
    n = linker.counts
    assert (n.sightings, n.unreadable, n.other_version, n.repeated) == (4, 2, 1, 1)
    assert sum(link.linked for link in links) == 1 and len(links) == 4
    warnings = [r.getMessage() for r in caplog.records if r.name == "gaitcam.identity.sightings"]
    assert len(warnings) == 3 and any("does not open with the gallery key" in w for w in warnings)


def test_before_any_camera_writes_the_linker_waits(where, params):
    with open_store(where) as camera, open_store(where) as site:
        linker = SiteLinker(site, params, wait=5.0)
        assert linker.step() == [] and linker.flush() == []
        with site._transaction(write=False) as c:
            assert "sightings" not in site._tables(c)  # reading creates nothing
        a_walks, _ = walks(params, time.time() - 60)
        SightingStore(camera).add(a_walks)
        assert len(linker.step()) == 2


def test_a_lost_store_is_retried_with_backoff_and_the_linker_keeps_its_state(tmp_path, params, monkeypatch,
                                                                          caplog):
    a_walks, b_walks = walks(params, time.time() - 60)
    with open_store(tmp_path / "g.db") as g:
        SightingStore(g).add(a_walks)
        linker = SiteLinker(g, params, wait=5.0)
        linker.step()
        read = linker.store.since
        fails = iter(range(3))

        def lost(last: int):
            if next(fails, None) is not None:
                raise GaitcamError("postgresql://gaitcam@db:5432/site: gallery server: connection refused")
            return read(last)
        monkeypatch.setattr(linker.store, "since", lost)
        monkeypatch.setattr(sightings, "RETRY_S", (0.05, 0.1))
        SightingStore(g).add(b_walks)
        with caplog.at_level(logging.WARNING):
            linker.run(duration=1.0)
    assert caplog.text.count("keeps its state and retries") == 3
    assert linker.counts.sightings == 4 and linker.counts.linked == 1  # door-b 1 linked to door-a 1, read before


def test_a_camera_keeps_its_sightings_while_the_store_is_away_and_drops_the_expired(tmp_path, params, monkeypatch,
                                                                                   caplog):
    monkeypatch.setattr(sightings, "RETRY_S", (0.05, 0.1))
    now = time.time()
    with open_store(tmp_path / "g.db") as g:
        store = SightingStore(g)
        add, fails = store.add, iter(range(2))

        def away(batch):
            if next(fails, None) is not None:
                raise GaitcamError("postgresql://gaitcam@db:5432/site: gallery server: connection refused")
            add(batch)
        monkeypatch.setattr(store, "add", away)
        writer = SightingWriter(store)
        with caplog.at_level(logging.WARNING):
            writer.put(seen("door-a", 1, now - 300, now - 200, 0, params))  # no linker could use it any more
            writer.put(seen("door-a", 2, now - 5, now - 1, 0, params))
            assert writer.flush(5.0)
            writer.close()
        ((_, _, kept),) = store.since(0)
    assert kept.track == 2 and caplog.text.count("retrying in") == 2 and "1 dropped" in caplog.text


def saved_matcher(params, folder: Path) -> str:
    params.save(folder / "w.matcher.json")
    return str(folder / "w")


def test_the_link_command_prints_link_events_and_ends_after_duration(where, params, tmp_path, capsys, caplog):
    a_walks, b_walks = walks(params, time.time() - 60)
    with open_store(where) as g:
        SightingStore(g).add(a_walks + b_walks)
    with caplog.at_level(logging.INFO):
        assert main(["link", "--gallery", where, "--weights", saved_matcher(params, tmp_path), "--duration", "0.3",
                     "--wait", "5", "--window", "0", "30", "--threshold", "0.5"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for e in events:
        jsonschema.validate(e, SCHEMA)
    linked = [(e["from_camera"], e["from_track"], e["to_camera"], e["to_track"]) for e in events if e["linked"]]
    assert len(events) == 4 and linked == [("door-a", 1, "door-b", 1)]
    assert "summary: 4 sighting(s) read, 4 decision(s), 1 linked" in caplog.text
    assert main(["link", "--gallery", where, "--window", "30", "0"]) == 2
    assert "start lies after its end" in capsys.readouterr().err
    assert main(["--site-links", "--headless"]) == 2  # the demo's own gallery: no linker would read it
    assert "give the site's --gallery" in capsys.readouterr().err


def test_the_link_command_ends_cleanly_on_sigterm_deciding_what_waits(tmp_path, params):
    gallery = tmp_path / "g.db"
    child = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "link", "--gallery", str(gallery), "--weights",
                              saved_matcher(params, tmp_path)], cwd=tmp_path, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        while "linking the sightings of" not in (line := child.stderr.readline()):
            assert line, "the linker ended before it started"
        a_walks, b_walks = walks(params, time.time() - 17)  # decided 20 s after they end: not yet
        with open_store(gallery) as g:
            SightingStore(g).add(a_walks + b_walks)
        time.sleep(1.0)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    finally:
        child.kill()
    assert child.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events] == ["link"] * 4 and sum(e["linked"] for e in events) == 1
    assert "summary: 4 sighting(s) read" in err


# -- end to end: live camera processes replaying the demo walks -----------------------------------

def replay(session, camera: str, who: str = "Dev") -> None:
    from gaitcam.sensors.replay import ReplaySource

    session.live(ReplaySource(DEMO_DIR / f"{who}.gaitrec", speed=0), camera=camera).run()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A stranger (nobody is enrolled) walks past door A (a Session), door B (another OS process:
    `main.py --site-links`), then doors C and D (one more Session, with two sources)."""
    gallery = str(tmp_path_factory.mktemp("site") / "site.db")
    with gaitcam.open_session(gallery=gallery, device="cpu", camera="door-a", site_links=True) as a:
        replay(a, "door-a")
        a_events = list(a.events())
    b = subprocess.run([sys.executable, str(ROOT / "main.py"), "--sensor", "replay", "--source",
                        str(DEMO_DIR / "Dev.gaitrec"), "--speed", "0", "--headless", "--gallery", gallery,
                        "--camera", "door-b", "--site-links", "--log-level", "WARNING"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert b.returncode == 0, b.stderr
    b_events = [json.loads(line) for line in b.stdout.splitlines()]
    with gaitcam.open_session(gallery=gallery, device="cpu", camera="doors-cd", site_links=True) as cd:
        replay(cd, "door-c")
        replay(cd, "door-d")
        cd_events = list(cd.events())
        params = cd.models.params
    bus = EventBus("site")
    out = bus.subscribe()
    with open_store(gallery) as g:
        linker = SiteLinker(g, params, bus.publish)
        linker.step()
        linker.flush()
    bus.close()
    return {"camera": a_events + b_events + cd_events, "link": list(out), "counts": linker.counts}


def test_tracks_of_camera_processes_are_linked_by_the_site_linker(site):
    ended = [(e["camera"], e["track"]) for e in site["camera"] if e["event"] == "track_ended"]
    assert not any(e["event"] == "link" for e in site["camera"])  # no camera process links, two sources or not
    links = site["link"]
    for e in links:
        jsonschema.validate(e, SCHEMA)
    assert {(e["to_camera"], e["to_track"]) for e in links} <= set(ended) and site["counts"].sightings == len(links)
    door = {c: [e for e in links if e["to_camera"] == c] for c in ("door-a", "door-b", "door-c", "door-d")}
    assert len(door["door-a"]) >= 3 and not any(e["linked"] for e in door["door-a"])
    for before, after in (("door-a", "door-b"), ("door-b", "door-c"), ("door-c", "door-d")):
        assert len(door[after]) == len(door["door-a"])
        assert all(e["linked"] and e["from_camera"] == before and e["basis"] == "gait" for e in door[after])
        # one to one: the site ids carry on from door to door
        assert sorted(e["site_id"] for e in door[after]) == sorted(e["site_id"] for e in door["door-a"])


def test_a_session_on_postgresql_stores_its_sightings_for_the_site_linker(postgres_url):
    with gaitcam.open_session(gallery=postgres_url, device="cpu", camera="door-a", site_links=True) as session:
        replay(session, "door-a")
        replay(session, "door-b")
        params = session.models.params
        assert not any(e["event"] == "link" for e in session.events())
    with open_store(postgres_url) as g:
        linker = SiteLinker(g, params)
        links = linker.step() + linker.flush()
    at_a = [link for link in links if link.to_camera == "door-a"]
    at_b = [link for link in links if link.to_camera == "door-b"]
    assert len(at_a) >= 3 and len(at_b) == len(at_a) and all(link.linked for link in at_b)
    assert not any(link.linked for link in at_a)
