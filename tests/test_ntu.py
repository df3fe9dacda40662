"""NTU RGB+D .skeleton: parsing the text format, exact export, retargeted export, bad files."""
import numpy as np
import pytest

from gaitcam.errors import FormatError
from gaitcam.recording.ntu import read_ntu, write_ntu
from gaitcam.recording.recording import Recording, RecordingMeta
from gaitcam.skeleton.layouts import CANONICAL, KINECT_V2, MEDIAPIPE_POSE
from gaitcam.skeleton.retarget import DERIVED_JOINTS, to_canonical
from gaitcam.skeleton.sequence import JointState, SkeletonSequence

from test_native import assert_same_tracks, synthetic_recording

BODY_A, BODY_B = 72057594037931101, 72057594037931117


def _body(body_id: int, base: float, states: dict[int, int] | None = None) -> list[str]:
    """A body block: its info line, 25, and 25 joint lines (x = base + joint / 100)."""
    states = states or {}
    lines = [f"{body_id} 0 1 1 1 1 0 0.02764709 0.05745083 2", "25"]
    for j in range(25):
        lines.append(f"{base + j / 100:.4f} {0.5 + j / 100:.4f} 3.785547 277.419 191.7037 1036.233 519.1677 "
                     f"-0.2059419 0.05349901 0.9692109 -0.1239193 {states.get(j, 2)}")
    return lines


def _ntu_text() -> str:
    """Three frames: A alone (joint 3 not tracked, joint 21 inferred), nobody, then A and B."""
    frames = [["1", *_body(BODY_A, 0.1, {3: 0, 21: 1})], ["0"], ["2", *_body(BODY_B, 0.7), *_body(BODY_A, 0.2)]]
    return "\n".join(["3"] + [line for frame in frames for line in frame]) + "\n"


def test_parses_bodies_states_and_times(tmp_path):
    path = tmp_path / "S001C002P003R002A013.skeleton"
    path.write_text(_ntu_text())
    rec = read_ntu(path)
    assert (rec.meta.layout, rec.meta.fps, rec.meta.sensor, rec.meta.subject) == ("kinect_v2", 30.0, "ntu", "P003")
    assert list(rec.tracks) == [0, 1] and rec.meta.extra["ntu_body_ids"] == {"0": BODY_A, "1": BODY_B}
    a, b = rec.tracks[0], rec.tracks[1]
    np.testing.assert_allclose(a.timestamps, [0, 2 / 30])
    np.testing.assert_allclose(b.timestamps, [2 / 30])
    assert np.isnan(a.joints[0, 3]).all() and a.states[0, 3] == JointState.MISSING
    assert a.states[0, 21] == JointState.INFERRED and a.states[1, 3] == JointState.TRACKED
    assert a.joints[0, 4].tolist() == pytest.approx([0.14, 0.54, 3.785547])
    assert b.joints[0, 0, 0] == pytest.approx(0.7)


def test_kinect_v2_round_trip_is_exact(tmp_path):
    path = tmp_path / "in.skeleton"
    path.write_text(_ntu_text())
    rec = read_ntu(path)
    write_ntu(rec, tmp_path / "out.skeleton")
    back = read_ntu(tmp_path / "out.skeleton")
    assert_same_tracks(rec, back)
    assert back.meta.extra == rec.meta.extra  # the original bodyIDs are written back
    assert (tmp_path / "out.skeleton").read_text().splitlines()[:2] == ["3", "1"]

    synthetic = synthetic_recording(KINECT_V2)  # random float32 values, irregular states
    write_ntu(synthetic, tmp_path / "s.skeleton")
    back = read_ntu(tmp_path / "s.skeleton")
    for tid, new in zip(synthetic.tracks, back.tracks):
        seq = synthetic.tracks[tid]
        np.testing.assert_array_equal(back.tracks[new].joints, seq.joints)
        np.testing.assert_array_equal(back.tracks[new].states, seq.states)
        np.testing.assert_allclose(back.tracks[new].timestamps, seq.timestamps - 1.5, atol=1e-6)  # 1/30 s grid from 0


def test_other_layouts_go_into_kinect_v2_counterparts(tmp_path):
    rec = synthetic_recording(CANONICAL)
    write_ntu(rec, tmp_path / "c.skeleton")
    back = read_ntu(tmp_path / "c.skeleton")
    for tid, new in zip(rec.tracks, back.tracks):
        v2 = back.tracks[new]
        for name in ("Neck", "HandTipLeft", "ThumbLeft", "HandTipRight", "ThumbRight"):
            assert (v2.states[:, KINECT_V2.index(name)] == JointState.MISSING).all()
        canon = to_canonical(v2)
        np.testing.assert_array_equal(canon.joints, rec.tracks[tid].joints)
        np.testing.assert_array_equal(canon.states, rec.tracks[tid].states)

    mp = synthetic_recording(MEDIAPIPE_POSE, frames=8)
    write_ntu(mp, tmp_path / "mp.skeleton")
    v2 = read_ntu(tmp_path / "mp.skeleton").tracks[0]
    hip = KINECT_V2.index("SpineBase")  # canonical HipCenter, DERIVED for MediaPipe
    assert "HipCenter" in DERIVED_JOINTS["mediapipe_pose"]
    expected = to_canonical(mp.tracks[3]).joints[:, CANONICAL.index("HipCenter")]
    ok = ~np.isnan(expected).any(axis=1)
    assert (v2.states[ok, hip] == JointState.INFERRED).all()
    np.testing.assert_array_equal(v2.joints[ok, hip], expected[ok])


def _single(times: list[float]) -> Recording:
    joints = np.arange(len(times) * 25 * 3, dtype=np.float32).reshape(-1, 25, 3) / 100
    return Recording(RecordingMeta("demo", "kinect_v2", 30.0), {0: SkeletonSequence(joints, times, KINECT_V2)})


def test_timing_gaps_become_empty_frames_and_fast_frames_are_kept(tmp_path):
    write_ntu(_single([10.0, 10 + 1 / 30, 10 + 5 / 30]), tmp_path / "gap.skeleton")
    assert (tmp_path / "gap.skeleton").read_text().startswith("6\n")
    np.testing.assert_allclose(read_ntu(tmp_path / "gap.skeleton").tracks[0].timestamps, [0, 1 / 30, 5 / 30])
    fast = _single([0, 1 / 60, 2 / 60, 3 / 60])
    write_ntu(fast, tmp_path / "fast.skeleton")
    back = read_ntu(tmp_path / "fast.skeleton").tracks[0]
    np.testing.assert_array_equal(back.joints, fast.tracks[0].joints)


def _replace(line_no: int, text: str) -> str:
    lines = _ntu_text().splitlines()
    lines[line_no - 1] = text
    return "\n".join(lines) + "\n"


JOINT = "0.1 0.2 3.0 0 0 0 0 0 0 0 0 {}"


@pytest.mark.parametrize(
    ("text", "line_no", "words"),
    [
        ("", 1, "truncated file: ends where the frame count"),
        ("3\n1\n", 3, "truncated file: ends where a body line"),
        ("\n".join(_ntu_text().splitlines()[:40]), 41, "truncated file: ends where joint 8 of 25"),
        (_ntu_text().replace("\n0\n", "\n"), 85, "truncated file: ends where the body count of frame 3"),
        ("x\n", 1, "expected the frame count"),
        (_replace(4, "24"), 4, "expected 25 joints"),
        (_replace(3, "72057594037931101 0 1"), 3, "body line of 10 values"),
        (_replace(5, "0.1 0.2 3.0"), 5, "expected 12 values for joint SpineBase"),
        (_replace(6, JOINT.format("x")), 6, "not a number"),
        (_replace(6, JOINT.format(3)), 6, "trackingState 3"),
        (_replace(6, "nan 0.2 3.0 0 0 0 0 0 0 0 0 2"), 6, "position is not finite"),
        (_ntu_text().replace(str(BODY_B), str(BODY_A)), 59, "twice in frame 3"),
        (_ntu_text() + "1\n", 86, "unexpected content after the 3 frames"),
    ],
    ids=["empty", "no-body", "mid-body", "frame-count-too-high", "not-a-count", "joint-count", "body-line",
         "joint-values", "not-a-number", "bad-state", "nan-tracked", "duplicate-body", "extra-content"],
)
def test_bad_files_name_file_and_line(tmp_path, text, line_no, words):
    path = tmp_path / "bad.skeleton"
    path.write_text(text)
    with pytest.raises(FormatError, match=words) as err:
        read_ntu(path)
    assert err.value.line == line_no and f"bad.skeleton:{line_no}:" in str(err.value)


def test_not_tracked_joints_may_hold_anything(tmp_path):
    path = tmp_path / "nan.skeleton"
    path.write_text(_replace(6, "nan 0.2 3.0 0 0 0 0 0 0 0 0 0"))
    seq = read_ntu(path).tracks[0]
    assert np.isnan(seq.joints[0, 1]).all() and seq.states[0, 1] == JointState.MISSING


def test_binary_and_missing_files(tmp_path):
    (tmp_path / "bin.skeleton").write_bytes(b"3\n\xff\xfe")
    with pytest.raises(FormatError, match="bin.skeleton: cannot read as NTU text"):
        read_ntu(tmp_path / "bin.skeleton")
    with pytest.raises(FormatError, match="nope.skeleton"):
        read_ntu(tmp_path / "nope.skeleton")
