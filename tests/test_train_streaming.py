"""Training data streamed from recordings: the epoch plan every process shares, the sources that
read units lazily through a bounded cache, and training from such a source."""
import numpy as np
import pytest

from conftest import ROOT
from gaitcam.model import distributed
from gaitcam.model.batches import EpochPlan
from gaitcam.model.data import WindowSet, windows_from_sequences
from gaitcam.model.sgela import SGELAConfig
from gaitcam.model.sources import InMemorySource, RecordingSource
from gaitcam.model.train import TrainConfig, Trainer
from gaitcam.recording.formats import read_recording

DEMO = sorted((ROOT / "recordings" / "demo").glob("*.gaitrec"))
CUT = dict(f=6, stride=3, normalization="body", trim=10)
PLAN = EpochPlan(np.array([5, 0, 17, 3, 40, 9, 1, 22]), batch_size=8, seed=3, shuffle_windows=20)


def _pairs(batches) -> list[tuple[int, int]]:
    return [(int(u), int(w)) for units, wins in batches for u, w in zip(units, wins)]


def test_an_epoch_visits_every_window_once_in_global_batches():
    batches = list(PLAN.batches(epoch=0))
    assert len(batches) == PLAN.steps == 13
    assert [len(u) for u, _ in batches] == [8] * 12 + [1]
    expected = {(u, w) for u, n in enumerate(PLAN.counts) for w in range(n)}
    seen = _pairs(batches)
    assert len(seen) == len(expected) and set(seen) == expected


def test_a_resumed_epoch_continues_with_the_same_batches():
    full = _pairs(PLAN.batches(epoch=2))
    assert _pairs(PLAN.batches(epoch=2, start=5)) == full[5 * 8:]
    assert _pairs(PLAN.batches(epoch=3)) != full  # each epoch its own order


def test_a_batch_draws_on_at_most_two_blocks_of_units():
    """What bounds a process's memory: the units of the current block (and the next)."""
    blocks = PLAN._blocks(epoch=0)
    block_of = {int(u): k for k, block in enumerate(blocks) for u in block}
    assert len(blocks) > 2
    for units, _ in PLAN.batches(epoch=0):
        touched = sorted({block_of[int(u)] for u in units})
        assert touched[-1] - touched[0] <= 1


def test_each_process_takes_the_units_it_owns(monkeypatch):
    units = np.arange(10)
    monkeypatch.setattr(distributed, "world", lambda: 3)
    parts = []
    for rank in range(3):
        monkeypatch.setattr(distributed, "rank", lambda r=rank: r)
        parts.append(units[distributed.owned(units)])
    assert sorted(np.concatenate(parts).tolist()) == units.tolist()
    assert parts[1].tolist() == [1, 4, 7]


def test_in_memory_units_are_runs_of_one_sequence():
    data = WindowSet(np.zeros((9, 6, 20, 3), np.float32), np.array([0, 0, 0, 2, 2, 5, 5, 5, 5]))
    source = InMemorySource(data)
    assert len(source) == 3 and source.index().tolist() == [3, 2, 4] and source.sequences == 3
    assert source.load(1).sequence.tolist() == [2, 2]


def test_recordings_are_read_lazily_through_a_bounded_cache():
    one = windows_from_sequences(list(read_recording(DEMO[0]).tracks.values()), **CUT).windows.nbytes
    source = RecordingSource(DEMO, **CUT, cache_bytes=int(1.5 * one))
    assert source.cached_bytes == 0  # nothing read yet
    counts = source.index()
    assert counts.tolist() == [len(windows_from_sequences(list(read_recording(p).tracks.values()), **CUT))
                               for p in DEMO]
    assert 0 < source.cached_bytes <= 1.5 * one
    last = len(DEMO) - 1
    assert source.load(last) is source.load(last)


def test_validation_windows_are_spread_evenly_over_the_units():
    data = WindowSet(np.arange(20, dtype=np.float32)[:, None, None, None] * np.ones((1, 6, 20, 3), np.float32),
                     np.repeat([4, 7, 9], [5, 10, 5]))
    share = InMemorySource(data).share(max_windows=8)
    assert share.windows[:, 0, 0, 0].tolist() == np.linspace(0, 19, 8).astype(int).tolist()
    assert share.sequence.tolist() == [0, 0, 1, 1, 1, 1, 2, 2]  # distinct per unit, sorted


def test_training_streams_from_recordings_larger_than_the_cache(tmp_path, one_thread):
    one = windows_from_sequences(list(read_recording(DEMO[0]).tracks.values()), **CUT).windows.nbytes
    train = RecordingSource(DEMO[:3], **CUT, cache_bytes=one)  # room for about one of the three
    val = RecordingSource(DEMO[3:], **CUT, cache_bytes=0)
    trainer = Trainer(SGELAConfig(hidden=8), TrainConfig(epochs=1, batch_size=64, val_every=4, lr=3e-3, seed=1),
                      tmp_path, normalization="body")
    first = trainer.validate(val)
    summary = trainer.fit(train, val)
    assert summary["steps"] == EpochPlan(train.counts, 64, 1, 65536).steps
    assert summary["best_val"] < first and train.cached_bytes <= one
    assert summary["train_windows"] == train.counts.sum() and summary["world_size"] == 1


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_a_source_and_its_windows_in_memory_train_alike(tmp_path, reduction, one_thread):
    """The same code path: recordings read lazily, or their windows handed over in memory."""
    train = RecordingSource(DEMO[:2], **CUT, cache_bytes=0)
    val = RecordingSource(DEMO[2:3], **CUT, cache_bytes=0)
    cfg = TrainConfig(epochs=1, batch_size=32, val_every=3, max_steps=3, reduction=reduction, l2=0.01)
    lazy = Trainer(SGELAConfig(hidden=8), cfg, tmp_path / "lazy", "body")
    lazy.fit(train, val)
    held = [train.load(i) for i in range(len(train))]
    memory = WindowSet(np.concatenate([d.windows for d in held]), np.concatenate([d.sequence + 10 * i
                                                                                   for i, d in enumerate(held)]))
    eager = Trainer(SGELAConfig(hidden=8), cfg, tmp_path / "eager", "body")
    eager.fit(memory, val.load(0))
    assert eager.state.losses == pytest.approx(lazy.state.losses, rel=1e-6)
