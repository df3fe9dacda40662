"""The open-set score and the threshold a gallery calibrates for itself."""
import numpy as np
import pytest
from scipy.stats import norm

from gaitcam.errors import GaitcamError
from gaitcam.identity.openset import (loo_scores, normalised, open_scores, person_levels, ratio, ratios,
                                      threshold_for)


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_ratio_is_nearest_over_second_capped():
    d = np.array([[0.2, 0.8, 0.5], [0.9, 1.0, 3.0]])
    np.testing.assert_allclose(ratios(d), [0.4, 0.9])
    np.testing.assert_allclose(ratios(d, cap=0.5), [0.4, 1.8])  # no close second: the cap stands in
    assert ratio(d[0], 2) == pytest.approx(2.5) and ratio(np.array([0.3]), 0, cap=1.0) == pytest.approx(0.3)
    assert ratio(np.array([0.0, 0.0]), 0) == 1.0  # the same walk under two names: a tie, no name
    np.testing.assert_allclose(ratios(np.array([[0.0, 0.0, 0.7]])), [1.0])


def test_threshold_is_the_empirical_quantile_when_the_tail_is_sampled():
    scores = np.random.default_rng(0).lognormal(mean=-0.3, sigma=0.2, size=1000)
    t, how = threshold_for(scores, 0.01)
    assert how == "empirical quantile" and (scores <= t).mean() == pytest.approx(0.01, abs=0.002)
    t_small, how_small = threshold_for(scores[:50], 0.01)  # 50 scores do not reach 1 %
    assert how_small == "log-normal prediction bound" and abs(np.log(t_small) - (-0.3 - 2.326 * 0.2)) < 0.1
    with pytest.raises(GaitcamError, match="too few"):
        threshold_for(scores[:2], 0.01)


def test_the_bound_names_strangers_at_the_rate_asked_on_average_even_from_few_people():
    # Sites of 10 people, one log-normal draw each: the fitted 1 % quantile alone is lax on
    # average (the fit's error widens the tail it misses); the prediction bound is not.
    rng, mu, sigma = np.random.default_rng(5), -0.3, 0.2
    sites = rng.lognormal(mu, sigma, size=(4000, 10))
    bound = np.array([threshold_for(s, 0.01)[0] for s in sites])
    log = np.log(sites)
    plain = np.exp(log.mean(axis=1) + norm.ppf(0.01) * log.std(axis=1))
    named = lambda t: norm.cdf((np.log(t) - mu) / sigma).mean()  # noqa: E731 (a stranger's chance, averaged)
    assert named(bound) == pytest.approx(0.01, abs=0.0015)
    assert named(plain) > 0.018


def test_scores_from_few_people_get_the_fit_not_their_lowest_person():
    # 40 people, 4 walks each, whose walks score alike: 160 scores, but one draw per person.
    rng = np.random.default_rng(3)
    scores = np.repeat(rng.lognormal(mean=-0.2, sigma=0.15, size=40), 4) * rng.lognormal(0, 0.03, size=160)
    assert threshold_for(scores, 0.01)[1] == "empirical quantile"  # as if 160 independent scores
    t, how = threshold_for(scores, 0.01, people=40)
    assert how == "log-normal prediction bound" and t < np.quantile(scores, 0.01)  # below the lowest person's walks
    assert threshold_for(scores, 0.01, people=100)[1] == "empirical quantile"


def test_levels_and_leave_one_person_out_scores():
    rng = np.random.default_rng(1)
    centres = _unit(rng.normal(size=(12, 16)))
    z = _unit(np.repeat(centres, 3, axis=0) + 0.05 * rng.normal(size=(36, 16)))
    person_of = np.repeat(np.arange(12), 3)
    levels = person_levels(z, person_of, 0.1)
    assert levels.shape == (12,) and (levels > 0.3).all()  # other people are far from everyone
    d = normalised(z, z, person_of, levels, 12)
    assert (d.argmin(axis=1) == person_of).all()
    scores = loo_scores(z, person_of, 12, 0.1, 1, 1.0)
    assert len(scores) == 36 and np.median(scores) > 0.6  # as strangers, no one comes much closer than another
    again = _unit(np.repeat(centres, 2, axis=0) + 0.05 * rng.normal(size=(24, 16)))  # new walks, enrolled people
    genuine = ratios(normalised(again, z, person_of, levels, 12))
    assert genuine.max() < scores.min()


def _naive_loo_scores(z, person_of, named, q, min_impostors, default):
    """The definition, written plainly: for each enrolled person left out, every other column's
    level is the q-quantile of its impostors' distances without that person's walks."""
    n = int(person_of.max()) + 1
    d = np.clip(1.0 - z @ z.T, 0.0, 2.0)
    np.fill_diagonal(d, np.inf)
    m = np.stack([d[:, person_of == c].min(axis=1) for c in range(n)], axis=1)
    scores = []
    for p in range(named):
        rest = [c for c in range(n) if c != p]
        levels = []
        for c in rest:
            imp = m[(person_of != p) & (person_of != c), c]
            imp = imp[np.isfinite(imp)]
            levels.append(max(np.quantile(imp, q) if len(imp) >= max(min_impostors, 1) else default, 1e-6))
        scores.append(open_scores(m[person_of == p][:, rest] / np.array(levels)[None, :], named - 1)[1])
    return np.concatenate(scores)


@pytest.mark.parametrize("seed", range(6))
def test_leave_one_person_out_scores_equal_their_plain_definition(seed):
    """The fast calibration (columns sorted once, a person's rows taken out by rank) gives the
    plain definition's scores: people with one walk, a cohort, identical walks, few impostors."""
    rng = np.random.default_rng(seed)
    named, cohort = int(rng.integers(2, 15)), int(rng.integers(0, 6))
    person_of = np.repeat(np.arange(named + cohort), rng.integers(1, 5, size=named + cohort))
    z = _unit(rng.normal(size=(len(person_of), 6)))
    z[1] = z[0]
    for q, min_impostors, default in [(0.1, 1, 1.0), (0.05, 3, 0.7), (0.5, 20, 0.9)]:
        np.testing.assert_allclose(loo_scores(z, person_of, named, q, min_impostors, default),
                                   _naive_loo_scores(z, person_of, named, q, min_impostors, default), rtol=1e-12)


def test_the_cohort_is_never_named_but_counts_as_a_second():
    d = np.array([[0.3, 0.9, 0.35],   # near enrolled 0, and as near a cohort person (column 2)
                  [0.3, 0.9, 2.0],    # near enrolled 0 only
                  [0.8, 0.9, 0.1]])   # nearest is a cohort person
    best, score = open_scores(d, named=2)
    assert best.tolist() == [0, 0, 0]
    np.testing.assert_allclose(score, [0.3 / 0.35, 0.3 / 0.9, 8.0])
    np.testing.assert_allclose(ratios(d[:, :2]), [0.3 / 0.9, 0.3 / 0.9, 0.8 / 0.9])
