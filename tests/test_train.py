"""The trainer: loss falls, held-out validation, outputs on disk, resume."""
import json

import numpy as np
import pytest

from gaitcam.model.data import WindowSet, validation_split
from gaitcam.model.sgela import SGELAConfig
from gaitcam.model.train import TrainConfig, Trainer
from gaitcam.model.weights import load_weights


def _data(n_seq=6, per_seq=24, seed=0):
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, 6, dtype=np.float32)
    shape = rng.random((n_seq, 1, 1, 20, 3), dtype=np.float32)
    phase = rng.random((n_seq, per_seq, 1, 1, 1), dtype=np.float32) * 6
    w = 0.3 * np.sin(t[None, None, :, None, None] + phase) * shape + shape
    return WindowSet(w.reshape(-1, 6, 20, 3).astype(np.float32), np.repeat(np.arange(n_seq), per_seq))


CFG = SGELAConfig(hidden=16)


def test_validation_holds_out_whole_sequences():
    data = _data()
    train, val = validation_split(data, 0.34, seed=0)
    assert len(train) + len(val) == len(data)
    assert not set(train.sequence) & set(val.sequence)
    assert len(set(val.sequence)) == 2


def test_single_sequence_holds_out_its_tail_with_a_gap():
    data = _data(n_seq=1, per_seq=100)
    train, val = validation_split(data, 0.2, seed=0)
    assert len(val) == 20 and len(train) == 74


def test_training_lowers_validation_loss_and_writes_outputs(tmp_path):
    train, val = validation_split(_data(), 0.34, seed=0)
    trainer = Trainer(CFG, TrainConfig(epochs=12, batch_size=16, lr=3e-3, val_every=5, patience=50, seed=1),
                      tmp_path, normalization="raw", notes={"test": True})
    first = trainer.validate(val)
    summary = trainer.fit(train, val)
    assert summary["best_val"] < 0.5 * first
    for name in ("sgela.safetensors", "sgela.json", "checkpoint.safetensors", "checkpoint.json",
                 "history.json", "loss.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    model, meta = load_weights(tmp_path / "sgela")
    assert meta["notes"]["test"] and meta["normalization"] == "raw"
    assert trainer.validate(val) >= summary["best_val"] - 1e-9  # the saved weights are the best


def test_resume_continues_where_it_stopped(tmp_path):
    train, val = validation_split(_data(), 0.34, seed=0)
    cfg = TrainConfig(epochs=2, batch_size=16, val_every=3, patience=50, seed=1)
    Trainer(CFG, cfg, tmp_path, "raw").fit(train, val)
    cfg.epochs = 4
    resumed = Trainer(CFG, cfg, tmp_path, "raw")
    summary = resumed.fit(train, val, resume=True)
    history = json.loads((tmp_path / "history.json").read_text())["history"]
    steps = [h["step"] for h in history]
    assert steps == sorted(steps) and summary["epochs"] == pytest.approx(4)
    assert resumed.state.step == 4 * int(np.ceil(len(train) / 16))


def test_resume_refuses_another_config(tmp_path):
    train, val = validation_split(_data(), 0.34, seed=0)
    Trainer(CFG, TrainConfig(epochs=1, batch_size=32), tmp_path, "raw").fit(train, val)
    with pytest.raises(ValueError, match="another model config"):
        Trainer(SGELAConfig(hidden=8), TrainConfig(epochs=2), tmp_path, "raw").fit(train, val, resume=True)


def test_partners_come_from_the_same_sequence_and_differ():
    from gaitcam.model.train import same_sequence_partners

    sequence = np.repeat([0, 1, 2, 3], [5, 1, 3, 7])
    idx = np.arange(len(sequence))
    for seed in range(5):
        partner = same_sequence_partners(sequence, idx, np.random.default_rng(seed))
        assert (sequence[partner] == sequence).all()
        alone = sequence == 1
        assert (partner[~alone] != idx[~alone]).all() and (partner[alone] == idx[alone]).all()


def test_contrastive_training_runs_and_lowers_the_loss(tmp_path):
    train, val = validation_split(_data(), 0.34, seed=0)
    cfg = SGELAConfig(hidden=16, contrastive=True, projection=8)
    trainer = Trainer(cfg, TrainConfig(epochs=6, batch_size=16, lr=3e-3, val_every=5, patience=50), tmp_path, "raw")
    first = trainer.validate(val)
    assert trainer.fit(train, val)["best_val"] < first
    model, _ = load_weights(tmp_path / "sgela")
    assert model.cfg.contrastive and hasattr(model, "heads")


def test_step_budget_stops_at_exactly_that_step(tmp_path):
    train, val = validation_split(_data(), 0.34, seed=0)
    summary = Trainer(CFG, TrainConfig(epochs=50, batch_size=16, val_every=4, max_steps=7), tmp_path, "raw").fit(
        train, val)
    assert summary["stop"] == "step budget" and summary["steps"] == 7


def test_masked_windows_lose_a_joint_group_that_is_derived_again():
    from gaitcam.model.train import mask_joints

    windows = _data().windows
    rng = np.random.default_rng(0)
    out = mask_joints(windows, 0.5, rng)
    changed = np.abs(out - windows).reshape(len(windows), -1).max(axis=1) > 1e-6
    assert 0.3 < changed.mean() < 0.7 and np.isfinite(out).all()
    assert np.array_equal(mask_joints(windows, 0.0, rng), windows)
    # Only derivable joints change: the arms' and legs' measured joints stay as they were.
    keep = [5, 6, 9, 10, 13, 14, 17, 18]  # elbows, wrists, knees, ankles
    assert np.array_equal(out[:, :, keep], windows[:, :, keep])


def test_masked_training_rebuilds_the_measured_window(tmp_path):
    train, val = validation_split(_data(), 0.34, seed=0)
    trainer = Trainer(CFG, TrainConfig(epochs=6, batch_size=16, lr=3e-3, val_every=5, patience=50, seed=1,
                                       mask_joints=0.5), tmp_path, normalization="raw")
    first = trainer.validate(val)
    assert trainer.fit(train, val)["best_val"] < 0.7 * first


def test_fine_tuning_starts_from_the_given_weights(tmp_path):
    from gaitcam.model.sgela import SGELA

    train, val = validation_split(_data(), 0.34, seed=0)
    start = Trainer(CFG, TrainConfig(epochs=4, batch_size=16, lr=3e-3, val_every=5, patience=50, seed=1),
                    tmp_path / "a", "raw")
    start.fit(train, val)
    tuned = Trainer(CFG, TrainConfig(epochs=1, batch_size=16, lr=3e-4, val_every=5, seed=2), tmp_path / "b", "raw")
    tuned.start_from(start.model)
    assert tuned.validate(val) == pytest.approx(start.validate(val), rel=1e-5)
    with pytest.raises(ValueError, match="architecture"):
        tuned.start_from(SGELA(SGELAConfig(hidden=8)))
