"""One person across cameras: the `Linker` on synthetic descriptors (transit window, one-to-one,
site ids for strangers, names, events), the `benchmark handoff` protocol's schedule and counts,
and the command end to end on a small fake KGBD tree."""
import json

import jsonschema
import numpy as np
import pytest
import torch

from fake_kgbd import write_fake_kgbd
from gaitcam.cli import main
from gaitcam.evaluation.handoff import TRANSIT, Pass, in_transit, link_counts, rates, schedule
from gaitcam.events import SCHEMA, EventStream
from gaitcam.identity.handoff import Link, Linker, PairScorer
from gaitcam.identity.matcher import MatcherParams
from gaitcam.model.sgela import SGELA, SGELAConfig
from gaitcam.model.weights import save_weights

DIM = 16  # a "gait"-only descriptor of 2 x 8 numbers


@pytest.fixture(scope="module")
def params():
    """Matcher parameters that compare descriptors as they are (no whitening), with a cohort of
    40 random walks."""
    rng = np.random.default_rng(0)
    cohort = rng.normal(size=(40, DIM))
    cohort /= np.linalg.norm(cohort, axis=1, keepdims=True)
    return MatcherParams("synthetic", ("gait",), DIM // 2, np.zeros(DIM), np.ones(DIM), np.eye(DIM), np.zeros(15),
                         np.eye(15), 1.0, {}, cohort.astype(np.float32), np.arange(40))


def person(i: int, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A track of person i: their own direction, plus some noise of this track's."""
    v = np.zeros(DIM)
    v[i] = 1.0
    return v + noise * np.random.default_rng([i, seed]).normal(size=DIM)


def blend(i: int, j: int, share: float) -> np.ndarray:
    """Someone between persons i and j (share of j)."""
    return (1 - share) * person(i) + share * person(j)


def score(params, a: np.ndarray, b: np.ndarray) -> float:
    scorer = PairScorer(params)
    return PairScorer.score(scorer.embed(a), scorer.embed(b))


def test_the_same_person_scores_near_1_and_two_people_below_half(params):
    assert score(params, person(0, 0.02, 1), person(0, 0.02, 2)) > 0.9
    assert score(params, person(0), person(1)) < 0.5


def test_a_track_starting_on_another_camera_within_the_window_takes_the_ended_tracks_site_id(params):
    linker = Linker(params, threshold=0.5, window=(0.0, 30.0), wait=5.0)
    linker.track_started("A", 1, 0.0, person(0, 0.02, 1))
    assert linker.decide(5.0)[0].site_id == 1  # nobody before: a new person
    linker.track_ended("A", 1, 10.0, person(0, 0.02, 1))
    linker.track_started("B", 4, 16.0, person(0, 0.02, 2))
    assert linker.decide(20.0) == []  # still waiting for competitors
    (link,) = linker.decide(21.0)
    assert link.linked and link.site_id == 1 == linker.site_id("B", 4) and link.basis == "gait"
    assert (link.from_camera, link.from_track, link.to_camera, link.to_track) == ("A", 1, "B", 4)
    assert link.transit == 6.0 and link.score > link.threshold == 0.5


@pytest.mark.parametrize("camera, start", [("B", 41.0), ("B", 9.0), ("A", 15.0)],
                         ids=["after the window", "before the end", "same camera"])
def test_outside_the_transit_window_or_on_the_same_camera_nothing_links(params, camera, start):
    linker = Linker(params, threshold=0.5, window=(0.0, 30.0), wait=0.0)
    linker.track_ended("A", 1, 10.0, person(0))
    linker.track_started(camera, 2, start, person(0))
    (link,) = linker.decide(50.0)
    assert not link.linked and link.site_id == 2 and link.from_track is None and link.score is None


def test_one_ended_track_links_to_one_started_track_the_best(params):
    linker = Linker(params, threshold=0.5, wait=10.0)
    linker.track_ended("A", 1, 0.0, person(0))
    linker.track_started("B", 1, 5.0, person(0, 0.05, 1))
    linker.track_started("B", 2, 6.0, person(0, 0.1, 2))  # a worse copy, reported while the first waits
    links = {link.to_track: link for link in linker.decide(20.0)}
    assert links[1].linked and not links[2].linked and links[2].site_id != links[1].site_id
    assert links[2].from_track == 1 and links[2].score > 0.5  # the candidate is named, though not taken


def test_without_one_to_one_each_track_takes_its_best_candidate_whether_or_not_another_took_it(params):
    """The design the joint assignment replaced (`one_to_one=False`, for comparisons): both
    copies link to the one ended track, in one decision or in two."""
    for late in (False, True):
        linker = Linker(params, threshold=0.5, wait=0.0, one_to_one=False)
        linker.track_ended("A", 1, 0.0, person(0))
        linker.track_ended("A", 2, 0.0, person(3))
        linker.track_started("B", 1, 5.0, person(0, 0.05, 1))
        links = linker.decide(5.0) if late else []
        linker.track_started("B", 2, 6.0, person(0, 0.1, 2))
        links = {link.to_track: link for link in links + linker.decide(6.0)}
        assert all(links[k].linked and links[k].from_track == 1 and links[k].site_id == 1 for k in (1, 2))
        assert linker.site_id("A", 2) == 2  # the other ended track: untouched


def test_the_joint_assignment_keeps_a_lookalike_newcomer_off_anothers_track(params):
    """A newcomer who resembles X, reported before X arrives: deciding at once, the newcomer takes
    X's track; waiting for competitors and assigning jointly, X gets it."""
    newcomer, x_again = blend(0, 5, 0.3), person(0, 0.02, 1)
    assert score(params, newcomer, person(0)) > 0.5  # the newcomer would pass the threshold on their own
    for wait, newcomer_linked in ((0.0, True), (10.0, False)):
        linker = Linker(params, threshold=0.5, wait=wait)
        linker.track_ended("A", 1, 0.0, person(0))
        linker.track_started("B", 1, 4.0, newcomer)
        first = linker.decide(4.0)
        linker.track_started("B", 2, 6.0, x_again)
        links = {link.to_track: link for link in first + linker.decide(6.0) + linker.decide(20.0)}
        assert links[1].linked is newcomer_linked and links[2].linked is not newcomer_linked


def test_strangers_get_site_ids_that_follow_them_from_camera_to_camera(params):
    """Unknown #1 at A, then B, then A again; unknown #2 meanwhile at B then A; a third stays new."""
    linker = Linker(params, threshold=0.5, wait=5.0)
    walks = [("A", 1, 0.0, 10.0, 0), ("B", 1, 2.0, 12.0, 1), ("B", 2, 15.0, 25.0, 0), ("A", 2, 16.0, 30.0, 1),
             ("A", 3, 31.0, 40.0, 0), ("B", 3, 41.0, 50.0, 2)]
    decided = []
    for camera, track, start, end, who in walks:
        linker.track_started(camera, track, start, person(who, 0.02, track), now=start)
        decided += linker.decide(start)
        linker.track_ended(camera, track, end, person(who, 0.02, track))
        decided += linker.decide(end)
    decided += linker.flush()
    site = {(link.to_camera, link.to_track): link.site_id for link in decided}
    assert len(site) == len(walks) and all(isinstance(s, int) and s >= 1 for s in site.values())
    assert site[("A", 1)] == site[("B", 2)] == site[("A", 3)] != site[("B", 1)] == site[("A", 2)]
    assert site[("B", 3)] not in (site[("A", 1)], site[("B", 1)])


def test_a_track_taken_before_its_own_decision_passes_on_the_site_id_it_gets(params):
    linker = Linker(params, threshold=0.5, wait=30.0)
    linker.track_ended("A", 1, 0.0, person(0))  # never reported as started: a person of its own
    assert linker.site_id("A", 1) == 1
    linker.track_started("B", 1, 3.0, person(0, 0.02, 1), now=3.0)
    linker.track_ended("B", 1, 8.0, person(0, 0.02, 1))  # ends while its decision still waits
    linker.track_started("A", 2, 12.0, person(0, 0.02, 2), now=12.0)
    linker.decide(12.0)
    assert linker.site_id("B", 1) is None
    links = linker.flush()
    assert [link.to_track for link in links] == [1, 2] and all(link.linked and link.site_id == 1 for link in links)


def test_the_gallerys_names_decide_when_both_tracks_are_named(params):
    linker = Linker(params, threshold=0.5, wait=0.0)
    linker.track_ended("A", 1, 0.0, person(0), identity="ada")
    linker.track_ended("A", 2, 0.0, person(1), identity="ben")
    linker.track_started("B", 1, 5.0, person(1), identity="ada")  # walks like ben, named ada: ada
    linker.track_started("B", 2, 5.0, person(1))  # not named: gait decides
    links = {link.to_track: link for link in linker.decide(5.0)}
    assert (links[1].from_track, links[1].basis, links[1].score) == (1, "identity", 1.0) and links[1].linked
    assert (links[2].from_track, links[2].basis) == (2, "gait") and links[2].linked


def test_every_decision_is_a_link_event_of_the_schema_and_carries_no_name(params):
    stream, events = EventStream("site"), []
    linker = Linker(params, threshold=0.5, wait=0.0, publish=lambda kind, **fields: events.append(
        stream.make(kind, **fields)))
    linker.track_started("A", 1, 0.0, person(0), identity="ada")
    linker.decide(0.0)
    linker.track_ended("A", 1, 10.0, person(0), identity="ada")
    linker.track_started("B", 7, 15.0, person(0), identity="ada")
    linker.track_started("B", 8, 15.0, person(3))
    linker.decide(15.0)
    validator = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
    for event in events:
        validator.validate(event)
        assert event["event"] == "link" and event["camera"] == "site" and "identity" not in event
    assert [(e["to_track"], e["linked"], e["site_id"]) for e in events] == [(1, False, 1), (7, True, 1), (8, False, 2)]
    assert events[0]["from_camera"] is None and events[0]["score"] is None  # nothing in the window: still an event
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**events[1], "site_id": 0}, SCHEMA)


def test_link_fields_are_the_events_fields():
    link = Link("B", 2, 5, True, 0.5, "A", 1, 0.9, "gait", 3.0)
    event = EventStream("site").make("link", **link.fields())
    jsonschema.validate(event, SCHEMA)


def test_a_transit_window_that_ends_before_it_starts_is_refused(params):
    with pytest.raises(ValueError, match="transit window"):
        Linker(params, window=(10.0, 5.0))


# The protocol of `benchmark handoff`

def _routes(n: int = 20) -> dict[str, list[tuple[int, float]]]:
    rng = np.random.default_rng(5)
    return {f"Person{i:03d}": [(w, float(rng.uniform(7, 40))) for w in range(1, 5)] for i in range(1, n + 1)}


def test_the_schedule_is_seeded_alternates_cameras_and_puts_several_people_in_transit_at_once():
    routes = _routes()
    passes = schedule(routes, np.random.default_rng(3))
    assert passes == schedule(routes, np.random.default_rng(3)) != schedule(routes, np.random.default_rng(4))
    assert len(passes) == 80 and [p.start for p in passes] == sorted(p.start for p in passes)
    for camera in ("A", "B"):
        tracks = [p.track for p in passes if p.camera == camera]
        assert tracks == list(range(1, len(tracks) + 1))
    for name, walks in routes.items():
        mine = [p for p in passes if p.person == name]
        assert [p.walk for p in mine] == [w for w, _ in walks]
        assert all(a.camera != b.camera and TRANSIT[0] <= b.start - a.end <= TRANSIT[1] for a, b in zip(mine, mine[1:]))
        assert all(p.end - p.start == pytest.approx(s) for p, (_, s) in zip(mine, walks))
    mean, most = in_transit(passes)
    assert most >= 3 and mean > 1.0


def test_link_counts_score_links_by_person():
    passes = [Pass("P1", 1, "A", 1, 0.0, 10.0), Pass("P1", 2, "B", 1, 15.0, 25.0), Pass("P2", 1, "A", 2, 1.0, 9.0),
              Pass("P2", 2, "B", 2, 12.0, 20.0), Pass("P3", 1, "B", 3, 14.0, 30.0)]
    links = {("B", 1): Link("B", 1, 1, True, 0.5, "A", 1, 0.9), ("B", 2): Link("B", 2, 3, False, 0.5, "A", 2, 0.3),
             ("B", 3): Link("B", 3, 2, True, 0.5, "A", 2, 0.6)}
    counts = link_counts(passes, links)
    assert counts == {"n_links_true": 2, "n_links_made": 2, "n_links_right": 1}
    assert rates(counts) == {"precision": 0.5, "recall": 0.5}


@pytest.mark.usefixtures("one_thread")
def test_benchmark_handoff_end_to_end_on_a_small_tree(tmp_path, capsys):
    write_fake_kgbd(tmp_path, people=12, walks=4)
    torch.manual_seed(0)
    weights = tmp_path / "weights" / "lab"
    save_weights(SGELA(SGELAConfig(hidden=8)), weights, normalization="body")
    out = tmp_path / "handoff.json"
    assert main(["benchmark", "handoff", "--root", str(tmp_path), "--weights", str(weights), "--json", str(out),
                 "--seed", "1"]) == 0
    r = json.loads(out.read_text())
    assert r["persons"] == [7, 12] and r["n_enrolled"] == r["n_strangers"] == 3
    assert r["n_passes"] == 24 - 3 and r["n_links_true"] == 24 - 3 - 6  # an enrolled person's first walk: the gallery
    assert 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["n_links_made"] >= r["n_links_right"]
    assert "persons 1-6 only" in r["threshold_chosen_on"] and r["threshold"] in [row["threshold"] for row in
                                                                                 r["lab_validation"]]
    assert "precision" in capsys.readouterr().out
