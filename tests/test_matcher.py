"""The matcher: evidence pooling, fused distances, open-set decisions, one name per person."""
import numpy as np
import pytest

from gaitcam.errors import GaitcamError
from gaitcam.matcher import Evidence, GalleryIndex, Matcher, MatcherParams, window_descriptors
from gaitcam.skeleton.shape import N_BONES, bone_lengths

D = 8


def _people(n=4, seed=0):
    """Distinct per-person gait descriptors, skeletons [n, 20, 3] and their bone lengths."""
    rng = np.random.default_rng(seed)
    skeletons = rng.normal(scale=0.3, size=(n, 20, 3)).astype(np.float32)
    return rng.normal(size=(n, D)).astype(np.float32), skeletons, bone_lengths(skeletons)


def _params(ages, shapes, labels, **kw):
    return MatcherParams.fit("v1", ages, shapes, labels, **kw)


def _walks(age, shape, n_walks, rng, noise=0.05):
    return ([age + noise * rng.normal(size=D) for _ in range(n_walks)],
            [shape + 0.002 * rng.normal(size=N_BONES) for _ in range(n_walks)])


def _fitted(n=6, walks=3, seed=0):
    rng = np.random.default_rng(seed)
    pa, skeletons, ps = _people(n, seed)
    ages, shapes, labels = [], [], []
    for i in range(n):
        a, s = _walks(pa[i], ps[i], walks, rng)
        ages += a
        shapes += s
        labels += [f"p{i}"] * walks
    return pa, skeletons, ps, _params(ages, shapes, labels), (ages, shapes, labels)


def test_window_descriptor_is_the_mean_of_frame_ages():
    ages = np.arange(2 * 3 * D, dtype=np.float32).reshape(2, 3 * D)
    expected = ages.reshape(2, 3, D).mean(1)
    assert np.allclose(window_descriptors(ages, D), expected)


def test_evidence_pools_windows_and_takes_the_median_shape():
    ev = Evidence(D)
    rng = np.random.default_rng(1)
    windows = rng.normal(size=(5, 6, 20, 3)).astype(np.float32)
    ages = rng.normal(size=(5, 6 * D)).astype(np.float32)
    ev.add(ages[:2], windows[:2])
    ev.add(ages[2:], windows[2:])
    assert ev.windows == 5
    assert np.allclose(ev.age, window_descriptors(ages, D).mean(0), atol=1e-6)
    assert np.allclose(ev.shape, np.median(bone_lengths(windows[:, -1]), 0), atol=1e-6)


def test_fit_ignores_labels_except_for_the_threshold():
    _, _, _, params, (ages, shapes, labels) = _fitted()
    shuffled = MatcherParams.fit("v1", ages, shapes, labels[::-1])
    assert params.age_scale == shuffled.age_scale and params.shape_scale == shuffled.shape_scale
    assert params.threshold > 0


def test_fit_needs_two_people():
    with pytest.raises(GaitcamError):
        MatcherParams.fit("v1", [np.zeros(D)] * 2, [np.ones(N_BONES)] * 2, ["a", "a"])


def test_params_round_trip(tmp_path):
    _, _, _, params, _ = _fitted()
    params.save(tmp_path / "m.json")
    back = MatcherParams.load(tmp_path / "m.json")
    assert back.threshold == params.threshold and np.allclose(back.age_mean, params.age_mean)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(GaitcamError, match="bad.json"):
        MatcherParams.load(tmp_path / "bad.json")


def test_each_cue_and_the_fusion_find_the_right_person():
    pa, sk, ps, params, _ = _fitted()
    rng = np.random.default_rng(5)
    index = GalleryIndex([f"p{i}" for i in range(6)], pa, ps, params)
    qa = pa + 0.05 * rng.normal(size=pa.shape)
    qs = ps + 0.002 * rng.normal(size=ps.shape)
    for what in ("fused", "age", "shape"):
        d = index.distances(qa, qs, what)
        assert d.shape == (6, 6) and (d.argmin(1) == np.arange(6)).all(), what


def _matcher_with_tracks(pa, sk, ps, params, enrolled, tracks):
    """A matcher over `enrolled` people, fed one track per entry of `tracks` (person index)."""
    index = GalleryIndex([f"p{i}" for i in enrolled], pa[enrolled], ps[enrolled], params)
    m = Matcher(index, params)
    for t, person in enumerate(tracks):
        windows = np.broadcast_to(sk[person], (params.min_windows, 6, 20, 3))
        ages = np.tile(pa[person], (params.min_windows, 6))
        m.observe(t, 0.0, ages, windows)
    return m


def test_enrolled_people_are_named_and_a_stranger_is_unknown():
    pa, sk, ps, params, _ = _fitted()
    m = _matcher_with_tracks(pa, sk, ps, params, enrolled=[0, 1, 2, 3, 4], tracks=[2, 5, 0])
    out = m.decide(1.0, [0, 1, 2])
    assert out[0].identity == "p2" and out[2].identity == "p0"
    assert out[1].identity is None and out[1].candidate is not None and out[1].score < 0.5
    assert out[0].score > 0.5


def test_one_name_never_goes_to_two_tracks():
    pa, sk, ps, params, _ = _fitted()
    m = _matcher_with_tracks(pa, sk, ps, params, enrolled=[0, 1, 2, 3, 4, 5], tracks=[3, 3])
    out = m.decide(1.0, [0, 1])
    assert out[0].candidate == out[1].candidate == "p3"
    assert [d.identity for d in out.values()].count("p3") == 1


def test_tracks_with_little_evidence_stay_pending_and_forget_clears():
    pa, sk, ps, params, _ = _fitted()
    index = GalleryIndex(["p0"], pa[:1], ps[:1], params)
    m = Matcher(index, params)
    m.observe(7, 0.0, np.tile(pa[0], (params.min_windows - 1, 6)), np.zeros((params.min_windows - 1, 6, 20, 3)))
    assert m.decide(0.0, [7])[7].pending
    m.forget(7)
    assert 7 not in m.tracks


def test_an_empty_gallery_makes_ready_tracks_unknown_not_pending():
    pa, sk, ps, params, _ = _fitted()
    m = _matcher_with_tracks(pa, sk, ps, params, enrolled=[], tracks=[1])
    m.observe(2, 0.0, np.tile(pa[2], (params.min_windows - 1, 6)), np.zeros((params.min_windows - 1, 6, 20, 3)))
    out = m.decide(0.0, [0, 2])
    assert not out[0].pending and out[0].identity is None and out[0].candidate is None and out[0].score == 0.0
    assert out[0].windows == params.min_windows
    assert out[2].pending
