"""gaitcam CSV: the exact layout of the file, exact round trips, bad files named by line."""
import numpy as np
import pytest

from gaitcam.errors import FormatError
from gaitcam.recording.csv_format import columns, read_csv, write_csv
from gaitcam.recording.recording import Recording, RecordingMeta
from gaitcam.skeleton.layouts import CANONICAL, KINECT_V2, MEDIAPIPE_POSE
from gaitcam.skeleton.retarget import to_canonical
from gaitcam.skeleton.sequence import JointState

from test_native import assert_same_tracks, synthetic_recording


def test_file_layout(tmp_path):
    rec = synthetic_recording(frames=12)
    rec.meta.subject = "Ada Lovelace"
    write_csv(rec, tmp_path / "r.csv")
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == "# gaitcam-csv v1 layout=kinect_v1 fps=30.0 sensor=demo subject=Ada%20Lovelace"
    assert lines[1].split(",")[:6] == ["time", "track", "HipCenter_x", "HipCenter_y", "HipCenter_z", "HipCenter_state"]
    assert len(lines) == 2 + 12 + 6  # one row per body per frame: track 7 is there for 6 frames
    assert lines[2].startswith("1.5,3,")
    missing = lines[3].split(",")[2 + 4 * 2: 2 + 4 * 3]  # track 3, frame 1, joint 2
    assert missing == ["", "", "", "0"]


@pytest.mark.parametrize("layout", [CANONICAL, KINECT_V2, MEDIAPIPE_POSE])
def test_round_trip_is_exact(tmp_path, layout):
    rec = synthetic_recording(layout)
    write_csv(rec, tmp_path / "r.csv")
    back = read_csv(tmp_path / "r.csv")
    assert_same_tracks(rec, back)
    assert (back.meta.layout, back.meta.fps, back.meta.sensor, back.meta.subject) == (layout.name, 30.0, "demo", "Ada")


def test_derived_states_survive(tmp_path):
    canon = to_canonical(synthetic_recording(MEDIAPIPE_POSE, frames=6).tracks[3])
    assert (canon.states == JointState.DERIVED).any()
    rec = Recording(RecordingMeta("webcam", CANONICAL.name, 25.0), {0: canon})
    write_csv(rec, tmp_path / "d.csv")
    back = read_csv(tmp_path / "d.csv")
    assert_same_tracks(rec, back)
    assert back.meta.fps == 25.0 and back.meta.subject is None


def _csv(rows: list[str], first: str = "# gaitcam-csv v1 layout=kinect_v1 fps=30 sensor=demo") -> str:
    return "\n".join([first, ",".join(columns(CANONICAL)), *rows]) + "\n"


GOOD = "0.0,1," + ",".join(["0.1,0.2,3.0,2"] * 20)


def _row(joint: int, cells: str) -> str:
    parts = GOOD.split(",")
    parts[2 + 4 * joint: 6 + 4 * joint] = cells.split(",")
    return ",".join(parts)


@pytest.mark.parametrize(
    ("text", "line_no", "words"),
    [
        ("", 1, "first line is not '# gaitcam-csv v1"),
        (_csv([GOOD], "time,track"), 1, "first line is not"),
        (_csv([GOOD], "# gaitcam-csv v2 layout=kinect_v1 fps=30 sensor=demo"), 1, "unsupported gaitcam CSV version v2"),
        (_csv([GOOD], "# gaitcam-csv v1 layout=kinect_v1 sensor=demo"), 1, "lacks fps"),
        (_csv([GOOD], "# gaitcam-csv v1 layout=kinect_v7 fps=30 sensor=demo"), 1, "unknown joint layout 'kinect_v7'"),
        (_csv([GOOD], "# gaitcam-csv v1 layout=kinect_v1 fps=fast sensor=demo"), 1, "fps is not a number"),
        (_csv([GOOD]).replace("HipCenter_x", "Hip_x"), 2, "header row does not name the kinect_v1 joints"),
        (_csv([GOOD, GOOD[:-2]]), 4, "expected 82 values, found 81"),
        (_csv([GOOD.replace("0.0,1,", "0.0,x,", 1)]), 3, "not a number"),
        (_csv([_row(4, "0.1,0.2,abc,2")]), 3, "not a number"),
        (_csv([_row(4, "0.1,0.2,3,7")]), 3, r"joint state not in \[0, 1, 2, 3\]: \[7\]"),
        (_csv([_row(4, ",,,2")]), 3, "whose state is not 0 \\(missing\\) has no finite"),
        (_csv([_row(4, "0.1,,3,1")]), 3, "has no finite"),
        (_csv([_row(4, "inf,0.2,3,2")]), 3, "has no finite"),
    ],
    ids=["empty", "no-comment", "version", "no-fps", "layout", "bad-fps", "header", "short-row", "bad-track",
         "bad-number", "bad-state", "missing-but-tracked", "partly-empty", "inf"],
)
def test_bad_files_name_file_and_line(tmp_path, text, line_no, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(FormatError, match=words) as err:
        read_csv(path)
    assert err.value.line == line_no and f"bad.csv:{line_no}:" in str(err.value)


def test_missing_joints_and_time_order(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(_csv([_row(4, ",,,0"), _row(5, "9,9,9,0").replace("0.0,1,", "0.5,1,", 1)]))
    seq = read_csv(path).tracks[1]
    assert np.isnan(seq.joints[0, 4]).all() and np.isnan(seq.joints[1, 5]).all()  # state 0 wins over numbers
    assert (seq.states[:, [4, 5]] == [[0, 2], [2, 0]]).all()
    path.write_text(_csv([GOOD, GOOD]))
    with pytest.raises(FormatError, match="m.csv: track 1: time does not increase after 0.000000 s"):
        read_csv(path)


def test_header_only_is_an_empty_recording(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text(_csv([]))
    rec = read_csv(path)
    assert rec.tracks == {} and rec.meta.layout == "kinect_v1"
