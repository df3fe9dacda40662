"""The PostgreSQL gallery, on a real server: what only a server store has (URLs and passwords,
a lost or refused server, the table files, writers from other connections, the command line).
The behaviour both stores share is tested on both in test_gallery.py."""
import logging
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest

import gaitcam
from gaitcam.cli import main
from gaitcam.config import DEMO_DIR
from gaitcam.errors import GaitcamError
from gaitcam.identity.gallery import Template, open_store
from gaitcam.identity.postgres import PostgresGallery
from test_session import wait_until


def tpl(seed: int, count: int = 16, dim: int = 32) -> Template:
    return Template("age", "v1", "kinect", np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32))


def admin(server, url: str | None = None) -> psycopg.Connection:
    return psycopg.connect(url or server.url(), password=server.password, autocommit=True)


def table_files(server, url: str) -> bytes:
    """Every byte of the database's table, TOAST and index files, after a checkpoint has
    written what the server held in memory."""
    with admin(server, url) as c:
        c.execute("CHECKPOINT")
        (oid,) = c.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
    return b"".join(p.read_bytes() for p in sorted((server.folder / "data" / "base" / str(oid)).iterdir())
                    if p.is_file())


def test_removed_rows_leave_the_table_files_and_templates_are_never_there_in_plaintext(postgres_server,
                                                                                     postgres_url):
    al, bo = tpl(1), tpl(2, count=2)  # al is stored out of line (TOAST), bo in its row
    with open_store(postgres_url) as g:
        g.enroll("Zebulon Quartermaine", [al])
        g.enroll("Bo", [bo])
        with admin(postgres_server, postgres_url) as c:
            (sealed,), (other,) = c.execute("SELECT vectors FROM templates ORDER BY id").fetchall()
        sealed, other = sealed[:1000], other[:200]  # TOAST stores ~2 kB chunks: the head lies in one
        before = table_files(postgres_server, postgres_url)
        assert sealed in before and b"Quartermaine" in before  # the search finds what is stored
        assert al.vectors.tobytes()[:200] not in before and bo.vectors.tobytes()[:200] not in before
        g.remove("Zebulon Quartermaine")
        after = table_files(postgres_server, postgres_url)
        assert sealed not in after and b"Quartermaine" not in after and other in after
        assert g.templates("age")[0] == ["Bo"]


def test_a_password_in_the_url_is_refused_before_connecting():
    with pytest.raises(GaitcamError, match="PGPASSWORD or ~/.pgpass") as e:
        open_store("postgresql://ada:s3cret@127.0.0.1:1/site")
    assert "s3cret" not in str(e.value)


def test_servers_that_cannot_be_used_are_clear_errors(postgres_server, postgres_url, monkeypatch):
    from conftest import free_port

    with pytest.raises(GaitcamError, match=r"gallery server: .*(refused|failed)"):
        open_store(f"postgresql://gaitcam@127.0.0.1:{free_port()}/site", timeout=2)
    with pytest.raises(GaitcamError, match='database "nope" does not exist'):
        open_store(postgres_server.url("nope"))
    monkeypatch.setenv("PGPASSWORD", "wrong")
    with pytest.raises(GaitcamError, match="password authentication failed"):
        open_store(postgres_url)
    monkeypatch.setenv("PGPASSWORD", postgres_server.password)
    with admin(postgres_server, postgres_url) as c:
        c.execute("CREATE TABLE orders (id integer)")
    with pytest.raises(GaitcamError, match="not a gaitcam gallery"):
        open_store(postgres_url)
    c2 = postgres_server.database()
    open_store(c2).close()
    with admin(postgres_server, c2) as c:
        c.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(GaitcamError, match="written by a newer gaitcam"):
        open_store(c2)


def test_a_lost_connection_is_replaced(postgres_server, postgres_url):
    with open_store(postgres_url) as g:
        g.enroll("Al", [tpl(1)])
        with admin(postgres_server) as c:  # the server drops every connection to the gallery
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid != "
                      "pg_backend_pid()", (postgres_url.rsplit("/", 1)[1],))
        assert [p.name for p in g.people()] == ["Al"]
        g.enroll("Bo", [tpl(2)])


def test_writers_wait_for_each_other_then_give_up(postgres_server, postgres_url):
    with open_store(postgres_url, timeout=0.3) as g, admin(postgres_server, postgres_url) as other:
        other.execute("BEGIN")
        other.execute("SELECT pg_advisory_xact_lock(%s)", (0x67616974,))  # another camera mid-enrolment
        with pytest.raises(GaitcamError, match="busy"):
            g.enroll("Al", [tpl(1)])
        other.execute("COMMIT")
        g.enroll("Al", [tpl(1)])
        assert g.templates("age")[0] == ["Al"]


def test_the_key_stays_on_the_machine_and_a_machine_without_it_is_told(postgres_url, tmp_path, monkeypatch):
    with open_store(postgres_url) as g:
        g.enroll("Al", [tpl(1)])
        key = Path(str(g.path) + ".key")
    assert key.is_file() and key.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "another-machine"))
    with pytest.raises(GaitcamError, match="key file .* is missing"):
        open_store(postgres_url)
    monkeypatch.setenv("GAITCAM_GALLERY_KEY", key.read_text().strip())  # the site's key, given to it
    with open_store(postgres_url) as g:
        np.testing.assert_array_equal(g.templates("age")[1][0], tpl(1).vectors)


def test_a_session_keeps_matching_while_the_server_is_away_and_follows_it_when_back(postgres_server,
                                                                                 postgres_url, caplog):
    db = postgres_url.rsplit("/", 1)[1]
    with gaitcam.open_session(gallery=postgres_url, device="cpu", camera="a") as a, \
            gaitcam.open_session(gallery=postgres_url, device="cpu", camera="b") as b:
        a.enroll("Ada", DEMO_DIR / "Ada.gaitrec")
        assert wait_until(lambda: b.index.names, 1.0)
        with admin(postgres_server) as c, caplog.at_level(logging.WARNING):
            c.execute(f"ALTER DATABASE {db} ALLOW_CONNECTIONS false")
            c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (db,))
            time.sleep(1.5)
            assert "matching goes on with the gallery as last read" in caplog.text
            assert b.identify(DEMO_DIR / "Ada.gaitrec")[0]["identity"] == "Ada"  # from the index it holds
            c.execute(f"ALTER DATABASE {db} ALLOW_CONNECTIONS true")
        a.enroll("Ben", DEMO_DIR / "Ben.gaitrec")
        assert wait_until(lambda: "Ben" in b.index.names, 5.0)  # reconnected within its backoff


def test_the_command_line_takes_a_postgresql_gallery(postgres_url, capsys):
    assert main(["enroll", "Ada", str(DEMO_DIR / "Ada.gaitrec"), "--gallery", postgres_url]) == 0
    assert main(["gallery", "--gallery", postgres_url, "list"]) == 0
    out = capsys.readouterr().out
    assert "Ada: 1 recording(s)" in out and f"1 people in {postgres_url}" in out
    assert main(["gallery", "--gallery", postgres_url, "remove", "Ada"]) == 0
    assert "removed Ada" in capsys.readouterr().out
    with PostgresGallery(postgres_url) as g:
        assert g.people() == []
