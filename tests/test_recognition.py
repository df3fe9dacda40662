"""The recognition network: held-out whole walks, early stopping, averaged logits, reuse."""
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.usefixtures("one_thread")

from gaitcam.evaluation.recognition import (
    RNConfig, build_rn, fit_rn, holdout_walks, load_rn, save_rn, window_logits,
)


def _data(n_people=4, walks_per_person=3, windows_per_walk=30, f=6, dim=16, seed=0):
    """Separable frame features: a class centre plus noise. Walk ids grow within a person."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_people, dim)) * 0.05  # small, like AGEs
    n_walks = n_people * walks_per_person
    walks = np.repeat(np.arange(n_walks), windows_per_walk)
    labels = walks // walks_per_person
    x = centres[labels][:, None, :] + 0.02 * rng.standard_normal((len(labels), f, dim))
    return x.astype(np.float16), labels, walks


def test_holdout_takes_each_persons_highest_walk_and_keeps_lone_walks():
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    walks = np.array([5, 5, 7, 6, 9, 9, 3, 4])  # person 1 has one walk only
    val = holdout_walks(labels, walks)
    assert val.tolist() == [False, False, True, False, False, False, False, True]
    assert not set(walks[val]) & set(walks[~val])  # no validation walk has a training window


def test_rn_learns_and_is_selected_on_held_out_walks():
    x, labels, walks = _data()
    val = holdout_walks(labels, walks)
    cfg = RNConfig(max_epochs=60, patience=2, batch_size=128)
    fit = fit_rn(x, labels, walks, n_classes=4, cfg=cfg, progress=False)
    assert fit.n_val_windows == val.sum() == 4 * 30 and fit.n_train_windows == (~val).sum()
    assert fit.val_accuracy == max(fit.history) > 0.9 and fit.best_epoch == int(np.argmax(fit.history)) + 1
    assert fit.epochs < 60  # stopped early: held-out accuracy saturates
    assert (window_logits(fit.model, x[val]).argmax(1) == labels[val]).mean() == fit.val_accuracy


def test_held_out_walks_never_reach_the_training_statistics():
    x, labels, walks = _data()
    val = holdout_walks(labels, walks)
    x[val] += np.float16(5.0)  # a leak into training would move the input standardisation
    fit = fit_rn(x, labels, walks, 4, RNConfig(max_epochs=1), progress=False)
    train_frames = x[~val].reshape(-1, x.shape[-1]).astype(np.float64)
    np.testing.assert_allclose(fit.model[0].mean.numpy(), train_frames.mean(0), atol=1e-5)
    np.testing.assert_allclose(fit.model[0].std.numpy(), train_frames.std(0), rtol=1e-4)


def test_window_logits_average_the_frames():
    x, labels, _ = _data(windows_per_walk=5)
    model = build_rn(16, 4, hidden=8)
    logits = window_logits(model, x, batch_windows=7)
    assert logits.shape == (len(x), 4) and logits.dtype == np.float32
    with torch.no_grad():
        expected = model(torch.from_numpy(x.astype(np.float32))).mean(1).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)


def test_saved_rn_is_reused_only_for_the_same_provenance(tmp_path):
    x, labels, walks = _data(windows_per_walk=5)
    fit = fit_rn(x, labels, walks, 4, RNConfig(max_epochs=2, hidden=8), progress=False)
    save_rn(fit.model, tmp_path / "rn_sgela", {"features_version": "abc", "rn": {"hidden": 8}})
    loaded = load_rn(tmp_path / "rn_sgela", {"features_version": "abc", "rn": {"hidden": 8}})
    np.testing.assert_array_equal(window_logits(loaded, x), window_logits(fit.model, x))
    assert load_rn(tmp_path / "rn_sgela", {"features_version": "other", "rn": {"hidden": 8}}) is None
    assert load_rn(tmp_path / "missing", {}) is None
