"""The enrolled identities: one SQLite file, durable and private.

The gallery stores vectors generically (a `kind`, the encoder version that produced them,
the sensor, a float32 matrix); the matcher decides what they mean. Every template keeps the
encoder version so encodings of different models are never compared, and the source
recordings of each enrolment are kept (path and sha256) so templates can be rebuilt after
retraining.

Durability: WAL journal with `synchronous=FULL`, so a committed enrolment survives a killed
process and a power cut (enrolments are rare, the extra fsync is free in practice), and every
enrolment is one transaction. Privacy: the file and its folder are created owner-only, and
`remove` scrubs the person's bytes from the database file and its WAL, not just the rows.
Concurrency: the live app reads while the CLI may enroll from another process; a busy
timeout makes writers wait for each other instead of failing, and one `Gallery` may be shared
between threads (a lock serialises its connection).
"""
from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from gaitcam.errors import GaitcamError
from gaitcam.identity import names

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE recordings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    sensor TEXT NOT NULL,
    track INTEGER,
    added TEXT NOT NULL
);
CREATE TABLE templates (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    recording_id INTEGER REFERENCES recordings(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    encoder_version TEXT NOT NULL,
    sensor TEXT NOT NULL,
    dim INTEGER NOT NULL CHECK (dim > 0),
    count INTEGER NOT NULL CHECK (count > 0),
    vectors BLOB NOT NULL CHECK (length(vectors) = 4 * dim * count),
    created TEXT NOT NULL
);
CREATE INDEX recordings_person ON recordings(person_id);
CREATE INDEX templates_person ON templates(person_id);
CREATE INDEX templates_kind ON templates(kind, encoder_version);
"""


@dataclass(frozen=True, eq=False)
class Template:
    """One enrolment's vectors of one kind: `count` vectors of `dim` float32 each.

    The repr shows the shape only: templates are biometric data and must never reach logs.
    """

    kind: str
    encoder_version: str
    sensor: str
    vectors: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        v = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if v.ndim != 2 or v.size == 0:
            raise ValueError(f"template vectors must be a non-empty [count, dim] matrix, not shape {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("template vectors must be finite")
        object.__setattr__(self, "vectors", v)

    def __repr__(self) -> str:
        count, dim = self.vectors.shape
        return (f"Template(kind={self.kind!r}, encoder_version={self.encoder_version!r}, "
                f"sensor={self.sensor!r}, vectors=<float32 {count}x{dim}>)")


@dataclass(frozen=True)
class RecordingRef:
    """A recording an enrolment came from; `track` picks one person in a multi-person file."""

    path: Path
    sha256: str
    sensor: str
    track: int | None = None

    @classmethod
    def from_file(cls, path: str | Path, sensor: str, track: int | None = None) -> RecordingRef:
        """Hash the file, so a later rebuild can tell whether it is still the same recording."""
        path = Path(path)
        h = hashlib.sha256()
        try:
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as e:
            raise GaitcamError(f"{path}: cannot read recording ({e.strerror})") from None
        return cls(path, h.hexdigest(), sensor, track)


@dataclass(frozen=True)
class PersonInfo:
    """What `gallery list` shows about one person; no vectors."""

    name: str
    n_templates: int
    n_recordings: int
    sensors: tuple[str, ...]
    encoder_versions: tuple[str, ...]
    created: datetime


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")




class Gallery:
    """The enrolled people and their templates, in the SQLite file at `path`.

    Creates the file (mode 0600) and its folder (0700) when missing. Use as a context manager
    or call `close()`. `timeout` is how long a write waits for another writer, in seconds.
    """

    def __init__(self, path: str | Path, timeout: float = 10.0) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.RLock()
        try:
            if not self.path.exists():
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                # Create it owner-only before SQLite does (with the umask); the WAL and shm
                # files then inherit these permissions from the database file.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            elif self.path.stat().st_mode & 0o077:  # made by another tool, or copied: owner-only from now on
                log.warning("%s: was readable by others (mode %o); made owner-only (600)", self.path,
                            self.path.stat().st_mode & 0o777)
                self.path.chmod(0o600)
        except OSError as e:
            raise GaitcamError(f"{self.path}: cannot create gallery ({e.strerror})") from None
        with self._translated():
            self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                         check_same_thread=False)
        try:
            with self._translated():
                self._conn.execute("PRAGMA foreign_keys = ON")
                self._conn.execute("PRAGMA secure_delete = ON")
                self._conn.execute("PRAGMA journal_mode = WAL")
                self._conn.execute("PRAGMA synchronous = FULL")
            self._init_schema()
        except BaseException:
            self._conn.close()
            raise

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- transactions -------------------------------------------------------------------

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """SQLite failures the user can cause (busy, disk full, not a database) become one line."""
        try:
            yield
        except sqlite3.DatabaseError as e:
            if type(e) not in (sqlite3.DatabaseError, sqlite3.OperationalError):
                raise  # integrity/programming errors are bugs, keep the traceback
            reason = "busy (another process is writing it)" if "locked" in str(e) else str(e)
            raise GaitcamError(f"{self.path}: gallery {reason}") from None

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction; writes take the write lock up front so they never deadlock upgrading."""
        with self._lock, self._translated():
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
            conn.commit()

    def _init_schema(self) -> None:
        """Create the tables in a new file, then check the schema version.

        Only an empty file takes the write lock, so opening an existing gallery never waits
        for (or fails on) a writer in another process.
        """
        def is_empty(c: sqlite3.Connection) -> bool:
            return c.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0

        with self._transaction(write=False) as c:
            empty = is_empty(c)
        if empty:
            with self._transaction(write=True) as c:
                if is_empty(c):  # another process may have created it meanwhile
                    for statement in _SCHEMA.split(";")[:-1]:  # executescript would commit early
                        c.execute(statement)
                    c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        with self._transaction(write=False) as c:
            if not c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone():
                raise GaitcamError(f"{self.path}: not a gaitcam gallery")
            row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            raise GaitcamError(f"{self.path}: not a gaitcam gallery (no schema version)")
        try:
            version = int(row[0])
        except (TypeError, ValueError):
            raise GaitcamError(f"{self.path}: not a gaitcam gallery (schema version {str(row[0])[:40]!r})") from None
        if version > SCHEMA_VERSION:
            raise GaitcamError(f"{self.path}: gallery written by a newer gaitcam (schema {version})")

    @staticmethod
    def _person_id(c: sqlite3.Connection, name: str) -> int:
        if isinstance(name, str):
            name = unicodedata.normalize("NFKC", name)  # as names are stored
        row = c.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise GaitcamError(f"no one named {name!r} in the gallery")
        return row[0]

    def _scrub(self) -> None:
        """Rebuild the file and empty the WAL so deleted rows leave no bytes behind.

        secure_delete already zeroed the freed pages; VACUUM drops them and the free list,
        the TRUNCATE checkpoint copies the result into the database file and empties the WAL
        (which still holds the rows as they were first written).
        """
        with self._lock, self._translated():
            self._conn.execute("VACUUM")
            busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise GaitcamError(f"{self.path}: removed, but another process has the gallery open; "
                               "the deleted data leaves the file once it closes")

    # -- writing ------------------------------------------------------------------------

    def enroll(self, name: str, templates: list[Template], recording: RecordingRef | None = None,
               replace: bool = False) -> int:
        """Add one enrolment (a walk) to `name`, creating the person if new.

        All of it is committed or none. A second enrolment appends to the person's templates;
        `replace=True` first drops all the person's templates and recording references.
        Returns how many templates the person has now.
        """
        name = names.normalise(name)
        if not templates:
            raise GaitcamError(f"nothing to enroll for {name!r} (no templates)")
        rows = [(t.kind, t.encoder_version, t.sensor, t.vectors.shape[1], t.vectors.shape[0],
                 t.vectors.astype("<f4", copy=False).tobytes()) for t in templates]
        with self._transaction(write=True) as c:
            row = c.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                person = c.execute("INSERT INTO people (name, created) VALUES (?, ?)", (name, _now())).lastrowid
            else:
                person = row[0]
                if replace:
                    c.execute("DELETE FROM templates WHERE person_id = ?", (person,))
                    c.execute("DELETE FROM recordings WHERE person_id = ?", (person,))
            rec = None if recording is None else self._recording_id(c, person, recording)
            c.executemany(
                "INSERT INTO templates (person_id, recording_id, kind, encoder_version, sensor, dim, count,"
                " vectors, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(person, rec, *r, _now()) for r in rows])
            return c.execute("SELECT count(*) FROM templates WHERE person_id = ?", (person,)).fetchone()[0]

    @staticmethod
    def _recording_id(c: sqlite3.Connection, person: int, rec: RecordingRef) -> int:
        """Re-enrolling from the same recording (say with a retrained encoder) reuses its row."""
        path = str(Path(rec.path).resolve())  # relative paths would break from another folder
        row = c.execute("SELECT id FROM recordings WHERE person_id = ? AND sha256 = ? AND track IS ?",
                        (person, rec.sha256, rec.track)).fetchone()
        if row is not None:
            c.execute("UPDATE recordings SET path = ?, sensor = ? WHERE id = ?", (path, rec.sensor, row[0]))
            return row[0]
        return c.execute(
            "INSERT INTO recordings (person_id, path, sha256, sensor, track, added) VALUES (?, ?, ?, ?, ?, ?)",
            (person, path, rec.sha256, rec.sensor, rec.track, _now())).lastrowid

    def rename(self, old: str, new: str) -> None:
        old, new = names.normalise(old), names.normalise(new)
        with self._transaction(write=True) as c:
            person = self._person_id(c, old)
            if old != new and c.execute("SELECT 1 FROM people WHERE name = ?", (new,)).fetchone():
                raise GaitcamError(f"cannot rename {old!r}: {new!r} is already in the gallery")
            others = [n for (n,) in c.execute("SELECT name FROM people WHERE id != ?", (person,))]
            c.execute("UPDATE people SET name = ? WHERE id = ?", (new, person))
        if (warning := names.lookalike_warning(new, others)) is not None:
            log.warning(warning)

    def remove(self, name: str, delete_recordings: bool = False) -> list[Path]:
        """Delete `name` and every byte of their templates from the gallery files.

        Returns the recordings only this person referenced (a multi-person recording another
        enrolled person still uses is kept); `delete_recordings=True` deletes those files too.
        """
        with self._transaction(write=True) as c:
            person = self._person_id(c, name)
            orphans = [Path(p) for (p,) in c.execute(
                "SELECT DISTINCT path FROM recordings WHERE person_id = ?"
                " AND path NOT IN (SELECT path FROM recordings WHERE person_id != ?) ORDER BY path",
                (person, person))]
            c.execute("DELETE FROM people WHERE id = ?", (person,))  # cascades to their rows
        self._scrub()
        if delete_recordings:
            for p in orphans:
                try:
                    p.unlink(missing_ok=True)
                except OSError as e:
                    raise GaitcamError(f"{p}: cannot delete recording ({e.strerror})") from None
        return orphans

    # -- reading ------------------------------------------------------------------------

    def people(self) -> list[PersonInfo]:
        with self._transaction(write=False) as c:
            counts = c.execute(
                "SELECT id, name, created,"
                " (SELECT count(*) FROM templates t WHERE t.person_id = p.id),"
                " (SELECT count(*) FROM recordings r WHERE r.person_id = p.id)"
                " FROM people p ORDER BY name").fetchall()
            sensors: dict[int, set[str]] = {}
            versions: dict[int, set[str]] = {}
            for person, sensor, version in c.execute(
                    "SELECT DISTINCT person_id, sensor, encoder_version FROM templates"):
                sensors.setdefault(person, set()).add(sensor)
                versions.setdefault(person, set()).add(version)
        return [PersonInfo(name, n_t, n_r, tuple(sorted(sensors.get(i, ()))),
                           tuple(sorted(versions.get(i, ()))), datetime.fromisoformat(created))
                for i, name, created, n_t, n_r in counts]

    def templates(self, kind: str, encoder_version: str | None = None) -> tuple[list[str], list[np.ndarray]]:
        """Names and vector matrices ([count, dim] float32) of every `kind` template, by name.

        A name repeats once per enrolment. Without `encoder_version` the gallery must hold a
        single version of `kind`: vectors of different encoders must never be compared.
        """
        with self._transaction(write=False) as c:
            if encoder_version is None:
                found = sorted(v for (v,) in c.execute(
                    "SELECT DISTINCT encoder_version FROM templates WHERE kind = ?", (kind,)))
                if len(found) > 1:
                    raise GaitcamError(f"{self.path}: {kind!r} templates from several encoder versions "
                                       f"({', '.join(found)}); name one, or re-enroll")
                encoder_version = found[0] if found else ""
            rows = c.execute(
                "SELECT p.name, t.count, t.dim, t.vectors FROM templates t JOIN people p ON p.id = t.person_id"
                " WHERE t.kind = ? AND t.encoder_version = ? ORDER BY p.name, t.id",
                (kind, encoder_version)).fetchall()
        names = [name for name, *_ in rows]
        vectors = [np.frombuffer(blob, dtype="<f4").astype(np.float32).reshape(count, dim)
                   for _, count, dim, blob in rows]
        return names, vectors

    def versions(self) -> set[str]:
        """Encoder versions with templates in the gallery."""
        with self._transaction(write=False) as c:
            return {v for (v,) in c.execute("SELECT DISTINCT encoder_version FROM templates")}

    def stale(self, encoder_version: str) -> list[str]:
        """People holding templates from another encoder version: re-enroll them after retraining."""
        with self._transaction(write=False) as c:
            return [n for (n,) in c.execute(
                "SELECT DISTINCT p.name FROM people p JOIN templates t ON t.person_id = p.id"
                " WHERE t.encoder_version != ? ORDER BY p.name", (encoder_version,))]

    def recordings(self, name: str) -> list[RecordingRef]:
        """The recordings `name` was enrolled from, oldest first."""
        with self._transaction(write=False) as c:
            person = self._person_id(c, name)
            return [RecordingRef(Path(p), h, s, t) for p, h, s, t in c.execute(
                "SELECT path, sha256, sensor, track FROM recordings WHERE person_id = ? ORDER BY id", (person,))]
