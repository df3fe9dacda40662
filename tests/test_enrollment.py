"""Enrolment and identification from recordings, with the shipped encoder and matcher."""
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import KGBD_ROOT
from gaitcam.identity.enrollment import (enroll_recording, enroll_recordings, identify_recording, load_index, pick_track,
                                reenroll_stale, track_evidence)
from gaitcam.errors import GaitcamError
from gaitcam.identity.gallery import Gallery
from gaitcam.identity.matcher import MatcherParams
from gaitcam.model.encoder import GaitEncoder
from gaitcam.recording.formats import read_recording, write_recording
from gaitcam.cli import main
from gaitcam.recording.recording import Recording, RecordingMeta
from gaitcam.sensors.demo import DEMO_STRANGER, demo_walk
from gaitcam.skeleton.layouts import AZURE_KINECT, CANONICAL
from gaitcam.skeleton.retarget import TABLES
from gaitcam.skeleton.sequence import JointState, SkeletonSequence

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
    """The shipped matcher without its cohort: the cohort is KGBD's people, whom these tests
    enrol, and a cohort must never hold the enrolled people (docs/matching.md)."""
    params = MatcherParams.load(f"{WEIGHTS}.matcher.json")
    params.cohort, params.cohort_of = params.cohort[:0], params.cohort_of[:0]
    return params


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
    assert out[0].decision.candidate == "P1" and out[0].decision.windows > 100 and out[0].failure is None


def test_too_short_or_incomplete_walks_are_refused(gallery, encoder, params, tmp_path):
    short = _as_native(walk(1, 1), tmp_path / "short.gaitrec", keep=60)
    with pytest.raises(GaitcamError, match="too short"):
        enroll_recording(gallery, encoder, params, "P1", short)
    rec = read_recording(walk(1, 1))
    seq = rec.tracks[0]
    joints = seq.joints.copy()
    joints[:, :6] = np.nan  # head, shoulders and elbows never seen: the arms cannot be derived
    holey = tmp_path / "holey.gaitrec"
    write_recording(Recording(rec.meta, {0: SkeletonSequence(joints, seq.timestamps, seq.layout)}), holey)
    with pytest.raises(GaitcamError, match="too few joints"):
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
    assert gallery.stale(params.template_version) == ["P1"]
    assert reenroll_stale(gallery, encoder, params) == ["P1"]
    assert gallery.stale(params.template_version) == [] and len(load_index(gallery, params)) == 1
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
    assert [r.decision.identity for r in twice.values()] == ["P1", "P1"]
    together = identify_recording(Recording(rec.meta, {0: seq, 1: _later(seq, span / 2)}), encoder, params, index)
    assert [r.decision.candidate for r in together.values()] == ["P1", "P1"]
    assert [r.decision.identity for r in together.values()].count("P1") == 1


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
    assert _snapshot(gallery) == before and before[0][1:3] == (6, 2)  # gait, cycle, shape per walk
    assert gallery.stale(params.template_version) == ["P1"]


def test_replacing_with_a_bad_later_recording_keeps_the_old_templates(gallery, encoder, params, tmp_path):
    enroll_recording(gallery, encoder, params, "P1", walk(1, 1))
    before = _snapshot(gallery)
    short = _as_native(walk(1, 2), tmp_path / "short.gaitrec", keep=60)
    with pytest.raises(GaitcamError, match="too short"):
        enroll_recordings(gallery, encoder, params, "P1", [walk(1, 2), short], replace=True)
    assert _snapshot(gallery) == before
    results = enroll_recordings(gallery, encoder, params, "P1", [walk(1, 2), walk(1, 3)], replace=True)
    assert [r.name for r in results] == ["P1", "P1"]
    assert [r.path.name for r in gallery.recordings("P1")] == ["2.txt.gz", "3.txt.gz"]


def test_track_evidence_bridges_a_short_loss_and_counts_a_long_one(encoder):
    seq = read_recording(walk(1, 1)).tracks[0]
    full = track_evidence(seq, 0, encoder)
    joints = seq.joints.copy()
    joints[50, 3] = np.nan  # a shoulder lost for one frame: bridged
    brief = track_evidence(SkeletonSequence(joints, seq.timestamps, seq.layout), 0, encoder)
    assert brief.stats.bridged == 1 and brief.windows == full.windows and brief.failure() is None
    joints[100:130, 3] = np.nan  # ... and for a second: the run ends there
    long = track_evidence(SkeletonSequence(joints, seq.timestamps, seq.layout), 0, encoder)
    assert long.stats.incomplete == 30 and long.windows < full.windows and 0 < long.incomplete < 0.1


def test_a_15_fps_recording_gives_the_evidence_of_its_30_fps_original(encoder):
    seq = read_recording(walk(1, 1)).tracks[0]
    half = SkeletonSequence(seq.joints[::2], seq.timestamps[::2], seq.layout)  # every other frame
    full, slow = track_evidence(seq, 0, encoder), track_evidence(half, 0, encoder)
    assert abs(slow.windows - full.windows) <= 5 and abs(slow.seconds - full.seconds) < 0.5
    a, b = full.descriptors.mean(axis=(0, 1)), slow.descriptors.mean(axis=(0, 1))
    assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) > 0.999


# -- recordings from other sensors, with joints that are never tracked ------------------------

def _partial(seq: SkeletonSequence, never: tuple[str, ...], flicker: str | None = None) -> SkeletonSequence:
    """A canonical walk with `never` joints untracked in every frame (as many Kinect v2 sites
    report hands and the shoulder centre) and `flicker` lost for two frames every second."""
    joints, states = seq.joints.copy(), seq.states.copy()
    gone = np.zeros(states.shape, bool)
    gone[:, [CANONICAL.index(j) for j in never]] = True
    if flicker:
        gone[np.arange(len(seq)) % 30 < 2, CANONICAL.index(flicker)] = True
    joints[gone], states[gone] = np.nan, JointState.MISSING
    return SkeletonSequence(joints, seq.timestamps, CANONICAL, states)


def _as_azure(seq: SkeletonSequence) -> SkeletonSequence:
    """The canonical joints in the Azure Kinect layout; joints Azure has and v1 lacks missing."""
    table = TABLES[AZURE_KINECT.name]
    joints = np.full((len(seq), AZURE_KINECT.n_joints, 3), np.nan, np.float32)
    for canonical, azure in table.items():
        joints[:, AZURE_KINECT.index(azure)] = seq.joints[:, CANONICAL.index(canonical)]
    return SkeletonSequence(joints, seq.timestamps, AZURE_KINECT)


NEVER = ("HandLeft", "HandRight", "ShoulderCenter")


@pytest.mark.parametrize("suffix", [".skeleton", ".json", ".csv"])
def test_recordings_with_joints_never_tracked_enrol_and_identify(tmp_path, capsys, suffix):
    """Kinect v2 NTU files (hands and shoulder centre not tracked), Azure Kinect JSON (hands
    null) and CSV (empty cells, and a knee that flickers): `enroll` then `identify --json` with
    the default threshold, as a new site would."""
    def write(name: str, seed: int, seconds: float) -> str:
        seq = _partial(demo_walk(name, seed, seconds), NEVER, flicker="KneeLeft" if suffix == ".csv" else None)
        layout = AZURE_KINECT if suffix == ".json" else CANONICAL
        meta = RecordingMeta("azure" if suffix == ".json" else "kinect", layout.name, 30.0)
        path = tmp_path / f"{name}-{seed}{suffix}"
        write_recording(Recording(meta, {1: _as_azure(seq) if suffix == ".json" else seq}), path)
        return str(path)

    db = str(tmp_path / "site.db")
    for name in ("Ada", "Ben"):
        assert main(["enroll", name, write(name, 1, 30.0), "--gallery", db, "--threads", "1"]) == 0
    capsys.readouterr()
    probes = [write(name, 2, 20.0) for name in ("Ada", "Ben", DEMO_STRANGER)]
    assert main(["identify", "--json", *probes, "--gallery", db, "--threads", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    said = {Path(r["recording"]).name.split("-")[0]: r["identity"] for r in rows}
    assert said == {"Ada": "Ada", "Ben": "Ben", DEMO_STRANGER: None}
    assert all(r["failure"] is None and r["windows"] > 50 for r in rows)


def test_identify_says_why_a_recording_gives_nothing(tmp_path, capsys):
    short = tmp_path / "short.csv"
    seq = demo_walk("Ada", 3, 10.0)
    write_recording(Recording(RecordingMeta("kinect", CANONICAL.name, 30.0), {1: SkeletonSequence(
        seq.joints[:20], seq.timestamps[:20], CANONICAL, seq.states[:20])}), short)
    kneeless = tmp_path / "kneeless.csv"
    write_recording(Recording(RecordingMeta("kinect", CANONICAL.name, 30.0), {1: _partial(seq, ("KneeLeft",))}),
                    kneeless)
    empty = tmp_path / "empty.csv"
    write_recording(Recording(RecordingMeta("kinect", CANONICAL.name, 30.0), {}), empty)
    db = str(tmp_path / "site.db")
    assert main(["identify", "--json", str(short), str(kneeless), str(empty), "--gallery", db, "--threads", "1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["failure"] for r in rows] == ["too short", "too few joints", "no pose"]
    assert all(r["identity"] is None for r in rows)
    assert main(["identify", str(kneeless), "--gallery", db, "--threads", "1"]) == 0
    assert "cannot tell (too few joints:" in capsys.readouterr().out
    assert main(["enroll", "Ada", str(kneeless), "--gallery", db, "--threads", "1"]) == 2
    assert "too few joints" in capsys.readouterr().err
    with Gallery(db) as g:
        assert g.people() == []  # a failed enrolment changes nothing


def test_an_all_zero_walk_is_a_failure_to_acquire_not_a_crash(tmp_path, capsys):
    from gaitcam.cli import main
    from gaitcam.recording.formats import write_recording
    from gaitcam.recording.recording import Recording, RecordingMeta
    from gaitcam.skeleton.layouts import CANONICAL
    from gaitcam.skeleton.sequence import SkeletonSequence

    path = tmp_path / "zeros.gaitrec"
    seq = SkeletonSequence(np.zeros((150, 20, 3), np.float32), np.arange(150) / 30, CANONICAL)
    write_recording(Recording(RecordingMeta(sensor="test", fps=30.0, layout=CANONICAL.name), {0: seq}), path)
    assert main(["enroll", "Zero", str(path), "--gallery", str(tmp_path / "g.db")]) == 2
    err = capsys.readouterr().err
    assert "no pose" in err and "hold no body" in err
    assert main(["identify", str(path), "--json", "--gallery", str(tmp_path / "g.db")]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["identity"] is None and "no pose" in json.dumps(row)
