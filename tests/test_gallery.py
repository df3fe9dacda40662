"""The gallery: enrolments round-trip, are atomic and durable, and removal leaves no bytes."""
import hashlib
import json
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from gaitcam.cli import main
from gaitcam.config import Config
from gaitcam.errors import FormatError, GaitcamError
from gaitcam.identity.export import write_export
from gaitcam.identity.gallery import Gallery, RecordingRef, Template, open_store
from gaitcam.identity.postgres import PostgresGallery
from gaitcam.identity.protect import KEY_ENV, Key
from gaitcam.recording import native, sealed
from gaitcam.recording.native import is_sealed, read_native, write_native
from test_native import assert_same_tracks, synthetic_recording

REPO = Path(__file__).resolve().parents[1]


def vecs(seed: int, count: int = 4, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)


def tpl(seed: int, kind: str = "age", version: str = "v1", sensor: str = "kinect", **kw) -> Template:
    return Template(kind, version, sensor, vecs(seed, **kw))


def rec(path: Path, content: bytes = b"walk", track: int | None = None) -> RecordingRef:
    path.write_bytes(content)
    return RecordingRef.from_file(path, "kinect", track)


def pragma(path: Path, name: str) -> object:
    """Read a PRAGMA through a connection of our own, as another process would see the file."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def gallery(request, tmp_path):
    """The store-independent tests run on both stores: a SQLite file and a real PostgreSQL server."""
    where = tmp_path / "g.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    with open_store(where) as g:
        yield g


@pytest.fixture
def sqlite_gallery(tmp_path):
    with Gallery(tmp_path / "g.db") as g:
        yield g


def run_sql(gallery: Gallery, sql: str, params: tuple = ()) -> list[tuple]:
    """A statement on the gallery's own database through a connection of our own (another
    program's, or an attacker's with write access to the database), committed."""
    if isinstance(gallery, PostgresGallery):
        import psycopg

        with psycopg.connect(gallery._conninfo, autocommit=True) as db:
            cur = db.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
    with sqlite3.connect(gallery.path) as db:
        rows = db.execute(sql, params).fetchall()
    db.close()
    return rows


def test_enrolments_round_trip_append_and_replace(gallery):
    gallery.enroll("Bo", [tpl(1), tpl(2, kind="shape", dim=3)])
    assert gallery.enroll("Al", [tpl(3)]) == 1
    assert gallery.enroll("Al", [tpl(4, count=2)]) == 2  # a second walk appends
    names, arrays = gallery.templates("age", "v1")
    assert names == ["Al", "Al", "Bo"]
    for a, expected in zip(arrays, (vecs(3), vecs(4, count=2), vecs(1)), strict=True):
        assert a.dtype == np.float32 and a.flags.writeable
        np.testing.assert_array_equal(a, expected)
    assert gallery.templates("shape", "v1")[0] == ["Bo"]
    assert gallery.enroll("Al", [tpl(5)], replace=True) == 1
    names, arrays = gallery.templates("age", "v1")
    assert names == ["Al", "Bo"]
    np.testing.assert_array_equal(arrays[0], vecs(5))


def test_templates_never_print_their_vectors(caplog):
    t = Template("age", "v1", "kinect", np.full((3, 5), 7777.25, dtype=np.float32))
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("enrolling %s %r", t, [t])
    for text in (repr(t), str(t), caplog.text):
        assert "7777" not in text
    assert "3x5" in repr(t)


def test_template_rejects_what_is_not_a_vector_matrix():
    with pytest.raises(ValueError, match="matrix"):
        Template("age", "v1", "kinect", np.zeros(8))
    with pytest.raises(ValueError, match="finite"):
        Template("age", "v1", "kinect", np.full((2, 2), np.nan))


def test_people_and_recordings(gallery, tmp_path):
    walk = rec(tmp_path / "walk.txt")
    gallery.enroll("Al", [tpl(1)], walk)
    gallery.enroll("Al", [tpl(2, version="v2", sensor="azure")], walk)  # same recording again
    gallery.enroll("Bo", [tpl(3)], rec(tmp_path / "b.txt", b"other", track=2))
    al, bo = gallery.people()
    assert (al.name, al.n_templates, al.n_recordings) == ("Al", 2, 1)
    assert al.sensors == ("azure", "kinect") and al.encoder_versions == ("v1", "v2")
    assert al.created.tzinfo is not None
    assert gallery.recordings("Al") == [walk]
    assert gallery.recordings("Bo")[0].track == 2
    assert walk.sha256 == hashlib.sha256(b"walk").hexdigest()


def test_recording_paths_are_stored_absolute(gallery, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("w.txt").write_bytes(b"x")
    gallery.enroll("Al", [tpl(1)], RecordingRef.from_file("w.txt", "kinect"))
    assert gallery.recordings("Al")[0].path == tmp_path / "w.txt"


def test_versions_and_stale(gallery):
    gallery.enroll("Al", [tpl(1, version="old")])
    gallery.enroll("Bo", [tpl(2, version="new")])
    gallery.enroll("Cy", [tpl(3, version="new"), tpl(4, version="old")])
    assert gallery.versions() == {"old", "new"}
    assert gallery.stale("new") == ["Al", "Cy"]
    assert gallery.templates("age", "new")[0] == ["Bo", "Cy"]
    with pytest.raises(GaitcamError, match="several encoder versions"):
        gallery.templates("age")
    assert gallery.templates("none") == ([], [])


def test_rename_and_user_errors(gallery):
    gallery.enroll("Al", [tpl(1)])
    gallery.enroll("Bo", [tpl(2)])
    gallery.rename("Al", "Alice")
    assert gallery.templates("age")[0] == ["Alice", "Bo"]
    for call, match in [
        (lambda: gallery.rename("Nobody", "X"), "no one named 'Nobody'"),
        (lambda: gallery.rename("Alice", "Bo"), "already in the gallery"),
        (lambda: gallery.rename("Alice", " Al"), "invalid name"),
        (lambda: gallery.enroll("", [tpl(3)]), "invalid name"),
        (lambda: gallery.enroll("Cy", []), "no templates"),
        (lambda: gallery.remove("Nobody"), "no one named"),
        (lambda: gallery.recordings("Nobody"), "no one named"),
    ]:
        with pytest.raises(GaitcamError, match=match) as e:
            call()
        assert "\n" not in str(e.value)


def test_remove_returns_and_deletes_only_its_own_recordings(gallery, tmp_path):
    own, shared = rec(tmp_path / "own.txt"), rec(tmp_path / "two.txt", b"two people", track=1)
    gallery.enroll("Al", [tpl(1)], own)
    gallery.enroll("Al", [tpl(2)], shared)
    gallery.enroll("Bo", [tpl(3)], RecordingRef(shared.path, shared.sha256, "kinect", 2))
    assert gallery.remove("Al", delete_recordings=True) == [own.path]
    assert not own.path.exists() and shared.path.exists()
    assert [p.name for p in gallery.people()] == ["Bo"]
    assert gallery.remove("Bo") == [shared.path] and shared.path.exists()


def file_windows(paths: list[Path]) -> set[bytes]:
    """Every 16-byte run in the files, to look a blob's runs up in linear time."""
    runs = set()
    for p in paths:
        data = p.read_bytes() if p.exists() else b""
        runs.update(data[i:i + 16] for i in range(len(data) - 15))
    return runs


def leaks(blob: bytes, runs: set[bytes]) -> bool:
    return any(blob[i:i + 16] in runs for i in range(len(blob) - 15))


def stored(path: Path, name: str) -> list[bytes]:
    """The template blobs of `name` as they lie in the file (sealed)."""
    conn = sqlite3.connect(path)
    try:
        return [b for (b,) in conn.execute("SELECT t.vectors FROM templates t JOIN people p ON p.id = t.person_id"
                                           " WHERE p.name = ? ORDER BY t.id", (name,))]
    finally:
        conn.close()


def journal(path: Path) -> int:
    """How many scrubs the gallery's journal says are still owed."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM pending_scrub").fetchone()[0]
    finally:
        conn.close()


def gallery_files(path: Path) -> list[Path]:
    return [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]


def test_templates_never_reach_the_files_in_plaintext(sqlite_gallery, tmp_path):
    gallery = sqlite_gallery
    al, bo = vecs(10, count=16, dim=32), vecs(11, count=16, dim=32)
    gallery.enroll("Al", [Template("age", "v1", "kinect", al)])
    gallery.enroll("Bo", [Template("age", "v1", "kinect", bo)])
    runs = file_windows(gallery_files(tmp_path / "g.db"))
    (sealed,) = stored(tmp_path / "g.db", "Al")
    assert len(sealed) == 28 + al.nbytes and leaks(sealed, runs)  # the search finds what is stored
    assert not leaks(al.tobytes(), runs) and not leaks(bo.tobytes(), runs)
    np.testing.assert_array_equal(gallery.templates("age")[1][0], al)


def test_remove_leaves_no_bytes_in_the_files(sqlite_gallery, tmp_path):
    gallery = sqlite_gallery
    al, bo = vecs(10, count=16, dim=32), vecs(11, count=16, dim=32)
    gallery.enroll("Zebulon Quartermaine", [Template("age", "v1", "kinect", al)])
    gallery.enroll("Bo", [Template("age", "v1", "kinect", bo)])
    files = gallery_files(tmp_path / "g.db")
    (sealed,) = stored(tmp_path / "g.db", "Zebulon Quartermaine")
    assert leaks(sealed, file_windows(files))
    gallery.remove("Zebulon Quartermaine")
    runs = file_windows(files)
    assert not leaks(sealed, runs) and not leaks(al.tobytes(), runs)
    assert not any(b"Quartermaine" in p.read_bytes() for p in files if p.exists())
    assert leaks(stored(tmp_path / "g.db", "Bo")[0], runs)
    assert gallery.templates("age")[0] == ["Bo"]
    assert pragma(tmp_path / "g.db", "freelist_count") == 0  # no free pages kept
    assert journal(tmp_path / "g.db") == 0


def test_replaced_templates_leave_no_bytes_either(sqlite_gallery, tmp_path):
    gallery = sqlite_gallery
    gallery.enroll("Al", [tpl(1, count=16, dim=32)])
    old = stored(tmp_path / "g.db", "Al")[0]
    gallery.enroll("Al", [tpl(2)], replace=True)
    assert not leaks(old, file_windows(gallery_files(tmp_path / "g.db")))
    np.testing.assert_array_equal(gallery.templates("age")[1][0], vecs(2))


def test_a_template_swapped_between_people_does_not_decrypt(gallery):
    gallery.enroll("Al", [tpl(1)])
    gallery.enroll("Bo", [tpl(2)])  # same kind, version, sensor and shape: only the owner differs
    (al, bo) = run_sql(gallery, "SELECT vectors FROM templates ORDER BY person_id")
    run_sql(gallery, "UPDATE templates SET vectors = ? WHERE person_id = 1", bo)
    run_sql(gallery, "UPDATE templates SET vectors = ? WHERE person_id = 2", al)
    with pytest.raises(GaitcamError, match="'age' template does not decrypt"):
        gallery.templates("age")
    with pytest.raises(GaitcamError, match="'age' template does not decrypt"):
        gallery.export("Al")
    gallery.rename("Al", "Alan")  # a rename keeps what a template is bound to


def test_a_rename_keeps_templates_readable_through_a_rekey(gallery):
    gallery.enroll("Al", [tpl(1)])
    gallery.rename("Al", "Alan")
    gallery.rekey()
    assert gallery.templates("age")[0] == ["Alan"]
    np.testing.assert_array_equal(gallery.templates("age")[1][0], vecs(1))


def test_a_template_moved_to_another_row_does_not_decrypt(gallery):
    gallery.enroll("Al", [tpl(1)])
    gallery.enroll("Bo", [tpl(2, version="v2")])  # same shape, another meaning
    run_sql(gallery, "UPDATE templates SET vectors = (SELECT vectors FROM templates WHERE encoder_version = 'v2')"
                     " WHERE encoder_version = 'v1'")
    with pytest.raises(GaitcamError, match="template does not decrypt"):
        gallery.templates("age", "v1")


def test_remove_says_when_another_reader_delays_the_scrub(tmp_path, caplog):
    with Gallery(tmp_path / "g.db", timeout=0.1) as g:
        g.enroll("Al", [tpl(1)])
        g.enroll("Bo", [tpl(2)])
        reader = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM templates").fetchone()  # holds a snapshot
        (sealed,) = stored(tmp_path / "g.db", "Al")
        with pytest.raises(GaitcamError, match="another process has the gallery open"):
            g.remove("Al")
        reader.close()
        assert [p.name for p in g.people()] == ["Bo"]
    assert journal(tmp_path / "g.db") == 1  # the scrub is still owed
    with caplog.at_level(logging.WARNING), Gallery(tmp_path / "g.db"):  # so the next open does it
        assert "finishing the scrub" in caplog.text
    assert journal(tmp_path / "g.db") == 0
    assert not leaks(sealed, file_windows(gallery_files(tmp_path / "g.db")))


def test_writers_wait_for_each_other_then_give_up(tmp_path):
    path = tmp_path / "g.db"
    Gallery(path).close()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    with Gallery(path, timeout=0.1) as g:
        with pytest.raises(GaitcamError, match="busy"):
            g.enroll("Al", [tpl(1)])
    threading.Timer(0.2, other.commit).start()
    with Gallery(path, timeout=5) as g:
        g.enroll("Al", [tpl(1)])
        assert g.templates("age")[0] == ["Al"]
    other.close()


def test_one_gallery_serves_several_threads(gallery):
    gallery.enroll("Al", [tpl(1)])
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(gallery.templates("age")[0])) for _ in range(4)]
    for t in threads:
        t.start()
    gallery.enroll("Bo", [tpl(2)])
    for t in threads:
        t.join()
    assert len(seen) == 4 and all(names[0] == "Al" for names in seen)


def test_files_are_private(tmp_path):
    path = tmp_path / "new" / "g.db"
    with Gallery(path) as g:
        g.enroll("Al", [tpl(1)])
        for p in (path, path.with_name("g.db-wal")):
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert pragma(path, "journal_mode") == "wal"


def test_foreign_files_are_clear_errors(tmp_path):
    (tmp_path / "text.db").write_text("hello, not a database " * 10)
    with pytest.raises(GaitcamError, match="text.db: gallery file is not a database"):
        Gallery(tmp_path / "text.db")
    other = sqlite3.connect(tmp_path / "other.db")
    other.execute("CREATE TABLE t (x)")
    other.close()
    with pytest.raises(GaitcamError, match="not a gaitcam gallery"):
        Gallery(tmp_path / "other.db")
    Gallery(tmp_path / "new.db").close()
    for version, says in (("99", "newer gaitcam"), ("abc", "not a gaitcam gallery .schema version 'abc'")):
        with sqlite3.connect(tmp_path / "new.db") as db:  # commits on leaving
            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
        db.close()
        with pytest.raises(GaitcamError, match=says):
            Gallery(tmp_path / "new.db")
    (tmp_path / "file").write_text("")
    with pytest.raises(GaitcamError, match="cannot create gallery"):
        Gallery(tmp_path / "file" / "g.db")
    with pytest.raises(GaitcamError, match="cannot read recording"):
        RecordingRef.from_file(tmp_path / "missing.txt", "kinect")


# The child enrolls big templates person after person and reports each commit; for the last
# person a trace hook pauses it inside the enrolment's transaction, where the test kills it.
CHILD = """
import sys, time
import numpy as np
from gaitcam.identity.gallery import Gallery, RecordingRef, Template

g = Gallery(sys.argv[1])
def pause_in_template_insert(sql):
    if sql.startswith("INSERT INTO templates"):
        print("inside", flush=True)
        time.sleep(60)
for i in range(4):
    if i == 3:
        g._conn.set_trace_callback(pause_in_template_insert)
    rng = np.random.default_rng(i)
    big = [Template(k, "v1", "kinect", rng.standard_normal((600, 768))) for k in ("age", "shape")]
    g.enroll(f"p{i}", big, RecordingRef(f"r{i}.txt", f"{i:064x}", "kinect"))
    print("committed", i, flush=True)
"""


def test_a_killed_enrolment_loses_nothing_committed(tmp_path):
    path = tmp_path / "g.db"
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CHILD), str(path)],
                             cwd=REPO, stdout=subprocess.PIPE, text=True)
    committed = []
    try:
        for line in child.stdout:
            if line.startswith("committed"):
                committed.append(int(line.split()[1]))
            elif line.strip() == "inside":
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert committed == [0, 1, 2]
    assert path.with_name("g.db-wal").stat().st_size > 0  # the commits still sit in the WAL
    assert pragma(path, "integrity_check") == "ok"  # also replays the WAL
    with Gallery(path) as g:
        assert [p.name for p in g.people()] == ["p0", "p1", "p2"]
        names, arrays = g.templates("shape", "v1")
        assert names == ["p0", "p1", "p2"]
        for i, a in enumerate(arrays):
            rng = np.random.default_rng(i)
            rng.standard_normal((600, 768))  # the "age" draw came first
            np.testing.assert_array_equal(a, rng.standard_normal((600, 768)).astype(np.float32))
        assert [r.sha256 for r in g.recordings("p1")] == [f"{1:064x}"]


def test_a_gallery_readable_by_others_is_made_owner_only_with_a_warning(tmp_path, caplog):
    folder = tmp_path / "site"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)  # whatever the umask made of it
    path = folder / "g.db"
    Gallery(path).close()  # a new gallery in a folder others can read: the folder too
    assert folder.stat().st_mode & 0o777 == 0o700 and "made owner-only (0700)" in caplog.text
    path.chmod(0o644)
    folder.chmod(0o750)
    Gallery(path).close()
    assert path.stat().st_mode & 0o777 == 0o600 and folder.stat().st_mode & 0o777 == 0o700


def test_a_shared_folder_like_tmp_is_never_made_private_even_by_root(tmp_path, caplog):
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)  # what /tmp is: everyone's, sticky
    with caplog.at_level(logging.WARNING):
        Gallery(shared / "g.db").close()
    assert shared.stat().st_mode & 0o7777 == 0o1777 and "not this user's own folder" in caplog.text
    assert (shared / "g.db").stat().st_mode & 0o777 == 0o600


# The schema before templates were encrypted (version 1), to build an old gallery by hand.
SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
CREATE TABLE recordings (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    path TEXT NOT NULL, sha256 TEXT NOT NULL, sensor TEXT NOT NULL, track INTEGER, added TEXT NOT NULL);
CREATE TABLE templates (id INTEGER PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    recording_id INTEGER REFERENCES recordings(id) ON DELETE CASCADE, kind TEXT NOT NULL,
    encoder_version TEXT NOT NULL, sensor TEXT NOT NULL, dim INTEGER NOT NULL CHECK (dim > 0),
    count INTEGER NOT NULL CHECK (count > 0), vectors BLOB NOT NULL CHECK (length(vectors) = 4 * dim * count),
    created TEXT NOT NULL);
CREATE INDEX recordings_person ON recordings(person_id);
CREATE INDEX templates_person ON templates(person_id);
CREATE INDEX templates_kind ON templates(kind, encoder_version);
INSERT INTO meta VALUES ('schema_version', '1');
"""


def test_a_version_1_gallery_is_encrypted_when_opened(tmp_path, caplog):
    path = tmp_path / "old.db"
    people = {"Al": vecs(20, count=16, dim=32), "Bo": vecs(21, count=16, dim=32)}
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = WAL")
    db.executescript(SCHEMA_V1)
    for i, (name, v) in enumerate(people.items(), 1):
        db.execute("INSERT INTO people VALUES (?, ?, '2024-01-01T00:00:00+00:00')", (i, name))
        db.execute("INSERT INTO recordings VALUES (?, ?, ?, ?, 'kinect', NULL, '2024-01-01T00:00:00+00:00')",
                   (i, i, f"/walks/{name}.gaitrec", f"{i:064x}"))
        db.execute("INSERT INTO templates VALUES (?, ?, ?, 'age', 'v1', 'kinect', ?, ?, ?, ?)",
                   (i, i, i, v.shape[1], v.shape[0], v.tobytes(), "2024-01-01T00:00:00+00:00"))
    db.commit()
    db.close()
    assert leaks(people["Al"].tobytes(), file_windows(gallery_files(path)))  # plaintext, as version 1 kept it
    with caplog.at_level(logging.WARNING), Gallery(path) as g:
        names, arrays = g.templates("age")
        assert names == ["Al", "Bo"]
        for a, v in zip(arrays, people.values(), strict=True):
            np.testing.assert_array_equal(a, v)
        assert [r.path for r in g.recordings("Bo")] == [Path("/walks/Bo.gaitrec")]
    assert "encrypted 2 template(s) that were stored in plaintext" in caplog.text
    runs = file_windows(gallery_files(path))
    assert not any(leaks(v.tobytes(), runs) for v in people.values())
    assert pragma(path, "integrity_check") == "ok" and pragma(path, "freelist_count") == 0
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
        assert {n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")} >= {
            "templates_person", "templates_kind"}
    db.close()
    assert stat.S_IMODE(path.with_name("old.db.key").stat().st_mode) == 0o600
    caplog.clear()
    with caplog.at_level(logging.WARNING), Gallery(path) as g:  # once only
        assert len(g.templates("age")[0]) == 2
    assert "encrypted" not in caplog.text


# The child opens the gallery, then SIGKILLs itself when it is about to run the n-th statement
# starting with the given text (a trace callback): each step of a remove or a rekey in turn.
KILL_CHILD = """
import os, signal, sys
from gaitcam.identity.gallery import Gallery

path, action, statement, nth = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
g = Gallery(path)
seen = 0
def kill_at(sql):
    global seen
    if sql.startswith(statement):
        seen += 1
        if seen == nth:
            os.kill(os.getpid(), signal.SIGKILL)
g._conn.set_trace_callback(kill_at)
g.remove("Al") if action == "remove" else g.rekey()
"""


def killed_at(path: Path, action: str, statement: str, nth: int = 1) -> None:
    child = subprocess.run([sys.executable, "-c", KILL_CHILD, str(path), action, statement, str(nth)],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr


def two_people(path: Path) -> dict[str, np.ndarray]:
    people = {"Al": vecs(30, count=16, dim=32), "Bo": vecs(31, count=16, dim=32)}
    with Gallery(path) as g:
        for name, v in people.items():
            g.enroll(name, [Template("age", "v1", "kinect", v)])
    return people


REMOVE_STEPS = {
    "after the delete commits": ("VACUUM", 1),
    "after the vacuum": ("PRAGMA wal_checkpoint", 1),
    "after the checkpoint": ("DELETE FROM pending_scrub", 1),
    "after the journal row is deleted": ("PRAGMA wal_checkpoint", 2),
}


@pytest.mark.parametrize("step", REMOVE_STEPS)
def test_a_remove_killed_at_any_step_is_scrubbed_at_the_next_open(tmp_path, step):
    path = tmp_path / "g.db"
    people = two_people(path)
    (sealed,) = stored(path, "Al")
    killed_at(path, "remove", *REMOVE_STEPS[step])
    left_behind = step in ("after the delete commits", "after the vacuum")
    assert leaks(sealed, file_windows(gallery_files(path))) == left_behind  # the kill hit that step
    with Gallery(path) as g:
        names, arrays = g.templates("age")
        assert names == ["Bo"]
        np.testing.assert_array_equal(arrays[0], people["Bo"])
    runs = file_windows(gallery_files(path))
    assert not leaks(sealed, runs) and not leaks(people["Al"].tobytes(), runs)
    assert journal(path) == 0


REKEY_STEPS = {
    "with the new key written, before the commit": ("UPDATE meta", 1),
    "after the commit, before the key file is replaced": ("BEGIN IMMEDIATE", 2),
    "after the key file is replaced": ("VACUUM", 1),
    "after the vacuum": ("PRAGMA wal_checkpoint", 1),
}


@pytest.mark.parametrize("step", REKEY_STEPS)
def test_a_rekey_killed_at_any_step_loses_no_template(tmp_path, step):
    path = tmp_path / "g.db"
    people = two_people(path)
    old_key = path.with_name("g.db.key").read_bytes()
    sealed = stored(path, "Al") + stored(path, "Bo")
    killed_at(path, "rekey", *REKEY_STEPS[step])
    assert path.with_name("g.db.key.new").exists() == ("before the key file" in step or "before the commit" in step)
    with Gallery(path) as g:
        names, arrays = g.templates("age")
        assert names == ["Al", "Bo"]
        for a, v in zip(arrays, people.values(), strict=True):
            np.testing.assert_array_equal(a, v)
    assert not path.with_name("g.db.key.new").exists()
    committed = path.with_name("g.db.key").read_bytes() != old_key
    assert committed == (step != "with the new key written, before the commit")
    if committed:  # the old ciphertext is scrubbed
        runs = file_windows(gallery_files(path))
        assert not any(leaks(b, runs) for b in sealed)


def test_export_gives_everything_held_about_one_person(gallery, tmp_path):
    walk, gone = rec(tmp_path / "walk.txt"), rec(tmp_path / "gone.txt", b"gone", track=3)
    gallery.enroll("Al", [tpl(1), tpl(2, kind="shape", dim=3)], walk)
    gallery.enroll("Al", [tpl(3, version="v2", sensor="azure", count=2)], gone)
    gallery.enroll("Bo", [tpl(4)])
    gone.path.unlink()
    out = gallery.export("Ａl")  # found as names are stored (NFKC)
    assert out["name"] == "Al" and out["created"] and out["gallery"] == gallery.where
    assert [(r["path"], r["sha256"], r["track"], r["exists"]) for r in out["recordings"]] == [
        (str(walk.path), walk.sha256, None, True), (str(gone.path), gone.sha256, 3, False)]
    assert all(r["sensor"] == "kinect" and r["added"] for r in out["recordings"])
    kinds = [(t["kind"], t["encoder_version"], t["sensor"], t["shape"], t["recording"]) for t in out["templates"]]
    assert kinds == [("age", "v1", "kinect", [4, 8], str(walk.path)), ("shape", "v1", "kinect", [4, 3], str(walk.path)),
                     ("age", "v2", "azure", [2, 8], str(gone.path))]
    for t, expected in zip(out["templates"], (vecs(1), vecs(2, dim=3), vecs(3, count=2)), strict=True):
        np.testing.assert_array_equal(np.array(t["vectors"], dtype=np.float32), expected)
    with pytest.raises(GaitcamError, match="no one named 'Nobody'"):
        gallery.export("Nobody")


def test_an_export_written_to_disk_round_trips_and_is_owner_only(gallery, tmp_path):
    from gaitcam.identity.export import write_export

    walk = rec(tmp_path / "walk.txt", b"the walk")
    gallery.enroll("Al", [tpl(1)], walk)
    written = write_export(gallery.export("Al"), tmp_path / "new" / "out", with_recordings=True)
    assert written.path == tmp_path / "new" / "out" / "Al" / "person.json"
    assert (written.templates, written.recordings, written.copied) == (1, 1, 1)
    data = json.loads(written.path.read_text())
    np.testing.assert_array_equal(np.array(data["templates"][0]["vectors"], dtype=np.float32), vecs(1))
    copy = written.path.parent / data["recordings"][0]["copy"]
    assert copy.read_bytes() == b"the walk" and data["recordings"][0]["unchanged"] is True
    for p in (written.path, copy):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    for p in (written.path.parent, copy.parent, tmp_path / "new" / "out"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p


def test_an_export_is_never_replaced_unless_forced(gallery, tmp_path):
    from gaitcam.identity.export import safe_name, write_export

    walk = rec(tmp_path / "walk.txt")
    gallery.enroll("Al", [tpl(1)], walk)
    first = write_export(gallery.export("Al"), tmp_path, with_recordings=True)
    with pytest.raises(GaitcamError, match="already there; --force replaces it") as e:
        write_export(gallery.export("Al"), tmp_path)
    assert "\n" not in str(e.value) and (first.path.parent / "recordings").exists()
    again = write_export(gallery.export("Al"), tmp_path, force=True)  # without recordings now: no stale copies
    assert again.path == first.path and not (first.path.parent / "recordings").exists()
    assert "copy" not in json.loads(again.path.read_text())["recordings"][0]
    assert safe_name("Al") == "Al" and safe_name("../x") != safe_name("__x")
    assert "/" not in safe_name("a/b") and not safe_name("..").startswith(".")


# -- a rekey and encrypted recordings ------------------------------------------------------
# Enrolled recordings are re-wrapped for the new key (the gallery rebuilds templates from them),
# and so is every .gaitrec under the folders named; a crash at any step loses none of them.

@pytest.fixture
def keyed(tmp_path):
    """A gallery path whose key file `sealed` reads and writes recordings with."""
    path = tmp_path / "g.db"
    sealed.use_config(lambda: Config(gallery=path))
    yield path
    sealed.use_config(None)


def write_rec(path: Path, encrypt: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_native(synthetic_recording(frames=12), path, sealed.writing_key(True) if encrypt else None)
    return path


def with_recordings(path: Path) -> tuple[dict[str, np.ndarray], list[Path], Path]:
    """Al and Bo enrolled from encrypted recordings, Cy from one since deleted; under `loose/`
    an encrypted recording never enrolled and a plain one. Returns the people, the encrypted
    recordings that must stay readable, and the loose folder."""
    folder, loose = path.parent / "enrolled", path.parent / "loose"
    people = {"Al": vecs(40), "Bo": vecs(41), "Cy": vecs(42)}
    with Gallery(path) as g:
        for name, v in people.items():
            walk = write_rec(folder / f"{name}.gaitrec")
            g.enroll(name, [Template("age", "v1", "kinect", v)], RecordingRef.from_file(walk, "kinect"))
    (folder / "Cy.gaitrec").unlink()
    write_rec(loose / "plain.gaitrec", encrypt=False)
    return people, [folder / "Al.gaitrec", folder / "Bo.gaitrec", write_rec(loose / "deep" / "never.gaitrec")], loose


def assert_all_read(path: Path, people: dict[str, np.ndarray], recordings: list[Path]) -> None:
    """Every template decrypts and every recording reads, with the key file alone."""
    with Gallery(path) as g:
        names, arrays = g.templates("age")
        assert names == list(people)
        for a, v in zip(arrays, people.values(), strict=True):
            np.testing.assert_array_equal(a, v)
        for ref in g.recordings("Al") + g.recordings("Bo"):  # still the recordings enrolled
            assert RecordingRef.from_file(ref.path, "kinect").sha256 == ref.sha256
    assert not [p for p in path.parent.iterdir()  # no .new, .old or tmp (retired keys may stay)
                if p.name.startswith("g.db.key.") and not p.name.startswith("g.db.key.retired-")]
    for p in recordings:
        assert read_native(p).tracks.keys() == {3, 7}


def retired(path: Path) -> list[Path]:
    return sorted(path.parent.glob("g.db.key.retired-*"))


def assert_old_key_opens_none(path: Path, old_key: bytes, recordings: list[Path], monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, old_key.decode().strip())
    for p in recordings:
        with pytest.raises(FormatError, match="encrypted with another key"):
            read_native(p)
    monkeypatch.delenv(KEY_ENV)


def test_a_rekey_re_wraps_the_enrolled_recordings_and_those_under_the_folders_named(keyed, monkeypatch, caplog):
    people, recordings, loose = with_recordings(keyed)
    old_key = keyed.with_name("g.db.key").read_bytes()
    with caplog.at_level(logging.WARNING), Gallery(keyed) as g:
        done = g.rekey([loose])
    assert (done.templates, done.recordings.rewrapped, done.recordings.missing, done.recordings.failed) == (3, 3, 1, 0)
    assert [r.getMessage().split("; ")[0] for r in caplog.records] == [  # Cy's recording is missing
        f"{keyed}: 1 encrypted recording(s) the gallery refers to are missing and may still need the old key, "
        f"kept as {retired(keyed)[0]}"]
    assert_all_read(keyed, people, recordings)
    assert_old_key_opens_none(keyed, old_key, recordings, monkeypatch)
    with Gallery(keyed) as g:  # a second rekey re-wraps them again, from that key to the next
        assert g.rekey([loose]).recordings.rewrapped == 3
    assert_all_read(keyed, people, recordings)


def test_gallery_rekey_recordings_command(keyed, capsys):
    _, recordings, loose = with_recordings(keyed)
    assert main(["gallery", "--gallery", str(keyed), "rekey", "--recordings", str(loose)]) == 0
    assert capsys.readouterr().out == (f"re-encrypted 3 template(s) in {keyed} with a new key ({keyed}.key); "
                                       "re-wrapped 3 encrypted recording(s) (1 missing)\n")
    assert_all_read(keyed, {"Al": vecs(40), "Bo": vecs(41), "Cy": vecs(42)}, recordings)


def test_a_rekey_without_the_folder_leaves_unenrolled_recordings_to_the_old_key(keyed, monkeypatch, caplog):
    people, recordings, loose = with_recordings(keyed)
    old_key = keyed.with_name("g.db.key").read_bytes()
    with Gallery(keyed) as g:
        assert g.rekey().recordings.rewrapped == 2
        with pytest.raises(GaitcamError, match="nowhere: not a folder of recordings"):
            g.rekey([keyed.parent / "nowhere"])
    assert_all_read(keyed, people, recordings[:2])
    assert_old_key_opens_none(keyed, old_key, recordings[:2], monkeypatch)
    monkeypatch.setenv(KEY_ENV, old_key.decode().strip())
    assert read_native(recordings[2]).tracks  # what the docs say: it needs the old key


# The child rekeys with the loose folder and SIGKILLs itself at the n-th SQL statement starting
# with the given text, or at the n-th call of the given function (patched here, in the child only).
REWRAP_CHILD = """
import importlib, os, signal, sys
from gaitcam.identity.gallery import Gallery

path, kind, what, nth, loose = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
seen = 0
def hit():
    global seen
    seen += 1
    if seen == nth:
        os.kill(os.getpid(), signal.SIGKILL)
g = Gallery(path)
if kind == "sql":
    g._conn.set_trace_callback(lambda sql: sql.startswith(what) and hit())
else:
    module, name = what.rsplit(".", 1)
    module = importlib.import_module(module)
    real = getattr(module, name)
    def patched(*args, **kwargs):
        hit()
        return real(*args, **kwargs)
    setattr(module, name, patched)
g.rekey([loose])
"""

REWRAP_STEPS = {  # the kill; which key files it leaves (.new, .old); which recordings it re-wrapped
    "new key written, before the old one is kept":
        (("call", "gaitcam.identity.protect.save_old_key", 1), (1, 0), [0, 0, 0]),
    "old key kept, before the commit": (("sql", "SELECT id FROM templates", 1), (1, 1), [0, 0, 0]),
    "after the commit, before the key file is replaced": (("sql", "BEGIN IMMEDIATE", 2), (1, 1), [0, 0, 0]),
    "key file replaced, before any re-wrapping":
        (("call", "gaitcam.recording.native.rewrap_file", 1), (0, 1), [0, 0, 0]),
    "one recording re-wrapped": (("call", "gaitcam.recording.native.rewrap_file", 2), (0, 1), [1, 0, 0]),
    "all re-wrapped, before the old key is retired (Cy's recording is missing)":
        (("call", "gaitcam.identity.protect.retire_old_key", 1), (0, 1), [1, 1, 1]),
    "after the old key is deleted": (("sql", "VACUUM", 1), (0, 0), [1, 1, 1]),
}


@pytest.mark.parametrize("step", REWRAP_STEPS)
def test_a_rekey_killed_at_any_step_loses_no_recording(keyed, monkeypatch, caplog, step):
    people, recordings, loose = with_recordings(keyed)
    old_key = keyed.with_name("g.db.key").read_bytes()
    (kind, what, nth), left, rewrapped = REWRAP_STEPS[step]
    before = [p.read_bytes() for p in recordings]
    child = subprocess.run([sys.executable, "-c", REWRAP_CHILD, str(keyed), kind, what, str(nth), str(loose)],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert (keyed.with_name("g.db.key.new").exists(), keyed.with_name("g.db.key.old").exists()) == left
    assert [int(p.read_bytes() != b) for p, b in zip(recordings, before)] == rewrapped
    with caplog.at_level(logging.WARNING):
        assert_all_read(keyed, people, recordings)
    assert ("finished a rekey's re-wrapping: re-wrapped" in caplog.text) == bool(left[1])
    renamed = step == "after the commit, before the key file is replaced"  # by this open, not the rekey
    assert ("finished a rekey's key files (its committed new key put in place)" in caplog.text) == renamed
    committed = keyed.with_name("g.db.key").read_bytes() != old_key
    assert committed == (step not in ("new key written, before the old one is kept", "old key kept, before the commit"))
    if committed:
        assert_old_key_opens_none(keyed, old_key, recordings, monkeypatch)
    assert pragma(keyed, "integrity_check") == "ok"
    conn = sqlite3.connect(keyed)
    assert conn.execute("SELECT count(*) FROM meta WHERE key = 'rekey_recordings'").fetchone()[0] == 0
    conn.close()


def test_an_export_decrypts_encrypted_recordings_for_the_person(keyed, tmp_path):
    people, recordings, _ = with_recordings(keyed)
    with Gallery(keyed) as g:
        written = write_export(g.export("Al"), tmp_path / "out", with_recordings=True)
    (ref,) = json.loads(written.path.read_text())["recordings"]
    copy = written.path.parent / ref["copy"]
    assert ref["decrypted"] is True and ref["unchanged"] is True and written.copied == 1
    assert not is_sealed(copy) and stat.S_IMODE(copy.stat().st_mode) == 0o600
    original = read_native(recordings[0])
    keyed.with_name("g.db.key").unlink()  # the person has no key: the copy reads without one
    assert_same_tracks(read_native(copy), original)


def test_the_old_key_stays_while_a_recording_cannot_be_re_wrapped(keyed, monkeypatch, caplog):
    people, recordings, loose = with_recordings(keyed)
    stranger = loose / "stranger.gaitrec"  # another gallery's: neither key opens it, and that blocks nothing
    write_native(synthetic_recording(frames=12), stranger, Key(os.urandom(32), None))

    def read_only(path, offset, data):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(native, "_write_over", read_only)
    with caplog.at_level(logging.WARNING), Gallery(keyed) as g:
        moved = g.rekey([loose]).recordings
    assert (moved.rewrapped, moved.missing, moved.unopenable, moved.failed) == (0, 1, 1, 3)
    assert f"{stranger}: not re-wrapped: neither the old nor the new gallery key opens it" in caplog.text
    assert "g.db.key.old: kept, as 3 encrypted recording(s) could not be re-wrapped" in caplog.text
    for p in recordings:  # meanwhile readable, with the old key kept
        assert read_native(p).tracks
    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level(logging.WARNING), Gallery(keyed):  # the next open finishes it
        assert "finished a rekey's re-wrapping: re-wrapped 3 encrypted recording(s)" in caplog.text
    assert_all_read(keyed, people, recordings)


def test_a_second_rekey_is_refused_while_the_old_key_is_still_needed(keyed, monkeypatch, caplog):
    people, recordings, loose = with_recordings(keyed)

    def read_only(path, offset, data):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(native, "_write_over", read_only)
    old = keyed.with_name("g.db.key.old")
    with Gallery(keyed) as g:
        assert g.rekey([loose]).recordings.failed == 3
        kept, key = old.read_bytes(), keyed.with_name("g.db.key").read_bytes()
        with pytest.raises(GaitcamError, match=r"g.db.key.old: the last rekey's old key is still needed by "
                                               r"encrypted recording\(s\) that could not be re-wrapped") as e:
            g.rekey([loose])
    assert "\n" not in str(e.value)
    assert old.read_bytes() == kept and keyed.with_name("g.db.key").read_bytes() == key  # neither key touched
    assert not keyed.with_name("g.db.key.new").exists()
    for p in recordings:  # still wrapped by the old key, which is still there
        assert read_native(p).tracks
    monkeypatch.undo()
    with Gallery(keyed) as g:  # writable again: the open finishes the first rekey, and a second one runs
        assert g.rekey([loose]).recordings.rewrapped == 3
    assert_all_read(keyed, people, recordings)


def test_the_old_key_is_retired_not_deleted_while_enrolled_recordings_are_missing(keyed, monkeypatch, caplog):
    people, recordings, loose = with_recordings(keyed)
    unmounted = keyed.parent / "unmounted"
    unmounted.mkdir()
    al = recordings[0]
    al.rename(unmounted / al.name)  # the disk it is on is not there during the rekey
    with caplog.at_level(logging.WARNING), Gallery(keyed) as g:
        assert g.rekey([loose]).recordings.missing == 2  # Al's and Cy's
    (kept,) = retired(keyed)
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600 and not keyed.with_name("g.db.key.old").exists()
    assert (f"{keyed}: 2 encrypted recording(s) the gallery refers to are missing and may still need the old key, "
            f"kept as {kept}; delete it once those recordings are gone for good") in caplog.text
    (unmounted / al.name).rename(al)  # back: it reads, with the retired key
    assert read_native(al).tracks.keys() == {3, 7}
    with Gallery(keyed) as g:  # a retired key holds up no later rekey
        g.rekey([loose])
    assert len(retired(keyed)) == 2  # Cy's recording is still missing
    assert_all_read(keyed, people, recordings)
    for p in retired(keyed):
        p.unlink()
    with pytest.raises(FormatError, match="encrypted with another key"):
        read_native(al)  # what the warning says: it needed the retired key


def test_a_rekey_finished_by_another_open_between_its_transactions_retires_the_old_key_once(keyed, caplog):
    people, recordings, loose = with_recordings(keyed)
    with Gallery(keyed) as g:
        begun: list[str] = []

        def other_open_first(sql: str) -> None:  # another process opens between the rekey's transactions
            if sql.startswith("BEGIN IMMEDIATE"):
                begun.append(sql)
                if len(begun) == 2:
                    Gallery(keyed).close()

        g._conn.set_trace_callback(other_open_first)
        with caplog.at_level(logging.WARNING):
            assert g.rekey([loose]).recordings.missing == 1
        g._conn.set_trace_callback(None)
    assert "finished a rekey's re-wrapping: re-wrapped 3" in caplog.text  # by the other open
    assert len(retired(keyed)) == 1 and caplog.text.count("kept as") == 1
    assert_all_read(keyed, people, recordings)


def test_a_failed_export_leaves_nothing_behind_and_a_previous_one_as_it_was(keyed, tmp_path):
    with_recordings(keyed)
    out = tmp_path / "out"
    with Gallery(keyed) as g:
        g.enroll("Al", [tpl(1)], rec(tmp_path / "plain.txt"))
        export = g.export("Al")
    export["recordings"].reverse()  # the plain one is copied before the encrypted one fails
    key = keyed.with_name("g.db.key")
    key.rename(key.with_name("elsewhere"))  # the encrypted recording cannot be decrypted now
    with pytest.raises(FormatError, match="Al.gaitrec: encrypted recording"):
        write_export(export, out, with_recordings=True)
    assert list(out.iterdir()) == []  # no decrypted copy, no partial folder
    previous = write_export(export, out).path.read_bytes()  # without the recordings it works
    with pytest.raises(FormatError, match="Al.gaitrec: encrypted recording"):
        write_export(export, out, force=True, with_recordings=True)
    assert [p.name for p in out.iterdir()] == ["Al"] and [p.name for p in (out / "Al").iterdir()] == ["person.json"]
    assert (out / "Al" / "person.json").read_bytes() == previous
