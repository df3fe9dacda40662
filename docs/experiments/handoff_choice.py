"""Which cross-camera linker design (`gaitcam/identity/handoff.py`), chosen on KGBD's lab
persons 1-82 only: the linker table of docs/accuracy.md's `benchmark handoff` section.

    PYTHONPATH=. nice -n 10 .venv/bin/python docs/experiments/handoff_choice.py --threads 2 \
        [--cache /tmp/handoff_lab.pkl] | tee docs/results/validation/handoff_choice.txt
    # 13 min on 2 shared cores, 12 of them encoding; from an existing --cache, 1-4 min

The lab's walks are encoded as `benchmark handoff` encodes them (`weights/sgela-lab82`, each
walk and its sensor-shifted copy); persons 83-164 are never read (their folders are listed,
to find the lab's half as the benchmark does). The routes are those `choose_threshold` draws
for the seed: the lab halved, the matcher fitted on one half and 5 schedules walked by the
other, both ways (10 routes; half of each half's people enrolled from their first walk). Each
design is walked over the same routes at the shipped threshold; link precision and recall
are pooled over the routes (a link is right when both tracks are the same person). The denser
crowds redraw each route's schedule with people entering every `--gaps` seconds on average,
right after the route is drawn (the same random stream), and walk the shipped linker over them.
"""
import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np

from gaitcam.evaluation.cross_site import groups
from gaitcam.evaluation.handoff import (GAP, LAB_SCHEDULES, Pass, Route, Walk, draw_route, encode, fit, in_transit,
                                        link_counts, number, rates, schedule, walk_route)
from gaitcam.identity.handoff import DEFAULT_THRESHOLD, DEFAULT_WAIT
from gaitcam.identity.matcher import MatcherParams
from gaitcam.recording.kgbd import list_walks
from gaitcam.session import load_encoder

REPO = Path(__file__).resolve().parents[2]


def lab_walks(root: str, weights: str, threads: int, cache: str | None) -> tuple[list[Walk], str]:
    """(the lab's walks encoded as `benchmark handoff` encodes them, the encoder's version),
    from `cache` when it holds them."""
    if cache and Path(cache).is_file():
        return pickle.loads(Path(cache).read_bytes())
    encoder = load_encoder(weights, "cpu", threads)
    kgbd = list_walks(root)
    lab_people = groups(kgbd)[0]
    mine = [w for w in kgbd if number(w.person) in lab_people]
    print(f"encoding {len(mine)} walks of KGBD persons {lab_people.start}-{lab_people.stop - 1} "
          f"with {weights}", file=sys.stderr, flush=True)
    found = encode(mine, encoder, shifted=True), encoder.version
    if cache:
        Path(cache).write_bytes(pickle.dumps(found))
    return found


def walking_order(passes: list[Pass]) -> dict[str, list[tuple[int, float]]]:
    """Each person's walks on a route, in walking order, with their seconds (`schedule`'s input)."""
    routes: dict[str, list[tuple[int, float]]] = {}
    for p in passes:
        routes.setdefault(p.person, []).append((p.walk, p.end - p.start))
    return routes


def lab_routes(lab: list[Walk], version: str, seed: int, gap: float = GAP) -> list[tuple[MatcherParams, Route]]:
    """The routes `choose_threshold` draws for `seed` (the same draws in the same order), each
    with the matcher fitted on the other half; at a `gap` other than `GAP` each route's
    schedule is drawn again at `gap` right after the route."""
    rng = np.random.default_rng([seed, 1])
    people = sorted({w.person for w in lab})
    order = rng.permutation(people)
    halves = [set(order[: len(people) // 2]), set(order[len(people) // 2:])]
    routes = []
    for fitted_on in halves:
        params = fit([w for w in lab if w.person in fitted_on], version, "lab half")
        walkers = [w for w in lab if w.person not in fitted_on]
        for _ in range(LAB_SCHEDULES):
            route = draw_route(walkers, params, rng)
            if gap != GAP:
                route.passes = schedule(walking_order(route.passes), rng, gap=gap)
            routes.append((params, route))
    return routes


def pooled(routes: list[tuple[MatcherParams, Route]], threshold: float, wait: float = DEFAULT_WAIT,
           names: bool = True, one_to_one: bool = True) -> dict:
    """Link counts and rates pooled over the routes, for one design."""
    counts = dict.fromkeys(("n_links_true", "n_links_made", "n_links_right"), 0)
    for params, r in routes:
        links = walk_route(r.passes, r.descriptors, r.names if names else dict.fromkeys(r.names), params, threshold,
                           wait=wait, one_to_one=one_to_one)
        for key, v in link_counts(r.passes, links).items():
            counts[key] += v
    return {**counts, **rates(counts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "kgbd"),
                        help="the KGBD folder that holds Data/ (default: ../shared/data/kgbd beside the repo)")
    parser.add_argument("--weights", default=str(REPO / "weights" / "sgela-lab82"), help="the lab's encoder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", help="a pickle of the lab's encoded walks: read when it exists, else written")
    parser.add_argument("--seed", type=int, default=0, help="as `benchmark handoff --seed`")
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--gaps", type=float, nargs="*", default=[3.0, 1.5],
                        help="denser crowds: mean seconds between two people entering the route")
    args = parser.parse_args()
    started = time.monotonic()
    lab, version = lab_walks(args.root, args.weights, args.threads, args.cache)
    designs = [  # (label, routes' gap, walk_route's options)
        ("shipped: joint assignment, decided 20 s after a track is reported", GAP, {}),
        ("the same, decided 10 s after", GAP, {"wait": 10.0}),
        ("decided at once (wait 0: first come, first served)", GAP, {"wait": 0.0}),
        ("independent thresholding (each track its best candidate, taken or not)", GAP, {"one_to_one": False}),
        ("without the gallery's names", GAP, {"names": False}),
    ] + [(f"shipped, people entering every {gap:g} s", gap, {}) for gap in args.gaps]
    routes = {}
    rows = []
    for label, gap, options in designs:
        if gap not in routes:
            routes[gap] = lab_routes(lab, version, args.seed, gap)
        print(f"{label} ({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
        rows.append((label, gap, pooled(routes[gap], args.threshold, **options)))
    print(f"KGBD persons {min(number(w.person) for w in lab)}-{max(number(w.person) for w in lab)} (the lab), "
          f"seed {args.seed}: {len(routes[GAP])} routes, threshold {args.threshold:g}, encoder {version}")
    for gap, rs in routes.items():
        transit = [in_transit(r.passes) for _, r in rs]
        print(f"people entering every {gap:g} s on average: {np.mean([t[0] for t in transit]):.1f} in transit at "
              f"once on average (over the routes), at most {max(t[1] for t in transit)}")
    print()
    print("| linker | lab precision % | lab recall % | links made | right | true |")
    print("|---|---|---|---|---|---|")
    for label, _, r in rows:
        print(f"| {label} | {100 * r['precision']:.1f} | {100 * r['recall']:.1f} | {r['n_links_made']} | "
              f"{r['n_links_right']} | {r['n_links_true']} |")
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
