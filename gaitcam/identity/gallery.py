"""The enrolled identities: one SQLite file, durable and private.

The gallery stores vectors generically (a `kind`, the encoder version that produced them,
the sensor, a float32 matrix); the matcher decides what they mean. Every template keeps the
encoder version so encodings of different models are never compared, and the source
recordings of each enrolment are kept (path and sha256) so templates can be rebuilt after
retraining.

Durability: WAL journal with `synchronous=FULL`, so a committed enrolment survives a killed
process and a power cut (enrolments are rare, the extra fsync is free in practice), and every
enrolment is one transaction. Privacy: the file and its folder are created owner-only, templates
are sealed with AES-GCM before they reach the file (`protect`: the key, beside the gallery or in
$GAITCAM_GALLERY_KEY), and `remove` scrubs the person's bytes from the database file and its
WAL, not just the rows. The scrub is journalled (`pending_scrub`, written with the delete), so a
process killed before it finishes leaves it to the next open. A rekey also re-wraps the data key
of every encrypted recording the gallery refers to (the old key waits in `<key>.old` until that
is done; an open finishes it after a crash; it is retired, not deleted, while some of them are
missing), so the recordings stay readable to rebuild from.
Concurrency: the live app reads while the CLI may enroll from another process; a busy
timeout makes writers wait for each other instead of failing, and one `Gallery` may be shared
between threads (a lock serialises its connection).
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gaitcam.errors import GaitcamError
from gaitcam.identity import names, protect
from gaitcam.recording import native

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: templates sealed (AES-GCM), the key check in meta, the pending_scrub journal
RETRY_S = (0.5, 30.0)  # while a store cannot be reached, followers retry after this first wait, doubling to the second
EXPORT_FORMAT = "gaitcam person export 1"  # what `export` returns, for whoever reads an access request's file

# DDL with the column types that differ between the stores left as {id} and {blob}.
_TEMPLATES = f"""
CREATE TABLE {{name}} (
    id {{id}},
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    recording_id INTEGER REFERENCES recordings(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    encoder_version TEXT NOT NULL,
    sensor TEXT NOT NULL,
    dim INTEGER NOT NULL CHECK (dim > 0),
    count INTEGER NOT NULL CHECK (count > 0),
    vectors {{blob}} NOT NULL CHECK (length(vectors) = {protect.OVERHEAD} + 4 * dim * count),
    created TEXT NOT NULL
)"""
_TEMPLATE_COLUMNS = "id, person_id, recording_id, kind, encoder_version, sensor, dim, count, vectors, created"
_TEMPLATE_INDEXES = """
CREATE INDEX templates_person ON templates(person_id);
CREATE INDEX templates_kind ON templates(kind, encoder_version);
"""
_SCRUB_DELAYED = ("another process has the gallery open; the deleted data leaves the file when the gallery "
                  "is next opened after it closes")
_REWRAP_FOLDERS = "rekey_recordings"  # meta: the folders a rekey re-wraps besides the gallery's recordings
_PENDING_SCRUB = "CREATE TABLE pending_scrub (id {id}, reason TEXT NOT NULL, created TEXT NOT NULL);"

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (
    id {{id}},
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE recordings (
    id {{id}},
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    sensor TEXT NOT NULL,
    track INTEGER,
    added TEXT NOT NULL
);
{_TEMPLATES.replace("{name}", "templates")};
{_PENDING_SCRUB}
CREATE INDEX recordings_person ON recordings(person_id);
{_TEMPLATE_INDEXES}"""


def _statements(script: str) -> list[str]:
    """The statements of `script`, to run one by one (executescript would commit early)."""
    return [s for s in (part.strip() for part in script.split(";")) if s]


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
        """Hash the file, so a later rebuild can tell whether it is still the same recording
        (`native.content_sha256`: a rekey's re-wrapping does not count as a change)."""
        path = Path(path)
        try:
            return cls(path, native.content_sha256(path), sensor, track)
        except OSError as e:
            raise GaitcamError(f"{path}: cannot read recording ({e.strerror})") from None


@dataclass(frozen=True)
class PersonInfo:
    """What `gallery list` shows about one person; no vectors."""

    name: str
    n_templates: int
    n_recordings: int
    sensors: tuple[str, ...]
    encoder_versions: tuple[str, ...]
    created: datetime


@dataclass(frozen=True)
class Rekeyed:
    """What a rekey did: templates re-encrypted, the key file, and the encrypted recordings."""

    templates: int
    key: Path
    recordings: Rewrapped


@dataclass
class Rewrapped:
    """Encrypted recordings a rekey went through: re-wrapped for the new key; referenced by the
    gallery but missing (the old key is retired for them, not deleted); that neither key opens
    (another gallery's, or damaged: each logged); that could not be re-wrapped (unreadable,
    read-only: logged; the old key is kept for them)."""

    rewrapped: int = 0
    missing: int = 0
    unopenable: int = 0
    failed: int = 0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Gallery:
    """The enrolled people and their templates, in the SQLite file at `path`.

    Creates the file (mode 0600) and its folder (0700) when missing, and the key file beside it
    unless $GAITCAM_GALLERY_KEY holds the key. Use as a context manager or call `close()`.
    `timeout` is how long a write waits for another writer, in seconds.
    """

    _key: protect.Key
    _check: str | None  # the key check in meta that `_key` passed
    _ID = "INTEGER PRIMARY KEY"  # the column types that differ between stores
    _BLOB = "BLOB"
    POLL_S = 0.25  # how often `wait_for_change` looks at the generation (another store may be told instead)

    def __init__(self, path: str | Path, timeout: float = 10.0) -> None:
        """`path`: the database file; it also names the key file (`<path>.key`). `where`, what
        messages call the gallery, is the path here (a store on a server names its URL)."""
        self.path = Path(path).expanduser()
        self.where = str(self.path)
        self.closed = False
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
            protect.private_folder(self.path.parent, "a gallery of biometric templates")
        except OSError as e:
            raise GaitcamError(f"{self.where}: cannot create gallery ({e.strerror})") from None
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
            self.closed = True
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
            raise GaitcamError(f"{self.where}: gallery {reason}") from None

    @contextmanager
    def _transaction(self, write: bool, bump: bool = True) -> Iterator[Any]:
        """One transaction; writes take the write lock up front so they never deadlock upgrading,
        and count a new generation (`_bump`) unless `bump` is off: a write that changes nothing a
        matcher reads (`sightings`) must not make every camera reload."""
        with self._lock, self._translated():
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield conn
                if write and bump:
                    self._bump(conn)
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
            conn.commit()

    def _ddl(self, script: str) -> str:
        return script.replace("{id}", self._ID).replace("{blob}", self._BLOB)

    @staticmethod
    def _tables(c: Any) -> set[str]:
        return {name for (name,) in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    @staticmethod
    def _set_meta(c: Any, key: str, value: str) -> None:
        c.execute("INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def _bump(self, c: Any) -> None:
        """Count one more generation in the transaction that changes the gallery, so every
        process with it open (`wait_for_change`) sees that it must reload. (A new file's first
        transaction has created its tables by now.)"""
        c.execute("INSERT INTO meta VALUES ('generation', '1') ON CONFLICT (key)"
                  " DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + 1 AS TEXT)")

    # -- changes from other processes ---------------------------------------------------

    def generation(self) -> int:
        """How many write transactions the gallery has seen: it changes with every enrolment,
        rename, removal and rekey, from any process."""
        with self._transaction(write=False) as c:
            row = c.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return 0 if row is None else int(row[0])

    def wait_for_change(self, seen: int, timeout: float) -> int:
        """The generation, once it differs from `seen` or `timeout` seconds have passed. A
        SQLite file has no way to be told, so it is polled (every `POLL_S`)."""
        deadline = time.monotonic() + timeout
        while (now := self.generation()) == seen and time.monotonic() < deadline:
            time.sleep(min(self.POLL_S, max(0.0, deadline - time.monotonic())))
        return now

    def _init_schema(self) -> None:
        """Finish an interrupted scrub, create the tables in a new file or upgrade an older
        one, and find the key that opens its templates.

        Only a new, older or half-rekeyed file (or one with a scrub left to finish) takes the
        write lock, so opening an up-to-date gallery never waits for (or fails on) a writer in
        another process.
        """
        with self._transaction(write=False) as c:
            version, check, pending = self._state(c)
        if pending:
            log.warning("%s: finishing the scrub of deleted data an interrupted process left", self.where)
            self._scrub_or_defer()
        key = protect.key_file(self.path)
        unsettled = protect.new_key_file(key).exists() or protect.old_key_file(key).exists()
        if version == SCHEMA_VERSION and not unsettled:
            self._key, self._check = protect.find_key(self.path, check), check
            return
        encrypted = 0
        with self._transaction(write=True) as c:
            version, check, _ = self._state(c)  # another process may have changed it meanwhile
            self._settle_key(check)
            if version is None:
                self._create(c)
            elif version < SCHEMA_VERSION:
                encrypted = self._encrypt_plaintext(c)
            self._finish_rewrap(c)
        if version is not None and version < SCHEMA_VERSION:
            log.warning("%s: encrypted %d template(s) that were stored in plaintext (key: %s)", self.where,
                        encrypted, self._key.where)
            self._scrub_or_defer()

    def _state(self, c: sqlite3.Connection) -> tuple[int | None, str | None, int]:
        """The file's schema version (None: a new, empty file), key check and pending scrubs."""
        tables = self._tables(c)
        if not tables:
            return None, None, 0
        if "meta" not in tables:
            raise GaitcamError(f"{self.where}: not a gaitcam gallery")
        meta = dict(c.execute("SELECT key, value FROM meta WHERE key IN ('schema_version', 'key_check')"))
        if "schema_version" not in meta:
            raise GaitcamError(f"{self.where}: not a gaitcam gallery (no schema version)")
        try:
            version = int(meta["schema_version"])
        except (TypeError, ValueError):
            version = 0
        if version < 1:
            raise GaitcamError(f"{self.where}: not a gaitcam gallery "
                               f"(schema version {str(meta['schema_version'])[:40]!r})")
        if version > SCHEMA_VERSION:
            raise GaitcamError(f"{self.where}: gallery written by a newer gaitcam (schema {version})")
        if version == 1:
            return version, None, 0
        if "key_check" not in meta:
            raise GaitcamError(f"{self.where}: not a gaitcam gallery (no key check)")
        pending = c.execute("SELECT count(*) FROM pending_scrub").fetchone()[0]
        return version, meta["key_check"], pending

    def _settle_key(self, check: str | None, quiet: bool = False) -> None:
        """Take the key that passes `check`, finishing a rekey's key files; under the write
        lock, so no rekey is between writing its new key and committing."""
        self._key, self._check = protect.settle(protect.find_key(self.path, check), quiet), check

    @staticmethod
    def _stored_check(c: sqlite3.Connection) -> str:
        return c.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()[0]

    def _current_key(self, c: sqlite3.Connection) -> protect.Key:
        """The key for this transaction: another process may have rekeyed since we opened."""
        check = self._stored_check(c)
        if check != self._check:
            self._key, self._check = protect.find_key(self.path, check), check
        return self._key

    def _create(self, c: sqlite3.Connection) -> None:
        for statement in _statements(self._ddl(_SCHEMA)):
            c.execute(statement)
        self._check = self._key.check()
        c.executemany("INSERT INTO meta VALUES (?, ?)",
                      [("schema_version", str(SCHEMA_VERSION)), ("key_check", self._check)])

    def _encrypt_plaintext(self, c: sqlite3.Connection) -> int:
        """Schema 1 stored templates in plaintext: rebuild the table with sealed blobs, and
        journal the scrub that removes the old bytes. Returns how many templates were sealed."""
        c.execute(self._ddl(_TEMPLATES.replace("{name}", "templates_sealed")))
        old = c.execute(f"SELECT {_TEMPLATE_COLUMNS} FROM templates")
        c.executemany(f"INSERT INTO templates_sealed ({_TEMPLATE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      ((*r[:8], self._seal(self._key, r[1], *r[3:9]), r[9]) for r in old))
        count = c.execute("SELECT count(*) FROM templates_sealed").fetchone()[0]
        c.execute("DROP TABLE templates")
        c.execute("ALTER TABLE templates_sealed RENAME TO templates")
        for statement in _statements(self._ddl(_TEMPLATE_INDEXES + _PENDING_SCRUB)):
            c.execute(statement)
        self._journal(c, "plaintext templates encrypted")
        self._check = self._key.check()
        c.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        c.execute("INSERT INTO meta VALUES ('key_check', ?)", (self._check,))
        return count

    @staticmethod
    def _seal(key: protect.Key, person: int, kind: str, version: str, sensor: str, dim: int, count: int,
              data: bytes) -> bytes:
        return key.seal(data, protect.template_aad(person, kind, version, sensor, dim, count))

    def _unseal(self, key: protect.Key, person: int, kind: str, version: str, sensor: str, dim: int,
                count: int, blob: bytes) -> bytes:
        data = key.unseal(blob, protect.template_aad(person, kind, version, sensor, dim, count))
        if data is None:
            raise GaitcamError(f"{self.where}: a {kind!r} template does not decrypt "
                               "(altered, or moved from another row or person)")
        return data

    @staticmethod
    def _person_id(c: sqlite3.Connection, name: str) -> int:
        if isinstance(name, str):
            name = unicodedata.normalize("NFKC", name)  # as names are stored
        row = c.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise GaitcamError(f"no one named {name!r} in the gallery")
        return row[0]

    @staticmethod
    def _journal(c: sqlite3.Connection, reason: str) -> None:
        """Record, in the transaction that deletes data, that the files still need a scrub."""
        c.execute("INSERT INTO pending_scrub (reason, created) VALUES (?, ?)", (reason, _now()))

    def _scrub(self) -> bool:
        """Rebuild the file and empty the WAL so deleted rows leave no bytes behind, then clear
        the journal rows that asked for it. False when another process keeps the WAL.

        secure_delete already zeroed the freed pages; VACUUM drops them and the free list,
        the TRUNCATE checkpoint copies the result into the database file and empties the WAL
        (which still holds the rows as they were first written). The journal rows stay until
        that is done, so a process killed on the way leaves the scrub to the next open.
        """
        with self._lock, self._translated():
            (last,) = self._conn.execute("SELECT max(id) FROM pending_scrub").fetchone()
            self._conn.execute("VACUUM")
            busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                return False
            self._conn.execute("DELETE FROM pending_scrub WHERE id <= ?", (last,))
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return True

    def _scrub_or_defer(self) -> None:
        """Scrub now or, when another process holds the gallery, warn and leave it (journalled)
        to the next open: what asked for it is committed, and must not fail for it."""
        try:
            if self._scrub():
                return
        except GaitcamError as e:
            log.warning("%s; the scrub of deleted data is retried at the next open", e)
            return
        log.warning("%s: %s", self.where, _SCRUB_DELAYED)

    # -- writing ------------------------------------------------------------------------

    def enroll(self, name: str, templates: list[Template], recording: RecordingRef | None = None,
               replace: bool = False) -> int:
        """Add one enrolment (a walk) to `name`, creating the person if new.

        All of it is committed or none. A second enrolment appends to the person's templates;
        `replace=True` first drops all the person's templates and recording references.
        Returns how many templates the person has now. Replaced templates are scrubbed from
        the files like a removal's.
        """
        name = names.normalise(name)
        if not templates:
            raise GaitcamError(f"nothing to enroll for {name!r} (no templates)")
        rows = [(t.kind, t.encoder_version, t.sensor, t.vectors.shape[1], t.vectors.shape[0]) for t in templates]
        replaced = False
        with self._transaction(write=True) as c:
            key = self._current_key(c)
            row = c.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                person = c.execute("INSERT INTO people (name, created) VALUES (?, ?) RETURNING id",
                                   (name, _now())).fetchone()[0]
            else:
                person = row[0]
                if replace:
                    replaced = (c.execute("DELETE FROM templates WHERE person_id = ?", (person,)).rowcount
                                + c.execute("DELETE FROM recordings WHERE person_id = ?", (person,)).rowcount) > 0
                    if replaced:
                        self._journal(c, "templates replaced")
            rec = None if recording is None else self._recording_id(c, person, recording)
            ids = [c.execute(
                "INSERT INTO templates (person_id, recording_id, kind, encoder_version, sensor, dim, count,"
                " vectors, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (person, rec, *r, self._seal(key, person, *r, t.vectors.astype("<f4", copy=False).tobytes()),
                 _now())).fetchone()[0]
                for r, t in zip(rows, templates)]
            self._enrolled(c, person, list(zip(ids, templates)))
            total = c.execute("SELECT count(*) FROM templates WHERE person_id = ?", (person,)).fetchone()[0]
        if replaced:
            self._scrub_or_defer()
        return total

    def _enrolled(self, c: Any, person: int, rows: list[tuple[int, Template]]) -> None:
        """One walk's templates were just written (their row ids): a store that keeps more per
        walk adds it here, in the same transaction (a PostgreSQL gallery its plain vectors)."""

    @staticmethod
    def _recording_id(c: sqlite3.Connection, person: int, rec: RecordingRef) -> int:
        """Re-enrolling from the same recording (say with a retrained encoder) reuses its row."""
        path = str(Path(rec.path).resolve())  # relative paths would break from another folder
        row = c.execute("SELECT id FROM recordings WHERE person_id = ? AND sha256 = ? AND track IS NOT DISTINCT FROM ?",
                        (person, rec.sha256, rec.track)).fetchone()
        if row is not None:
            c.execute("UPDATE recordings SET path = ?, sensor = ? WHERE id = ?", (path, rec.sensor, row[0]))
            return row[0]
        return c.execute(
            "INSERT INTO recordings (person_id, path, sha256, sensor, track, added) VALUES (?, ?, ?, ?, ?, ?)"
            " RETURNING id", (person, path, rec.sha256, rec.sensor, rec.track, _now())).fetchone()[0]

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
            self._journal(c, "person removed")
        if not self._scrub():
            raise GaitcamError(f"{self.where}: removed, but {_SCRUB_DELAYED}")
        if delete_recordings:
            for p in orphans:
                try:
                    p.unlink(missing_ok=True)
                except OSError as e:
                    raise GaitcamError(f"{p}: cannot delete recording ({e.strerror})") from None
        return orphans

    def rekey(self, folders: Iterable[str | Path] = ()) -> Rekeyed:
        """Re-encrypt every template with a new random key, and re-wrap the data key of every
        encrypted recording the gallery refers to or that lies under `folders`.

        Crash-safe at every step: under the write lock the new key is written (`<key>.new`) and
        the old one kept (`<key>.old`, both fsynced) before the templates' transaction commits;
        then, under the write lock again, the new key is renamed over the key file, the
        recordings re-wrapped and `.old` deleted (retired while recordings the gallery refers to
        are missing). `folders` are committed with the templates, so an open finishes an
        interrupted rekey whole (the rename, then the re-wrapping); a reader meanwhile tries the
        key file, `.new` and `.old`. The old ciphertext is scrubbed. Refused while a previous
        rekey's `.old` is still kept for recordings it could not re-wrap: that is their only key.
        """
        if os.environ.get(protect.KEY_ENV) is not None:
            raise GaitcamError(f"gallery rekey writes a new key file ({protect.key_file(self.path)}), but the key "
                               f"comes from {protect.KEY_ENV}: unset it, with the key saved in that file, to rekey")
        folders = [Path(f).expanduser() for f in folders]
        for folder in folders:
            if not folder.is_dir():
                raise GaitcamError(f"{folder}: not a folder of recordings")
        with self._transaction(write=True) as c:
            self._settle_key(self._stored_check(c))
            self._finish_rewrap(c)  # its old key must go before ours is kept
            kept = protect.old_key_file(protect.key_file(self.path))
            if kept.exists():  # some recordings still need it: a new rekey must neither replace nor drop it
                raise GaitcamError(f"{kept}: the last rekey's old key is still needed by encrypted recording(s) that "
                                   "could not be re-wrapped (named in the log); make them writable and open the "
                                   "gallery again to finish that rekey, then rekey")
            old = self._key
            new = protect.write_new_key(old)
            saved = False
            try:
                # Kept before the commit: once it commits any open may retire the old key file.
                protect.save_old_key(old)
                saved = True
                self._set_meta(c, _REWRAP_FOLDERS, json.dumps([str(f.resolve()) for f in folders]))
                ids = [i for (i,) in c.execute("SELECT id FROM templates ORDER BY id")]
                for i in ids:
                    *meaning, blob = c.execute("SELECT person_id, kind, encoder_version, sensor, dim, count, vectors"
                                               " FROM templates WHERE id = ?", (i,)).fetchone()
                    plain = self._unseal(self._key, *meaning, blob)
                    c.execute("UPDATE templates SET vectors = ? WHERE id = ?", (self._seal(new, *meaning, plain), i))
                c.execute("UPDATE meta SET value = ? WHERE key = 'key_check'", (new.check(),))
                self._journal(c, "rekeyed")
            except BaseException:
                assert new.file is not None
                new.file.unlink(missing_ok=True)  # never committed
                if saved:  # ours, a copy of the current key; never another rekey's
                    protect.drop_old_key(self.path)
                raise
        with self._transaction(write=True) as c:  # another process may have settled it already
            self._settle_key(self._stored_check(c), quiet=True)
            moved = self._rewrap_pending(c, old)
        self._scrub_or_defer()
        assert self._key.file is not None
        return Rekeyed(len(ids), self._key.file, moved)

    def _finish_rewrap(self, c: sqlite3.Connection) -> None:
        """A rekey not done yet (killed, or another process's between its two transactions) left
        the old key (`<key>.old`): finish its re-wrapping (under the write lock, with the key that
        passes the check). Killed before its commit, `.old` is the current key and nothing needs
        re-wrapping; it just goes."""
        old = protect.read_old_key(self.path)
        if old is None:
            return
        moved = self._rewrap_pending(c, old)
        log.warning("%s: finished a rekey's re-wrapping: re-wrapped %d encrypted recording(s) for the new key "
                    "(%d missing, %d unopenable, %d failed)", self.where, moved.rewrapped, moved.missing,
                    moved.unopenable, moved.failed)

    def _rewrap_pending(self, c: sqlite3.Connection, old: protect.Key) -> Rewrapped:
        """Re-wrap what the last rekey covers (the gallery's recordings and its folders), then
        forget its folders and delete the old key: from now on only the current key is needed.
        Recordings the gallery refers to that are missing (an unmounted disk) may come back still
        wrapped by it: then it is retired instead (`protect.retire_old_key`), never deleted."""
        row = c.execute("SELECT value FROM meta WHERE key = ?", (_REWRAP_FOLDERS,)).fetchone()
        moved = self._rewrap(c, old, [] if row is None else [Path(f) for f in json.loads(row[0])])
        if moved.failed:  # they may still need it: kept, and the next open tries again
            log.warning("%s: kept, as %d encrypted recording(s) could not be re-wrapped for the new key (above); "
                        "the gallery tries again when next opened", protect.old_key_file(protect.key_file(self.path)),
                        moved.failed)
            return moved
        c.execute("DELETE FROM meta WHERE key = ?", (_REWRAP_FOLDERS,))
        if not moved.missing or old.same(self._key):  # (the same: a rekey killed before its commit)
            protect.drop_old_key(self.path)
        elif (retired := protect.retire_old_key(self.path)) is not None:  # None: another open retired it
            log.warning("%s: %d encrypted recording(s) the gallery refers to are missing and may still need the old "
                        "key, kept as %s; delete it once those recordings are gone for good", self.where,
                        moved.missing, retired)
        return moved

    def _rewrap(self, c: sqlite3.Connection, old: protect.Key, folders: Iterable[Path]) -> Rewrapped:
        """Re-wrap, from `old` to the current key, every encrypted recording the gallery refers
        to and every `.gaitrec` under `folders`. One that cannot be is logged and counted, never
        fatal: the templates are rekeyed already, and an open that finishes a rekey must not fail
        on one bad file."""
        paths = [Path(p) for (p,) in c.execute("SELECT DISTINCT path FROM recordings ORDER BY path")]
        paths += sorted(p for folder in folders for p in folder.rglob(f"*{native.SUFFIX}") if p.is_file())
        done = Rewrapped()
        for path in dict.fromkeys(paths):
            try:
                outcome = native.rewrap_file(path, old, self._key)
            except (GaitcamError, OSError) as e:
                log.warning("not re-wrapped for the new gallery key: %s", e)
                done.failed += 1
                continue
            if outcome == "unopenable":
                log.warning("%s: not re-wrapped: neither the old nor the new gallery key opens it (another "
                            "gallery's key, or a damaged encryption header)", path)
            done.rewrapped += outcome == "rewrapped"
            done.missing += outcome == "missing"
            done.unopenable += outcome == "unopenable"
        return done

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
            key = self._current_key(c)
            if encoder_version is None:
                found = sorted(v for (v,) in c.execute(
                    "SELECT DISTINCT encoder_version FROM templates WHERE kind = ?", (kind,)))
                if len(found) > 1:
                    raise GaitcamError(f"{self.where}: {kind!r} templates from several encoder versions "
                                       f"({', '.join(found)}); name one, or re-enroll")
                encoder_version = found[0] if found else ""
            rows = c.execute(
                "SELECT p.name, p.id, t.sensor, t.dim, t.count, t.vectors FROM templates t JOIN people p"
                " ON p.id = t.person_id WHERE t.kind = ? AND t.encoder_version = ? ORDER BY p.name, t.id",
                (kind, encoder_version)).fetchall()
        names = [name for name, *_ in rows]
        vectors = [np.frombuffer(self._unseal(key, person, kind, encoder_version, sensor, dim, count, blob),
                                 dtype="<f4").astype(np.float32).reshape(count, dim)
                   for _, person, sensor, dim, count, blob in rows]
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

    def export(self, name: str) -> dict[str, Any]:
        """Everything the gallery holds about `name`, as plain JSON-ready data: what a data
        subject's access request (GDPR art. 15) is owed. Templates come decrypted (lists of
        floats that round-trip to the stored float32 exactly); each recording reference says
        whether its file still exists. The caller must keep it as private as the gallery."""
        with self._transaction(write=False) as c:
            key = self._current_key(c)
            person = self._person_id(c, name)
            stored_name, created = c.execute("SELECT name, created FROM people WHERE id = ?", (person,)).fetchone()
            recordings = c.execute("SELECT id, path, sha256, sensor, track, added FROM recordings"
                                   " WHERE person_id = ? ORDER BY id", (person,)).fetchall()
            templates = c.execute("SELECT recording_id, kind, encoder_version, sensor, dim, count, vectors, created"
                                  " FROM templates WHERE person_id = ? ORDER BY id", (person,)).fetchall()
        paths = {rec_id: path for rec_id, path, *_ in recordings}
        return {
            "format": EXPORT_FORMAT,
            "gallery": self.where,
            "exported": _now(),
            "name": stored_name,
            "created": created,
            "recordings": [{"path": path, "sha256": sha, "sensor": sensor, "track": track, "added": added,
                            "exists": Path(path).is_file()}
                           for _, path, sha, sensor, track, added in recordings],
            "templates": [{"kind": kind, "encoder_version": version, "sensor": sensor, "created": made,
                           "shape": [count, dim], "recording": paths.get(rec_id),
                           "vectors": np.frombuffer(self._unseal(key, person, kind, version, sensor, dim, count, blob),
                                                    dtype="<f4").reshape(count, dim).tolist()}
                          for rec_id, kind, version, sensor, dim, count, blob, made in templates],
        }

    def recordings(self, name: str) -> list[RecordingRef]:
        """The recordings `name` was enrolled from, oldest first."""
        with self._transaction(write=False) as c:
            person = self._person_id(c, name)
            return [RecordingRef(Path(p), h, s, t) for p, h, s, t in c.execute(
                "SELECT path, sha256, sensor, track FROM recordings WHERE person_id = ? ORDER BY id", (person,))]


def open_store(where: str | Path, timeout: float = 10.0) -> Gallery:
    """The gallery `where` names: a postgresql:// URL (`postgres.PostgresGallery`, a site's
    shared gallery), else a SQLite file (created when missing)."""
    text = str(where)
    if "://" in text:
        from gaitcam.identity import postgres

        if not postgres.is_url(text):
            raise GaitcamError(f"{text.split('://')[0]}://: not a gallery store gaitcam knows "
                               "(a SQLite file path, or postgresql://user@host:port/dbname)")
        return postgres.PostgresGallery(text, timeout)
    return Gallery(where, timeout)
