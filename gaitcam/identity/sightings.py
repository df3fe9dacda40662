"""One site id across camera processes: ended tracks ("sightings") shared through the gallery store.

A site that runs one gaitcam process per camera (one per machine on a PostgreSQL gallery, or
several on one machine sharing a SQLite file) has no single process that sees every camera's
tracks, which the cross-camera `Linker` needs. So each camera process (`--site-links`) writes
every ended track into the gallery's `sightings` table (`SightingWriter`), and one process
(`gaitcam link`) follows that table and feeds a `Linker` exactly as a process with several
sources feeds its own (`report`): the same decisions, published as the same `link` events.

Sightings are biometric data, kept no longer than the linker can use them: whoever writes or
reads the table deletes rows that ended more than `keep` (the linker's `KEEP`, 120 s) ago.
Each row's descriptor and the matcher's name for the track are sealed with the gallery key
(AES-GCM, as templates are), bound to the row's camera, track, times and descriptor version, so
the store holds neither in the clear and a blob moved to another row does not open. Nothing
exports them. Deleted rows leave SQLite's pages zeroed (`secure_delete`); the write-ahead log
(SQLite's, the server's) and a server's dead rows keep the sealed bytes until recycled.

Why polling and no generation: a sighting must not count as a gallery change, which would make
every camera reload and recalibrate its index for each track that ends; and as every decision
waits `handoff.DEFAULT_WAIT` (20 s) for competitors, reading new rows every `POLL_S` (0.25 s)
costs nothing a notification would save. The follower reads on from the last row id it saw;
ids rise in commit order (writers are serialised: SQLite's single writer, the server store's
advisory lock taken before the insert) and are never reused (AUTOINCREMENT on SQLite).
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gaitcam.identity import protect
from gaitcam.identity.gallery import RETRY_S, Gallery, _statements
from gaitcam.identity.handoff import KEEP, Link, Linker
from gaitcam.identity.matcher import MatcherParams

log = logging.getLogger(__name__)

TABLE = "sightings"
POLL_S = Gallery.POLL_S  # how often the follower reads new sightings
_DDL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id {{serial}},
    camera TEXT NOT NULL,
    track INTEGER NOT NULL,
    started DOUBLE PRECISION NOT NULL,
    ended DOUBLE PRECISION NOT NULL,
    version TEXT NOT NULL,
    dim INTEGER NOT NULL CHECK (dim > 0),
    evidence {{blob}} NOT NULL CHECK (length(evidence) >= {protect.OVERHEAD} + 8 * dim)
);
CREATE INDEX IF NOT EXISTS {TABLE}_ended ON {TABLE}(ended)"""


@dataclass(frozen=True, eq=False)
class Sighting:
    """One ended track of one camera: wall-clock `start` and `end` (seconds, the clock the site's
    machines share), the descriptor version (`MatcherParams.template_version`), the matcher's
    name for it (None: unknown) and its descriptor (`Evidence.descriptor`). The repr leaves the
    descriptor and the name out: they must never reach logs."""

    camera: str
    track: int
    start: float
    end: float
    version: str
    identity: str | None = field(repr=False)
    descriptor: np.ndarray = field(repr=False)


def report(linker: Linker, s: Sighting) -> list[Link]:
    """Offer an ended track to `linker` as the live pipeline does: its descriptor is whole only at
    its end, so it is reported started and ended then, and decisions are taken up to its end."""
    linker.track_started(s.camera, s.track, s.start, s.descriptor, s.identity, now=s.end)
    linker.track_ended(s.camera, s.track, s.end, s.descriptor, s.identity)
    return linker.decide(s.end)


def _aad(camera: str, track: int, started: float, ended: float, version: str, dim: int) -> bytes:
    """What a sighting's blob is bound to: its row's meaning (times to the millisecond, as stored)."""
    return json.dumps(["gaitcam sighting", camera, track, f"{started:.3f}", f"{ended:.3f}", version, dim]).encode()


class SightingStore:
    """The `sightings` table of `gallery` (created on first write): written by camera processes,
    read by the site's linker, rows older than `keep` deleted by both."""

    def __init__(self, gallery: Gallery, keep: float = KEEP) -> None:
        self.gallery, self.keep = gallery, keep
        self._exists = False  # the table is known to be there

    def add(self, sightings: Sequence[Sighting]) -> None:
        """Store `sightings` in one transaction, which also deletes the expired ones. Not a gallery
        change: no generation is counted, so no camera reloads its index for it."""
        g = self.gallery
        with g._transaction(write=True, bump=False) as c:
            if not self._exists:
                for statement in _statements(g._ddl(_DDL.replace("{serial}", self._serial()))):
                    c.execute(statement)
            self._delete_expired(c)
            key = g._current_key(c)
            for s in sightings:
                start, end = round(s.start, 3), round(s.end, 3)
                data = np.asarray(s.descriptor, dtype="<f8")
                plain = data.tobytes() + (s.identity or "").encode()
                c.execute(f"INSERT INTO {TABLE} (camera, track, started, ended, version, dim, evidence)"
                          " VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (s.camera, s.track, start, end, s.version, data.size,
                           key.seal(plain, _aad(s.camera, s.track, start, end, s.version, data.size))))
        self._exists = True

    def _serial(self) -> str:
        """The id column: one that never reuses an id once the rows below it are deleted, as the
        follower reads on from the last id it saw (SQLite reuses the largest rowid without
        AUTOINCREMENT; the server's identity column never does)."""
        from gaitcam.identity.postgres import PostgresGallery

        return "{id}" if isinstance(self.gallery, PostgresGallery) else "INTEGER PRIMARY KEY AUTOINCREMENT"

    def since(self, last: int) -> list[tuple[int, float, Sighting | None]]:
        """The rows after id `last`, oldest first, as (id, end, sighting); the sighting is None
        where the blob does not open with the gallery key (sealed before a rekey, or altered).
        Empty while no camera has written one: the first makes the table."""
        g = self.gallery
        with g._transaction(write=False) as c:
            if not self._exists and TABLE not in g._tables(c):
                return []
            self._exists = True
            key = g._current_key(c)
            rows = c.execute(f"SELECT id, camera, track, started, ended, version, dim, evidence FROM {TABLE}"
                             " WHERE id > ? ORDER BY id", (last,)).fetchall()
        out = []
        for i, camera, track, start, end, version, dim, blob in rows:
            plain = key.unseal(bytes(blob), _aad(camera, track, start, end, version, dim))
            sighting = None if plain is None else Sighting(
                camera, track, start, end, version, plain[8 * dim:].decode() or None,
                np.frombuffer(plain[:8 * dim], dtype="<f8").astype(np.float64))
            out.append((i, end, sighting))
        return out

    def purge(self) -> None:
        """Delete the sightings that ended more than `keep` seconds ago."""
        with self.gallery._transaction(write=True, bump=False) as c:
            if self._exists or TABLE in self.gallery._tables(c):
                self._delete_expired(c)

    def _delete_expired(self, c: Any) -> None:
        c.execute(f"DELETE FROM {TABLE} WHERE ended < ?", (time.time() - self.keep,))


class SightingWriter:
    """A camera process's side: its ended tracks stored from a thread of its own, so the live
    pipeline never waits for the store. While the store cannot be written they wait, retried
    with backoff; those older than `keep` are dropped (no linker could use them any more)."""

    def __init__(self, store: SightingStore) -> None:
        self.store = store
        self._pending: list[Sighting] = []
        self._ready = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="gaitcam-sightings", daemon=True)
        self._thread.start()

    def put(self, sighting: Sighting) -> None:
        with self._ready:
            self._pending.append(sighting)
            self._ready.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every sighting put so far is stored (False: not within `timeout`)."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._pending, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Store what is queued (one try, when the store is away), then end the thread."""
        with self._ready:
            self._closing = True
            self._ready.notify_all()
        self._thread.join(timeout)

    def _run(self) -> None:
        retry = RETRY_S[0]
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._pending or self._closing)
                batch = list(self._pending)
                if not batch:
                    return
            try:
                self.store.add(batch)
            except Exception as e:  # noqa: BLE001 (a lost store must not end the camera's links for good)
                with self._ready:
                    cutoff = time.time() - self.store.keep
                    kept = [s for s in self._pending if s.end >= cutoff and not self._closing]
                    lost, self._pending = len(self._pending) - len(kept), kept
                    self._ready.notify_all()
                    log.warning("%s; %d sighting(s) for the site's linker wait (retrying in %.1f s), %d dropped",
                                e, len(kept), retry, lost)
                    self._ready.wait_for(lambda: self._closing, retry)
                retry = min(2 * retry, RETRY_S[1])
                continue
            retry = RETRY_S[0]
            with self._ready:
                del self._pending[:len(batch)]
                self._ready.notify_all()


@dataclass
class Counts:
    """What the site linker has read: sightings reported to it, and those skipped (each kind said
    once in the log): not decrypting, of another descriptor version, a track already reported."""

    sightings: int = 0
    unreadable: int = 0
    other_version: int = 0
    repeated: int = 0
    decisions: int = 0
    linked: int = 0


class SiteLinker:
    """The site's linker for cameras in other processes: follows the sightings of `gallery` and
    reports each to a `Linker` (`report`), deciding as time passes; every decision goes to
    `publish` (e.g. `EventBus("site").publish`) as a `link` event. `run` until `stop` or a
    duration, then `flush`. Its state (the linker, the last row read) outlives a lost store."""

    def __init__(self, gallery: Gallery, params: MatcherParams, publish: Callable[..., Any] | None = None,
                 keep: float = KEEP, **linker: Any) -> None:
        """`linker`: the `Linker`'s threshold, window and wait."""
        self.store = SightingStore(gallery, keep)
        self.version = params.template_version
        self.linker = Linker(params, keep=keep, publish=publish, **linker)
        self.counts = Counts()
        self._last = 0  # the last row id read
        self._ends: list[float] = []  # when the rows read (and not deleted yet) ended
        self._stop = threading.Event()

    def step(self, now: float | None = None) -> list[Link]:
        """Read the sightings written since the last step, report them in the order they ended,
        decide what is due at `now` (default: the wall clock), and delete expired rows once some
        are."""
        now = time.time() if now is None else now
        rows = self.store.since(self._last)
        links = []
        for i, end, s in sorted(rows, key=lambda r: (r[1], r[0])):
            self._last = max(self._last, i)
            self._ends.append(end)
            if (skip := self._skip(s)) is not None:
                self._count(skip, s)
                continue
            try:
                links += report(self.linker, s)
            except ValueError:  # the camera's process restarted and numbers its tracks anew
                self._count("repeated", s)
                continue
            self.counts.sightings += 1
        links = self._counted(links + self.linker.decide(now))
        if self._ends and min(self._ends) < now - self.store.keep:
            self.store.purge()
            self._ends = [e for e in self._ends if e >= now - self.store.keep]
        return links

    def _skip(self, s: Sighting | None) -> str | None:
        if s is None:
            return "unreadable"
        return "other_version" if s.version != self.version else None

    def _count(self, kind: str, s: Sighting | None) -> None:
        n = getattr(self.counts, kind) + 1
        setattr(self.counts, kind, n)
        if n == 1:
            why = {"unreadable": "does not open with the gallery key (sealed before a rekey, or altered)",
                   "other_version": f"comes from another encoder or descriptor version than this linker's "
                                    f"({self.version}); run the linker with the cameras' weights",
                   "repeated": "repeats a track already reported (its camera's process restarted?)"}[kind]
            where = "" if s is None else f" (camera {s.camera!r}, track {s.track})"
            log.warning("a sighting%s %s: skipped (counted, said once)", where, why)

    def _counted(self, links: list[Link]) -> list[Link]:
        self.counts.decisions += len(links)
        self.counts.linked += sum(link.linked for link in links)
        return links

    def flush(self) -> list[Link]:
        """Decide every track still waiting (at the end of a run)."""
        return self._counted(self.linker.flush())

    def run(self, duration: float | None = None) -> None:
        """Follow the sightings until `stop` or `duration` seconds; then one last read (so what
        the cameras stored before the end counts) and `flush`. While the store cannot be read the
        linker keeps its state and retries with backoff."""
        deadline = None if duration is None else time.monotonic() + duration
        retry = RETRY_S[0]
        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                self.step()
                wait, retry = POLL_S, RETRY_S[0]
            except Exception as e:  # noqa: BLE001 (the linker must outlive a lost store, with its state)
                log.warning("%s; the site linker keeps its state and retries in %.1f s", e, retry)
                wait, retry = retry, min(2 * retry, RETRY_S[1])
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._stop.wait(wait if left is None else min(wait, left))
        try:
            self.step()
        except Exception as e:  # noqa: BLE001 (the tracks read so far are still decided)
            log.warning("%s; the last sightings were not read", e)
        self.flush()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        """End `run` (from a signal handler or another thread)."""
        self._stop.set()
