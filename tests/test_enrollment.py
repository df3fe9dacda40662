"""Enrolment and identification from recordings, with the shipped encoder and matcher."""
import logging
import shutil

import numpy as np
import pytest

from conftest import KGBD_ROOT
from gaitcam.enrollment import (enroll_recording, enroll_recordings, identify_recording, load_index, pick_track,
                                reenroll_stale, track_evidence)
from gaitcam.errors import GaitcamError
from gaitcam.gallery import Gallery
from gaitcam.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.formats import read_recording, write_recording
from gaitcam.recording.recording import Recording
from gaitcam.skeleton.sequence import SkeletonSequence

pytestmark = pytest.mark.skipif(not KGBD_ROOT.exists(), reason="KGBD data not available")
WEIGHTS = "weights/sgela"


def walk(person: int, k: int):
    return KGBD_ROOT / "Data" / f"Person{person:03d}" / f"{k}.txt.gz"


@pytest.fixture(scope="module")
def encoder():
    import torch

    torch.set_num_threads(1)
    return GaitEncoder.from_weights(WEIGHTS)


@pytest.fixture(scope="module")
def params(encoder):
    return MatcherParams.load(f"{WEIGHTS}.matcher.json")


@pytest.fixture
def gallery(tmp_path):
    with Gallery(tmp_path / "g.db") as g:
        yield g


def _as_native(src, dst, keep=None, tracks=None) -> str:
    """A KGBD walk re-written as a native recording, optionally cut or duplicated into tracks."""
    rec = read_recording(src)
    seq = rec.tracks[0]
    if keep is not None:
        seq = SkeletonSequence(seq.joints[:keep], seq.timestamps[:keep], seq.layout, seq.states[:keep])
    write_recording(Recording(rec.meta, tracks or {0: seq}), dst)
    return str(dst)


def test_enrolled_people_are_identified_from_another_walk(gallery, encoder, params):
    for person in (1, 2, 3):
        r = enroll_recording(gallery, encoder, params, f"P{person}", walk(person, 1))
        assert r.windows > 100 and r.seconds > 10 and not r.warnings
    index = load_index(gallery, params)
    assert index.people == ["P1", "P2", "P3"]
    out = identify_recording(read_recording(walk(1, 2)), encoder, params, index)
    assert out[0].candidate == "P1" and out[0].windows > 100


def test_too_short_or_incomplete_walks_are_refused(gallery, encoder, params, tmp_path):
    short = _as_native(walk(1, 1), tmp_path / "short.gaitrec", keep=60)
    with pytest.raises(GaitcamError, match="usable walking"):
        enroll_recording(gallery, encoder, params, "P1", short)
    rec = read_recording(walk(1, 1))
    seq = rec.tracks[0]
    joints = seq.joints.copy()
    joints[:, :6] = np.nan  # six of twenty joints never seen
    holey = tmp_path / "holey.gaitrec"
    write_recording(Recording(rec.meta, {0: SkeletonSequence(joints, seq.timestamps, seq.layout)}), holey)
    with pytest.raises(GaitcamError, match="misses"):
        enroll_recording(gallery, encoder, params, "P1", holey)
    assert gallery.people() == []


def test_several_people_need_a_track(gallery, encoder, params, tmp_path):
    a, b = read_recording(walk(1, 1)).tracks[0], read_recording(walk(2, 1)).tracks[0]
    both = _as_native(walk(1, 1), tmp_path / "two.gaitrec", tracks={4: a, 9: b})
    with pytest.raises(GaitcamError, match="--track"):
        enroll_recording(gallery, encoder, params, "P2", both)
    assert pick_track(read_recording(both), 9) == 9
    enroll_recording(gallery, encoder, params, "P2", both, track=9)
    assert gallery.recordings("P2")[0].track == 9


def test_a_likely_duplicate_identity_is_warned(gallery, encoder, params, caplog):
    enroll_recording(gallery, encoder, params, "P1", walk(1, 1))
    with caplog.at_level(logging.WARNING):
        r = enroll_recording(gallery, encoder, params, "Someone", walk(1, 1))
    assert r.warnings and "P1" in r.warnings[0] and "P1" in caplog.text


def test_templates_of_another_encoder_are_rebuilt_from_their_recordings(gallery, encoder, params, tmp_path):
    copy = tmp_path / "1.txt.gz"
    shutil.copy(walk(1, 1), copy)
    old = MatcherParams(**{**params.__dict__, "encoder_version": "old"})
    enroll_recording(gallery, encoder, old, "P1", copy)
    assert gallery.stale(params.encoder_version) == ["P1"]
    assert reenroll_stale(gallery, encoder, params) == ["P1"]
    assert gallery.stale(params.encoder_version) == [] and len(load_index(gallery, params)) == 1
    enroll_recording(gallery, encoder, old, "P2", copy)
    copy.unlink()
    with pytest.raises(GaitcamError, match="gone"):
        reenroll_stale(gallery, encoder, params)


def _later(seq, seconds):
    return SkeletonSequence(seq.joints, seq.timestamps + seconds, seq.layout, seq.states)


def test_one_person_passing_twice_gets_their_name_both_times(gallery, encoder, params):
    for person in (1, 2, 3):
        enroll_recording(gallery, encoder, params, f"P{person}", walk(person, 1))
    index = load_index(gallery, params)
    rec = read_recording(walk(1, 1))
    seq = rec.tracks[0]
    span = float(seq.timestamps[-1] - seq.timestamps[0])
    twice = identify_recording(Recording(rec.meta, {0: seq, 1: _later(seq, span + 5.0)}), encoder, params, index)
    assert [d.identity for d in twice.values()] == ["P1", "P1"]
    together = identify_recording(Recording(rec.meta, {0: seq, 1: _later(seq, span / 2)}), encoder, params, index)
    assert [d.candidate for d in together.values()] == ["P1", "P1"]
    assert [d.identity for d in together.values()].count("P1") == 1


def _snapshot(gallery):
    return [(p.name, p.n_templates, p.n_recordings, p.encoder_versions) for p in gallery.people()]


@pytest.mark.parametrize("damage", ["changed", "missing"])
def test_rebuilding_from_a_changed_or_missing_recording_changes_nothing(gallery, encoder, params, tmp_path,
                                                                        damage):
    first, second = tmp_path / "1.txt.gz", tmp_path / "2.txt.gz"
    shutil.copy(walk(1, 1), first)
    shutil.copy(walk(1, 2), second)
    old = MatcherParams(**{**params.__dict__, "encoder_version": "old"})
    enroll_recording(gallery, encoder, old, "P1", first)
    enroll_recording(gallery, encoder, old, "P1", second)
    before = _snapshot(gallery)
    if damage == "changed":
        shutil.copy(walk(1, 3), second)
    else:
        second.unlink()
    with pytest.raises(GaitcamError, match="2.txt.gz") as e:
        reenroll_stale(gallery, encoder, params)
    assert ("changed" if damage == "changed" else "gone") in str(e.value)
    assert _snapshot(gallery) == before and before[0][1:3] == (4, 2)
    assert gallery.stale(params.encoder_version) == ["P1"]


def test_replacing_with_a_bad_later_recording_keeps_the_old_templates(gallery, encoder, params, tmp_path):
    enroll_recording(gallery, encoder, params, "P1", walk(1, 1))
    before = _snapshot(gallery)
    short = _as_native(walk(1, 2), tmp_path / "short.gaitrec", keep=60)
    with pytest.raises(GaitcamError, match="usable walking"):
        enroll_recordings(gallery, encoder, params, "P1", [walk(1, 2), short], replace=True)
    assert _snapshot(gallery) == before
    results = enroll_recordings(gallery, encoder, params, "P1", [walk(1, 2), walk(1, 3)], replace=True)
    assert [r.name for r in results] == ["P1", "P1"]
    assert [r.path.name for r in gallery.recordings("P1")] == ["2.txt.gz", "3.txt.gz"]


def test_track_evidence_counts_what_it_drops(encoder):
    rec = read_recording(walk(1, 1))
    seq = rec.tracks[0]
    joints = seq.joints.copy()
    joints[50, 3] = np.nan
    ev = track_evidence(SkeletonSequence(joints, seq.timestamps, seq.layout), 0, encoder)
    full = track_evidence(seq, 0, encoder)
    assert ev.dropped >= full.dropped + 1 and ev.windows < full.windows
    assert 0 < ev.missing < 0.01


def test_a_15_fps_recording_gives_the_evidence_of_its_30_fps_original(encoder):
    seq = read_recording(walk(1, 1)).tracks[0]
    half = SkeletonSequence(seq.joints[::2], seq.timestamps[::2], seq.layout)  # every other frame
    full, slow = track_evidence(seq, 0, encoder), track_evidence(half, 0, encoder)
    assert abs(slow.windows - full.windows) <= 5 and abs(slow.seconds - full.seconds) < 0.5
    cosine = slow.age @ full.age / np.linalg.norm(slow.age) / np.linalg.norm(full.age)
    assert cosine > 0.999
