"""The matcher: evidence pooling, the learned whitening, shape imputation, normalised distances,
open-set decisions, one name per person, and the parameters on disk."""
import json

import numpy as np
import pytest

from gaitcam.errors import GaitcamError
from gaitcam.identity.matcher import (Evidence, GalleryIndex, Matcher, MatcherParams, matcher_paths,
                                      window_descriptors)
from gaitcam.identity.openset import MIN_PEOPLE
from gaitcam.skeleton.cycle import CYCLE_DIM, segment_spectra
from gaitcam.skeleton.shape import MIRROR_BONES, N_BONES, SHAPE_BONES, bone_lengths

D = 8  # a small stand-in for the 768-d AGE


class People:
    """Synthetic people: a gait mean, a cycle spectrum and bone lengths each; walks of one person
    differ by a session shift in a few shared directions (what the whitening must learn to
    ignore) plus window noise."""

    def __init__(self, n: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.rng = rng
        self.gait = rng.normal(size=(n, D))
        self.cycle = rng.uniform(0.01, 0.05, size=(n, CYCLE_DIM))
        self.bones = rng.uniform(0.1, 0.5, size=(n, N_BONES))
        self.session = rng.normal(size=(2, D))  # directions in which one person's walks differ

    def walk(self, p: int, windows: int = 40) -> Evidence:
        rng = self.rng
        shift = 1.5 * rng.normal(size=2) @ self.session
        ev = Evidence(D)
        ages = self.gait[p] + shift + 0.3 * rng.normal(size=(windows, D))
        ev.add_descriptors(ages, self.bones[p] + 0.003 * rng.normal(size=(windows, N_BONES)))
        ev.add_spectra(self.cycle[p] * np.exp(0.05 * rng.normal(size=(4, CYCLE_DIM))))
        return ev


def _fit(people: People, n: int, walks: int = 3, calibrate: bool = False, **kw) -> MatcherParams:
    """Fitted on people 0..n-1; `calibrate` adds the training stranger scores small galleries need."""
    ev = [people.walk(p) for p in range(n) for _ in range(walks)]
    return MatcherParams.fit("v1", ev, [f"p{p}" for p in range(n) for _ in range(walks)], calibrate=calibrate, **kw)


def _index(people: People, params: MatcherParams, who: range, walks: int = 2) -> GalleryIndex:
    names = [f"p{p}" for p in who for _ in range(walks)]
    desc = np.stack([people.walk(p).descriptor(params.blocks) for p in who for _ in range(walks)])
    return GalleryIndex(names, desc, params)


def test_window_descriptor_is_the_mean_of_frame_ages():
    ages = np.arange(2 * 3 * D, dtype=np.float32).reshape(2, 3 * D)
    assert np.allclose(window_descriptors(ages, D), ages.reshape(2, 3, D).mean(1))


def test_evidence_pools_mean_std_spectra_and_the_median_of_tracked_bones():
    rng = np.random.default_rng(1)
    ev = Evidence(D)
    windows = rng.normal(size=(5, 6, 20, 3)).astype(np.float32)
    tracked = np.ones((5, 6, 20), bool)
    tracked[:2, -1, 7] = False  # the left hand not tracked in two frames
    ages = rng.normal(size=(5, 6 * D)).astype(np.float32)
    ev.add(ages[:2], windows[:2], tracked[:2])
    ev.add(ages[2:], windows[2:], tracked[2:])
    d = window_descriptors(ages, D)
    desc = ev.descriptor(("gait", "shape"))
    assert ev.windows == 5 and len(desc) == 2 * D + len(SHAPE_BONES)
    np.testing.assert_allclose(desc[:D], d.mean(0), atol=1e-5)
    np.testing.assert_allclose(desc[D:2 * D], d.std(0), atol=1e-5)
    lengths = bone_lengths(windows[:, -1])  # the median over the frames and their mirror images
    pooled = np.concatenate([lengths, lengths[:, MIRROR_BONES]])
    np.testing.assert_allclose(desc[2 * D:], np.median(pooled, 0)[SHAPE_BONES], atol=1e-5)
    hand_bone = 6  # WristLeft -> HandLeft: only the frames where both ends were tracked count
    assert np.isnan(ev.bones.rows[0, hand_bone])
    assert np.isnan(Evidence(D).descriptor(("gait", "cycle"))).all()  # nothing measured yet
    ev.add_spectra(np.full((2, CYCLE_DIM), 0.02))
    np.testing.assert_allclose(ev.descriptor(("cycle",)), np.log(0.02 + 1e-4), rtol=1e-5)


def test_a_frames_segments_of_several_tracks_give_each_track_its_own_spectra():
    """The pipeline hands over one frame's segments of every track in one call (one batch)."""
    params = _fit(People(12), 12)
    rng = np.random.default_rng(4)
    segments = {3: rng.normal(size=(2, 32, 20, 3)), 8: rng.normal(size=(1, 32, 20, 3)),
                5: rng.normal(size=(3, 32, 20, 3))}
    batched = Matcher(None, params)
    batched.observe_segments(segments)
    batched.observe_segments({})  # a frame with none
    for track, s in segments.items():
        alone = Evidence(D)
        alone.add_spectra(segment_spectra(s))
        ev = batched.tracks[track]
        assert ev.segments == len(s)
        np.testing.assert_array_equal(ev.cycle_sum, alone.cycle_sum)


def test_the_whitening_learns_to_ignore_how_a_persons_walks_differ():
    people = People(30)
    params = _fit(people, 20)
    gait_only = _fit(people, 20, blocks=("gait",))
    assert params.projection.shape == (len(params.mean), 60)  # PCA: at most one dimension per walk
    # Two walks of the same person differ mostly along the session directions: after the
    # whitening they are closer than two people are, also for people the fit never saw.
    for p in (gait_only, params):
        a = p.project(np.stack([people.walk(q).descriptor(p.blocks) for q in range(20, 30)]))
        b = p.project(np.stack([people.walk(q).descriptor(p.blocks) for q in range(20, 30)]))
        d = 1 - a @ b.T
        assert (d.argmin(axis=1) == np.arange(10)).mean() >= 0.9
    with pytest.raises(GaitcamError, match="two walks"):
        MatcherParams.fit("v1", [people.walk(p) for p in range(3)], ["a", "b", "c"])


def test_a_bone_never_measured_is_filled_from_the_others():
    rng = np.random.default_rng(3)
    scale = rng.uniform(0.8, 1.2, size=60)  # bone lengths scale together with body size
    people = People(60)
    people.bones = scale[:, None] * people.bones[0]
    params = _fit(people, 60, walks=2)
    full = people.walk(5).descriptor(params.blocks)
    at = slice(len(full) - len(SHAPE_BONES), len(full))
    gap = full.copy()
    gap[at.start + 2] = np.nan
    filled = params.complete(gap[None])[0]
    assert abs(filled[at.start + 2] - full[at.start + 2]) < 0.01 * full[at.start + 2]
    assert np.isfinite(params.complete(np.full((1, len(full)), np.nan))[0, at]).all()  # nothing measured: means


def test_params_round_trip_and_refuse_what_does_not_fit(tmp_path):
    params = _fit(People(12), 12, calibrate=True)
    params.save(tmp_path / "m.json")
    json_path, tensors = matcher_paths(tmp_path / "m.json")
    assert json_path == tmp_path / "m.json" and tensors == tmp_path / "m.safetensors" and tensors.is_file()
    back = MatcherParams.load(tmp_path / "m")
    assert back.blocks == params.blocks and back.loc == pytest.approx(params.loc)
    np.testing.assert_allclose(back.projection, params.projection, rtol=1e-6)
    assert sorted(back.prior_scores) == sorted(params.prior_scores) == [0, 1, 2, 3, 4, 6, 9]
    np.testing.assert_allclose(back.prior_scores[3], params.prior_scores[3], rtol=1e-6)
    data = json.loads(json_path.read_text())
    json_path.write_text(json.dumps({**data, "descriptor_version": 1}))
    with pytest.raises(GaitcamError, match="descriptor version"):
        MatcherParams.load(json_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(GaitcamError, match="cannot read matcher parameters"):
        MatcherParams.load(tmp_path / "bad.json")


def test_enrolled_people_are_named_and_strangers_are_not():
    people = People(40, seed=1)
    params = _fit(people, 20)  # the "lab": people 0-19
    index = _index(people, params, range(20, 32))  # the site: 12 enrolled (calibrates on itself)
    assert index.calibration.source == "gallery" and index.calibration.people == 12
    m = Matcher(index, params)
    for track, p in enumerate(range(20, 40)):
        m.tracks[track] = people.walk(p)
    decisions = m.decide(0.0, list(range(20)))
    named = {t: d.identity for t, d in decisions.items()}
    assert sum(named[t] == f"p{20 + t}" for t in range(12)) >= 11
    assert sum(named[t] is not None for t in range(12, 20)) <= 1  # strangers
    assert all(0 <= d.score <= 1 for d in decisions.values())


def test_one_name_never_goes_to_two_tracks():
    people = People(30, seed=2)
    params = _fit(people, 15)
    m = Matcher(_index(people, params, range(15, 27)), params)
    m.tracks[1], m.tracks[2] = people.walk(15), people.walk(15)  # two tracks that look alike
    decisions = m.decide(0.0, [1, 2])
    names = [d.identity for d in decisions.values() if d.identity]
    assert len(names) == len(set(names)) and decisions[1].candidate == decisions[2].candidate == "p15"


def test_tracks_with_little_evidence_stay_pending_and_forget_clears():
    people = People(30, seed=3)
    params = _fit(people, 15)
    m = Matcher(_index(people, params, range(15, 27)), params)
    few = people.walk(16, windows=params.min_windows - 1)
    m.tracks[7] = few
    assert m.decide(0.0, [7])[7].pending and not m.ready(7)
    m.tracks[8] = people.walk(16)
    m.tracks[8].segments = 0  # no gait-cycle segment yet: still too little
    assert m.decide(0.0, [8])[8].pending
    m.forget(7)
    assert 7 not in m.tracks and m.decide(0.0, [7])[7].pending


def test_an_empty_gallery_makes_ready_tracks_unknown_not_pending():
    people = People(20, seed=4)
    params = _fit(people, 15)
    m = Matcher(GalleryIndex([], np.zeros((0, len(params.mean))), params), params)
    m.tracks[1] = people.walk(3)
    d = m.decide(0.0, [1])[1]
    assert d.identity is None and d.score == 0.0 and d.candidate is None and not d.pending


def test_a_small_gallery_falls_back_on_the_training_scores():
    people = People(30, seed=5)
    params = _fit(people, 20, calibrate=True)
    small = _index(people, params, range(20, 20 + MIN_PEOPLE - 1))
    assert small.calibration.source == "training walks (9-person galleries)"
    assert small.calibration.samples == len(params.prior_scores[9]) > 100
    one = _index(people, params, range(20, 21))
    m = Matcher(one, params)
    m.tracks[1], m.tracks[2] = people.walk(20), people.walk(25)
    d = m.decide(0.0, [1])[1]
    assert d.identity == "p20"  # one person enrolled: still named against the typical impostor


def test_a_stranger_who_resembles_someone_in_the_cohort_is_not_named():
    people = People(40, seed=6)
    params = _fit(people, 20)  # people 0-19 train the matcher and stay as its cohort
    assert len(params.cohort) == 60 and sorted(set(params.cohort_of.tolist())) == list(range(20))
    twin = 25
    people.gait[twin], people.cycle[twin], people.bones[twin] = people.gait[3], people.cycle[3], people.bones[3]
    index = _index(people, params, range(20, 32))  # the twin of cohort person 3 is enrolled
    m = Matcher(index, params)
    m.tracks[1] = people.walk(3)  # person 3 walks by: as close to the cohort's 3 as to the twin
    d = m.decide(0.0, [1])[1]
    assert d.candidate == f"p{twin}" and d.identity is None
    no_cohort = MatcherParams(**{**params.__dict__, "cohort": params.cohort[:0], "cohort_of": params.cohort_of[:0]})
    m = Matcher(_index(people, no_cohort, range(20, 32)), no_cohort)
    m.tracks[1] = people.walk(3)
    assert m.decide(0.0, [1])[1].identity == f"p{twin}"  # without the cohort it would have been named


def test_a_mirrored_walk_gives_the_same_descriptor(one_thread):
    """AGEs, gait-cycle spectra and body shape are all averaged with the walk's mirror image, so
    a sensor that mirrors (x negated, left and right swapped) changes nothing."""
    from gaitcam.config import DEMO_DIR
    from gaitcam.identity.enrollment import track_evidence
    from gaitcam.model.encoder import GaitEncoder
    from gaitcam.recording.formats import read_recording

    encoder = GaitEncoder.from_weights("weights/sgela")
    seq = next(iter(read_recording(DEMO_DIR / "Ada.gaitrec").tracks.values()))
    a, b = (track_evidence(s, 0, encoder).evidence() for s in (seq, seq.mirrored()))
    assert a.windows == b.windows > 20
    np.testing.assert_allclose(a.descriptor(), b.descriptor(), rtol=1e-4, atol=1e-4)
