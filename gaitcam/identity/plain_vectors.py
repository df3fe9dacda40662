"""Plain vectors: an opt-in copy of every enrolled walk's vector, unencrypted, in a pgvector
column of a PostgreSQL gallery, so that the database itself finds a query's nearest walks.

By default templates are sealed in the process and searched there (`matcher.GalleryIndex`): the
server only ever holds ciphertext. A site that accepts unencrypted vectors on its server may
switch this on per gallery (`gallery plain-vectors on --yes`; the state is in `meta`, so every
process on the database agrees). Each walk of the matcher's template version then also has its
matcher-space vector (`MatcherParams.project`: unit length, compared by cosine) in the table
`plain_vectors`, keyed by the walk's `age` template row (deleted with it), with an HNSW index.
The encrypted templates stay the source of truth: the open-set calibration still reads them, and
a process whose matcher did not write the vectors rebuilds them from them when it opens the
gallery (`attach`).
"""
from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

import numpy as np

from gaitcam.errors import GaitcamError
from gaitcam.identity import openset
from gaitcam.identity.matcher import GalleryIndex, MatcherParams

if TYPE_CHECKING:
    from gaitcam.identity.gallery import Gallery, Template
    from gaitcam.identity.matcher import Evidence
    from gaitcam.identity.postgres import PostgresGallery

log = logging.getLogger(__name__)

META_KEY = "plain_vectors"  # in `meta` while on: {"matcher": fingerprint ("" out of step), "version", "dim"}
TABLE = "plain_vectors"
# Walks a query fetches. Enough for the nearest and second-nearest person to be among them in
# practice (a person enrols a few walks, so 64 walks span a dozen people or more); below
# `search.HNSW_EF_SEARCH` (128), the candidates pgvector's HNSW scan keeps, as it returns no more.
K = 64
KINDS = ("age", "cycle", "shape")  # the templates of one walk; the vector is keyed by the first's row

TRADE_OFF = (
    "Plain vectors store a template of every enrolled walk (its matcher-space vector) UNENCRYPTED in the "
    "database, beside the encrypted ones, so that PostgreSQL (pgvector) can search them. They are biometric data: "
    "anyone who can read the database (its users and administrators, a dump, a backup, the server's write-ahead "
    "log) can read them, and no gallery key or rekey protects them. `gallery plain-vectors off` deletes them from "
    "the tables, but dumps, backups and the write-ahead log taken meanwhile keep them until they are deleted or "
    "recycled.")


def fingerprint(params: MatcherParams) -> str:
    """What decides a walk's vector: the template version and the projection. A refit matcher
    (same encoder, new projection) gets a new one, so its vectors are rebuilt."""
    h = hashlib.sha256(f"{params.template_version}|{','.join(params.blocks)}".encode())
    for name in ("mean", "std", "projection", "shape_mean", "shape_cov"):
        h.update(np.ascontiguousarray(getattr(params, name), np.float64).tobytes())
    return h.hexdigest()[:32]


class WalkVectors:
    """How one matcher turns walks into the vectors the database searches."""

    def __init__(self, params: MatcherParams) -> None:
        self.params = params
        self.fingerprint = fingerprint(params)
        self.version = params.template_version
        self.dim = int(params.projection.shape[1])

    def of_evidence(self, evidence: list[Evidence]) -> np.ndarray:
        """[n, dim] unit vectors, exactly as `GalleryIndex` projects the same walks."""
        if not evidence:
            return np.zeros((0, self.dim), np.float32)
        return self.params.project(np.stack([e.descriptor(self.params.blocks) for e in evidence]))

    def of_walk(self, templates: dict[str, Template]) -> np.ndarray | None:
        """The vector of one walk's templates (by kind); None when they are not a whole walk of
        this matcher's template version (the in-process index would not compare it either)."""
        from gaitcam.identity.enrollment import _evidence_from

        if set(templates) != set(KINDS) or {t.encoder_version for t in templates.values()} != {self.version}:
            return None
        return self.of_evidence([_evidence_from(*(templates[k].vectors for k in KINDS))])[0]


def state(gallery: Gallery) -> dict | None:
    """The gallery's plain-vector state (see `META_KEY`); None when off or not on PostgreSQL."""
    from gaitcam.identity.postgres import PostgresGallery

    return gallery.plain_vectors() if isinstance(gallery, PostgresGallery) else None


def attach(gallery: Gallery, params: MatcherParams, rebuild: bool = True) -> None:
    """Let a PostgreSQL gallery keep its plain vectors (when on) in step with `params`: every walk
    enrolled through it gets its vector in its own transaction, and with `rebuild` all vectors
    are rebuilt now if another matcher (or none) wrote them. Called once a process opens the
    gallery, never on a reload: two processes with different matchers would rebuild in turn."""
    from gaitcam.identity.postgres import PostgresGallery

    if not isinstance(gallery, PostgresGallery):
        return
    gallery.walk_vectors = WalkVectors(params)
    if rebuild and (count := gallery.rebuild_plain_vectors()) is not None:
        log.warning("%s: rebuilt the plain vectors of %d walk(s) for matcher %s", gallery.where, count,
                    params.template_version)


class DatabaseIndex(GalleryIndex):
    """A `GalleryIndex` whose enrolled walks are searched by the database: a query's K nearest
    walks (`PostgresGallery.nearest_walks`, pgvector's HNSW), each person's distance their
    nearest walk among them over their impostor level, as in process. The levels, the cohort (the
    matcher's training walks, in memory) and the calibration are the loaded index's.

    A person with no walk among the K counts as the K-th distance over their level (a lower
    bound of their true distance), or as the nearest candidate, whichever is farther. So the
    nearest person is always a candidate, and the score is never more confident than the exact
    one: if the nearest candidate is the truly nearest person, every absent person's value is at
    most their true one, so the second-nearest (the score's denominator) can only come out nearer
    and the score lower; if an absent person is truly nearer still, they tie with the candidate
    (ratio 1) and the query is unknown. Errors go towards "unknown", never towards naming a
    stranger, and with K = 64 walks (a dozen people or more) they need a query close to nobody.
    With at most K walks enrolled every walk is a candidate: the in-process result, float32
    rounding apart. HNSW is approximate (recall@1 0.996 at 100k walks in `bench search`): a
    neighbour it misses is like an absent one.
    """

    def __init__(self, index: GalleryIndex, gallery: PostgresGallery) -> None:
        vars(self).update(vars(index))  # the loaded index as it is: only the enrolled walks' scan moves
        self.gallery = gallery
        self._column = {name: j for j, name in enumerate(self.people)}
        self._failed = False

    def distances(self, descriptors: np.ndarray) -> np.ndarray:
        """As `GalleryIndex.distances`. Once a search fails (the server lost, or plain vectors
        switched off), this index scans in the process, as it holds every walk: matching never
        waits on a lost server again, and the reload that follows a change decides anew."""
        if self._failed:
            return super().distances(descriptors)
        zq = self.params.project(descriptors)
        try:
            found = self.gallery.nearest_walks(zq, K)
        except GaitcamError as e:
            log.warning("%s; searching in the process from now on", e)
            self._failed = True
            return super().distances(descriptors)
        enrolled, named = len(self.names), len(self.people)
        # The cohort's columns in process; the enrolled people's columns come out infinite here.
        d = openset.normalised(zq, self.z[enrolled:], self.person_of[enrolled:], self.levels, self.n_columns)
        levels = self.levels[:named]
        for i, walks in enumerate(found):
            raw = np.full(named, np.inf)
            for name, distance in reversed(walks):  # nearest last: each person's nearest walk stays
                # A person of another snapshot (enrolled or renamed since this index was loaded)
                # is left out until the reload that the change triggers.
                if (j := self._column.get(name)) is not None:
                    raw[j] = min(max(distance, 0.0), 2.0)
            d[i, :named] = raw / levels
            absent = ~np.isfinite(raw)
            if len(walks) == K and absent.any():  # else the database holds no other walk
                nearest = d[i, :named][~absent].min(initial=np.inf)
                d[i, :named][absent] = np.maximum(walks[-1][1] / levels[absent], nearest)
        return d


def searching(gallery: Gallery, index: GalleryIndex) -> GalleryIndex:
    """`index` as it should search: in the database when the gallery's plain vectors are on and
    were written by this very matcher, else in the process (said in the log when they are on
    but out of step: another matcher wrote them, or a walk was enrolled without one)."""
    on = state(gallery)
    if on is None or not len(index):
        return index
    if on["matcher"] != fingerprint(index.params):
        log.warning("%s: plain vectors are on but out of step with this matcher; searching in the process until "
                    "it opens the gallery again and rebuilds them", gallery.where)
        return index
    return DatabaseIndex(index, gallery)
