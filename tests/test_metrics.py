"""Metrics on synthetic scores and embeddings with known answers."""
import numpy as np
import pytest

from gaitcam.evaluation.metrics import _order_keys, cmc_curve, nauc_cmc, nauc_roc, rank_k, retrieval


def _perfect_scores(labels, n_classes):
    scores = np.zeros((len(labels), n_classes))
    scores[np.arange(len(labels)), labels] = 1.0
    return scores


def test_perfect_classifier_scores_one_everywhere():
    labels = np.arange(50) % 7
    scores = _perfect_scores(labels, 7)
    cmc = cmc_curve(scores, labels)
    assert rank_k(cmc, 1) == 1.0 and nauc_cmc(cmc) == 1.0 and nauc_roc(scores, labels) == 1.0


def test_random_classifier_is_at_chance_and_cmc_is_monotone():
    rng = np.random.default_rng(0)
    n_classes = 10
    labels = rng.integers(0, n_classes, 20_000)
    scores = rng.standard_normal((len(labels), n_classes))
    cmc = cmc_curve(scores, labels)
    assert abs(rank_k(cmc, 1) - 0.1) < 0.02  # binomial std 0.002
    assert abs(rank_k(cmc, 5) - 0.5) < 0.03
    assert (np.diff(cmc) >= 0).all() and cmc[-1] == 1.0
    assert abs(nauc_cmc(cmc) - 0.55) < 0.02  # mean of k/C over k = 1..C
    assert abs(nauc_roc(scores, labels) - 0.5) < 0.02


def test_ties_count_against_the_right_class():
    labels = np.array([0, 1, 2])
    cmc = cmc_curve(np.ones((3, 3)), labels)
    assert cmc.tolist() == [0.0, 0.0, 1.0]
    assert nauc_roc(np.ones((3, 3)), labels) == 0.5  # ROC convention: a tie counts one half


def test_nauc_roc_equals_brute_force_pairwise_auc():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, 30)
    scores = rng.integers(0, 5, (30, 4)).astype(float)  # many ties
    positive = np.zeros(scores.shape, bool)
    positive[np.arange(30), labels] = True
    pos, neg = scores[positive], scores[~positive]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert nauc_roc(scores, labels) == pytest.approx(brute, abs=1e-12)


def test_perfect_embedding_retrieves_perfectly():
    labels = np.arange(200) % 5
    embedding = np.eye(5, dtype=np.float32)[labels] * np.linspace(1, 3, 200, dtype=np.float32)[:, None]
    r = retrieval(embedding[:40], labels[:40], embedding[40:], labels[40:])
    assert r["rank1"] == r["rank5"] == r["rank10"] == r["map"] == 1.0
    assert (r["cmc"] == 1.0).all()


def test_random_embedding_retrieves_at_chance():
    rng = np.random.default_rng(2)
    n_classes = 10
    gallery_labels = np.arange(2000) % n_classes
    query_labels = rng.integers(0, n_classes, 2000)
    query = rng.standard_normal((2000, 32)).astype(np.float32)
    gallery = rng.standard_normal((2000, 32)).astype(np.float32)
    r = retrieval(query, query_labels, gallery, gallery_labels)
    assert abs(r["rank1"] - 0.1) < 0.04  # binomial std 0.007
    assert abs(r["map"] - 0.1) < 0.03
    assert (np.diff(r["cmc"]) >= 0).all()


def _exact_embedding(rng, n, dim=8):
    """Unit vectors with four entries of ±0.5: norms and dot products are exact in float32,
    so every tie is a true tie whatever the matrix product's summation order."""
    x = np.zeros((n, dim), dtype=np.float32)
    for row in x:
        row[rng.choice(dim, 4, replace=False)] = rng.choice([-0.5, 0.5], 4)
    return x


def _brute_retrieval(query, query_labels, gallery, gallery_labels):
    first, ap = [], []
    for q, label in zip(query @ gallery.T, query_labels):
        pos, neg = q[gallery_labels == label], q[gallery_labels != label]
        first.append(1 + (neg >= pos.max()).sum())
        ap.append(np.mean([(pos >= s).sum() / (q >= s).sum() for s in pos]))
    return np.array(first), np.array(ap)


def test_retrieval_equals_brute_force_and_does_not_depend_on_the_chunk():
    rng = np.random.default_rng(3)
    query, gallery = _exact_embedding(rng, 60), _exact_embedding(rng, 300)
    query_labels, gallery_labels = rng.integers(0, 6, 60), np.arange(300) % 6
    first, ap = _brute_retrieval(query, query_labels, gallery, gallery_labels)
    results = [retrieval(query, query_labels, gallery, gallery_labels, chunk=c) for c in (1, 7, 64, None)]
    for r in results:
        assert (r["first_rank"] == first).all()
        np.testing.assert_allclose(r["ap"], ap, rtol=1e-12)
        assert r["map"] == results[0]["map"] and r["rank5"] == np.mean(first <= 5)
        np.testing.assert_array_equal(r["cmc"], results[0]["cmc"])


def test_retrieval_needs_a_gallery_match_for_every_query():
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="at least one gallery item"):
        retrieval(x, np.array([0, 1, 9]), x, np.array([0, 1, 2]))


def test_order_keys_sort_like_the_floats():
    x = np.array([3.0, -0.0, 0.0, -1e-38, 1e-38, -2.5, np.inf, -np.inf, 1e-45, -7.0], dtype=np.float32)
    keys = _order_keys(x)
    assert (np.less.outer(keys, keys) == np.less.outer(x, x)).all()
    assert (np.equal.outer(keys, keys) == np.equal.outer(x, x)).all()  # -0.0 == 0.0 too
