"""Azure Kinect offline_processor JSON: joint names, units, frame rate, round trip, bad files."""
import json

import numpy as np
import pytest

from gaitcam.errors import FormatError
from gaitcam.recording.azure_json import read_azure_json, write_azure_json
from gaitcam.recording.recording import Recording, RecordingMeta
from gaitcam.skeleton.layouts import AZURE_KINECT
from gaitcam.skeleton.sequence import JointState

from test_native import assert_same_tracks, synthetic_recording

NAMES = list(AZURE_KINECT.joints)


def _body(body_id: int, offset: float) -> dict:
    """Joint j at (j, offset, 2000 + j) mm, the SDK's shape with orientations."""
    return {"body_id": body_id,
            "joint_positions": [[float(j), offset, 2000.0 + j] for j in range(32)],
            "joint_orientations": [[1.0, 0.0, 0.0, 0.0]] * 32}


def _doc(step_usec: int = 33333, names: list[str] = NAMES) -> dict:
    frames = [{"timestamp_usec": 1_000_000 + k * step_usec, "frame_id": k, "num_bodies": len(bodies), "bodies": bodies}
              for k, bodies in enumerate([[_body(1, 0.0)], [], [_body(2, 5.0), _body(1, 10.0)]])]
    return {"k4abt_sdk_version": "1.1.2", "source_file": "walk.mkv", "joint_names": list(names),
            "bone_list": [["SPINE_CHEST", "SPINE_NAVEL"]], "frames": frames}


def _write(tmp_path, doc: object, name: str = "bt.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc, indent=4))
    return path


def test_reads_offline_processor_output(tmp_path):
    rec = read_azure_json(_write(tmp_path, _doc()))
    assert (rec.meta.sensor, rec.meta.layout, rec.meta.fps) == ("azure", "azure_kinect", 30.0)
    assert list(rec.tracks) == [1, 2]
    one = rec.tracks[1]
    np.testing.assert_allclose(one.timestamps, [1.0, 1.066666])
    # mm -> m, depth camera axes (y down) -> Kinect camera space (x left, y up)
    np.testing.assert_allclose(one.joints[1, 4], [-0.004, -0.010, 2.004], rtol=1e-6)
    assert (one.states == JointState.TRACKED).all()


def test_names_match_case_insensitively_in_any_order(tmp_path):
    order = np.random.default_rng(0).permutation(32)
    doc = _doc(names=[NAMES[i].lower() for i in order])
    for frame in doc["frames"]:
        for body in frame["bodies"]:
            body["joint_positions"] = [body["joint_positions"][i] for i in order]
    rec = read_azure_json(_write(tmp_path, doc))
    expected = read_azure_json(_write(tmp_path, _doc(), "plain.json"))
    assert_same_tracks(expected, rec)


@pytest.mark.parametrize(("step", "fps"), [(200_000, 5.0), (66_667, 15.0), (33_322, 30.0)])
def test_frame_rate_is_inferred(tmp_path, step, fps):
    assert read_azure_json(_write(tmp_path, _doc(step))).meta.fps == fps


def test_round_trip_with_a_missing_joint(tmp_path):
    rec = read_azure_json(_write(tmp_path, _doc()))
    rec.tracks[2].joints[0, 5] = np.nan
    rec.tracks[2].states[0, 5] = JointState.MISSING
    write_azure_json(rec, tmp_path / "out.json")
    back = read_azure_json(tmp_path / "out.json")
    assert_same_tracks(rec, back)
    frames = json.loads((tmp_path / "out.json").read_text())["frames"]
    assert [b["body_id"] for b in frames[1]["bodies"]] == [1, 2]  # the empty frame is not kept
    assert frames[1]["bodies"][1]["joint_positions"][5] is None
    assert frames[0]["bodies"][0]["joint_positions"][4] == pytest.approx([4.0, 0.0, 2004.0])  # the SDK's axes again

    synthetic = synthetic_recording(AZURE_KINECT)  # random float32 metres survive mm and back
    for seq in synthetic.tracks.values():
        seq.states[seq.states == JointState.INFERRED] = JointState.TRACKED  # the file has no confidence
    write_azure_json(synthetic, tmp_path / "s.json")
    assert_same_tracks(synthetic, read_azure_json(tmp_path / "s.json"))


def test_writer_refuses_other_layouts(tmp_path):
    with pytest.raises(FormatError, match="k.json: Azure Kinect JSON holds azure_kinect skeletons only"):
        write_azure_json(synthetic_recording(), tmp_path / "k.json")


def _broken(change) -> dict:
    doc = _doc()
    change(doc)
    return doc


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ([1, 2], "no top-level 'joint_names' list"),
        ({"frames": []}, "no top-level 'joint_names' list"),
        (_broken(lambda d: d.pop("frames")), "no top-level 'frames' list"),
        (_broken(lambda d: d["joint_names"].__setitem__(0, "HIPS")), r"unknown: \['HIPS'\]; missing: \['PELVIS'\]"),
        (_broken(lambda d: d["joint_names"].pop()), r"missing: \['EAR_RIGHT'\]; 31 names"),
        (_broken(lambda d: d["frames"][2]["bodies"][1]["joint_positions"].pop()),
         r"frames\[2\].bodies\[1\]: joint_positions must be a list of 32"),
        (_broken(lambda d: d["frames"][0]["bodies"][0]["joint_positions"].__setitem__(3, [1, 2])),
         r"frames\[0\].bodies\[0\]: joint 3 is not \[x, y, z\]"),
        (_broken(lambda d: d["frames"][2].__setitem__("num_bodies", 3)), r"frames\[2\]: num_bodies is 3 but 2"),
        (_broken(lambda d: d["frames"][1].pop("timestamp_usec")), r"frames\[1\]: malformed frame \(KeyError"),
        (_broken(lambda d: d["frames"][2]["bodies"][0].pop("body_id")), r"frames\[2\]: malformed frame"),
        (_broken(lambda d: d["frames"][2].__setitem__("timestamp_usec", 0)), "track 1: time does not increase"),
    ],
    ids=["not-object", "no-names", "no-frames", "unknown-name", "missing-name", "joint-count", "not-xyz",
         "num-bodies", "no-timestamp", "no-body-id", "time-backwards"],
)
def test_bad_files_are_one_line_errors(tmp_path, doc, words):
    path = _write(tmp_path, doc, "bad.json")
    with pytest.raises(FormatError, match=words) as err:
        read_azure_json(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(_doc(), indent=4)[:500])
    with pytest.raises(FormatError, match="cut.json:[0-9]+: not valid JSON") as err:
        read_azure_json(path)
    assert err.value.line > 1


def test_empty_recording_defaults_to_30_fps(tmp_path):
    rec = read_azure_json(_write(tmp_path, {"joint_names": NAMES, "frames": []}))
    assert rec.tracks == {} and rec.meta.fps == 30.0
    empty = Recording(RecordingMeta("azure", "azure_kinect", 30.0), {})
    write_azure_json(empty, tmp_path / "e.json")
    assert read_azure_json(tmp_path / "e.json").tracks == {}
