"""The view's recorder hook: passes frames on, records all or one person, lines up image points
by track, runs hand-offs on the pipeline thread, and never lets a failed write stop the stream."""
import numpy as np

from gaitcam.recording.native import RecordingWriter, read_native
from gaitcam.recording.recording import RecordingMeta
from gaitcam.sensors.base import Body, Frame
from gaitcam.skeleton.layouts import CANONICAL
from gaitcam.ui.tap import FrameTap, image_points


def _frame(t: float, tracks=(1, 2), points: bool = False) -> Frame:
    bodies = [Body(k, np.full((20, 3), k + t, np.float32)) for k in tracks]
    extras = {"image_points": np.stack([np.full((20, 2), 10.0 * k) for k in tracks])} if points else {}
    return Frame(t, bodies, CANONICAL, extras=extras)


def _writer(path) -> RecordingWriter:
    return RecordingWriter(path, RecordingMeta(sensor="demo", layout=CANONICAL.name, fps=30.0), fsync=False)


class _List:
    def __init__(self):
        self.frames = []

    def write(self, frame):
        self.frames.append(frame)


def test_image_points_follow_their_bodies_track_ids():
    points = image_points(_frame(0.0, tracks=(7, 4), points=True))
    assert set(points.points) == {7, 4}
    np.testing.assert_array_equal(points.points[4], np.full((20, 2), 40.0))
    dropped = _frame(0.0, tracks=(7, 4), points=True)
    dropped.bodies.pop(0)  # the pipeline left out a body: rows can no longer be matched
    assert image_points(dropped) is None
    assert image_points(_frame(0.0)) is None


def test_records_everyone_or_one_person_and_passes_frames_on(tmp_path):
    downstream = _List()
    tap = FrameTap(downstream, on_error=lambda text: None)
    tap.write(_frame(0.0))
    tap.start_recording(_writer(tmp_path / "all.gaitrec"))
    tap.start_capture(2, _writer(tmp_path / "two.gaitrec"))
    assert tap.capturing == 2
    for i in range(1, 5):
        tap.write(_frame(i / 30, tracks=(1, 2) if i != 3 else (1,)))
    tap.stop_recording()
    tap.stop_capture()
    tap.write(_frame(1.0))  # nothing is written after stopping
    assert len(downstream.frames) == 6
    everyone = read_native(tmp_path / "all.gaitrec")
    assert {t: len(s) for t, s in everyone.tracks.items()} == {1: 4, 2: 3}
    one = read_native(tmp_path / "two.gaitrec")
    assert list(one.tracks) == [2] and len(one.tracks[2]) == 3 and tap.track_frames == 3


def test_a_failed_write_stops_that_recording_and_is_reported_not_raised(tmp_path):
    problems = []
    tap = FrameTap(None, on_error=problems.append)
    tap.start_recording(_writer(tmp_path / "a.gaitrec"))
    tap.write(_frame(1.0))
    tap.write(_frame(0.5))  # time going backwards: the writer refuses it
    assert tap.recording is None and len(problems) == 1 and "recording stopped" in problems[0]
    assert tap.stop_recording() is None
    assert len(read_native(tmp_path / "a.gaitrec").tracks[1]) == 1  # what came before is kept
