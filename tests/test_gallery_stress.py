"""Many cameras on one gallery: 4 processes enrolling (and removing) and 4 identifying, at once,
on a real PostgreSQL server and on one SQLite file. Nothing committed is lost, no name is held
twice, nothing deadlocks, and every identifying process stops seeing a removed person within
a second. The suite runs it for a few seconds; `GAITCAM_STRESS_SECONDS=60 pytest
tests/test_gallery_stress.py` is the long run."""
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from gaitcam.identity.gallery import open_store

REPO = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("GAITCAM_STRESS_SECONDS", "5"))

# One worker process: "enrol" enrols names of its own (and, every few, one more walk of a name
# every enroller shares), and removes some of its own, 5 changes a second each (20 a second in
# all: far more than a site's cameras and staff make); "identify" follows the gallery's changes
# as a camera does (`wait_for_change`) and matches a probe against all templates after each one.
# Each line printed is one fact with its wall-clock time.
WORKER = r"""
import json, sys, time
import numpy as np
from gaitcam.errors import GaitcamError
from gaitcam.identity.gallery import Template, open_store

role, where, me, end = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
rng = np.random.default_rng(int(me))
say = lambda **fact: print(json.dumps(fact), flush=True)
with open_store(where, timeout=30) as g:
    if role == "enrol":
        mine, k = [], 0
        while time.time() < end:
            k += 1
            name = "shared" if k % 5 == 0 else f"p{me}-{k}"
            g.enroll(name, [Template("age", "v1", "kinect", rng.standard_normal((2, 16)).astype(np.float32))])
            say(fact="enrolled", name=name, t=time.time())
            time.sleep(0.2)
            if name != "shared":
                mine.append(name)
            if len(mine) >= 3:
                gone = mine.pop(0)
                try:
                    g.remove(gone)
                except GaitcamError as e:  # committed; only the scrub waits for the other processes
                    if "removed, but" not in str(e):
                        raise
                say(fact="removed", name=gone, t=time.time())
    else:
        seen, probe, generation = set(), rng.standard_normal(16).astype(np.float32), -1
        while time.time() < end:
            generation = g.wait_for_change(generation, timeout=0.2)
            names, vectors = g.templates("age")
            now = time.time()
            if vectors:
                int(np.argmax(np.concatenate(vectors) @ probe))  # the match a camera makes with them
            present = set(names)
            for name in present - seen:
                say(fact="seen", name=name, t=now)
            for name in seen - present:
                say(fact="gone", name=name, t=now)
            seen = present
"""


def run_workers(where: str, seconds: float, env: dict[str, str], folder: Path) -> list[dict]:
    """The 8 workers at once; each writes its facts to a file of its own (a pipe nobody reads
    while waiting for another worker would fill, and block the worker on it)."""
    end = time.time() + 4.0 + seconds  # the workers start (imports) before the clock starts
    # The identifying processes go on 1.5 s after the last change, so they can see it.
    outs = [folder / f"worker-{i}.jsonl" for i in range(8)]
    procs = []
    for i, role in enumerate(["enrol"] * 4 + ["identify"] * 4):
        with open(outs[i], "w") as out:
            stop = end if role == "enrol" else end + 1.5
            procs.append(subprocess.Popen([sys.executable, "-c", WORKER, role, where, str(i), str(stop)], cwd=REPO,
                                          stdout=out, stderr=subprocess.PIPE, text=True, env=env))
    facts = []
    for i, p in enumerate(procs):
        try:
            _, err = p.communicate(timeout=max(0.0, end - time.time()) + 60)  # a deadlock fails here
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"worker {i} still running a minute after the end of the run: a deadlock")
        assert p.returncode == 0, f"worker {i} failed: {err[-2000:]}"
        facts += [{**json.loads(line), "worker": i} for line in outs[i].read_text().splitlines()]
    return facts


def check(where: str, facts: list[dict]) -> None:
    enrolled = defaultdict(int)
    removed = {f["name"]: f["t"] for f in facts if f["fact"] == "removed"}
    for f in facts:
        if f["fact"] == "enrolled":
            enrolled[f["name"]] += 1
    with open_store(where) as g:
        people = {p.name: p.n_templates for p in g.people()}
    # No lost enrolment, no duplicate: exactly the names enrolled and not removed, each with every
    # walk enrolled for it (the shared name's walks from 4 processes all on one person).
    assert people == {name: n for name, n in enrolled.items() if name not in removed}
    assert enrolled["shared"] >= 4 and len(removed) >= 4
    # Every identifying process that saw a removed person stops seeing them within a second.
    late = []
    for name, t in removed.items():
        for worker in range(4, 8):
            saw = [f["t"] for f in facts if f["worker"] == worker and f["name"] == name and f["fact"] == "seen"]
            gone = [f["t"] for f in facts if f["worker"] == worker and f["name"] == name and f["fact"] == "gone"]
            if saw and (not gone or max(gone) - t > 1.0):
                late.append((name, worker, round(max(gone) - t, 3) if gone else None))
    assert not late, f"{len(late)} removals seen late (name, worker, seconds), first: {late[:10]}"
    delays = sorted(min(f["t"] for f in facts if f["fact"] == "gone" and f["name"] == name and f["worker"] == w) - t
                    for name, t in removed.items() for w in range(4, 8)
                    if any(f["fact"] == "gone" and f["name"] == name and f["worker"] == w for f in facts))
    print(f"\n{'postgresql' if '://' in where else 'sqlite'}: {sum(enrolled.values())} enrolments "
          f"({enrolled['shared']} of one shared name), {len(removed)} removals, {len(people)} people at the end; "
          f"every removal seen by every identifying process within {max(max(delays, default=0), 0) * 1000:.0f} ms "
          "of the removing call's return")


def test_postgresql_many_processes_lose_nothing_and_see_removals_within_a_second(postgres_url, tmp_path):
    facts = run_workers(postgres_url, SECONDS, dict(os.environ), tmp_path)
    check(postgres_url, facts)


def test_sqlite_many_processes_lose_nothing_and_see_removals_within_a_second(tmp_path):
    where = str(tmp_path / "site.db")
    open_store(where).close()  # its key file, before eight processes race to make one
    facts = run_workers(where, SECONDS, dict(os.environ), tmp_path)
    check(where, facts)
