"""The live window, offscreen: what it draws for the demo, a replay and a camera source, and what
its buttons and keys do (recording, enrolment live and from a file, replay transport), with
problems shown in the window."""
import json
import os
import time
from contextlib import ExitStack
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import pyqtgraph as pg  # noqa: E402
from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtGui import QImage  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QFileDialog, QInputDialog  # noqa: E402

from gaitcam.config import DEMO_DIR  # noqa: E402
from gaitcam.identity.enrollment import demo_gallery as enrol_demo_gallery  # noqa: E402
from gaitcam.identity.gallery import Gallery  # noqa: E402
from gaitcam.identity.matcher import MatcherParams  # noqa: E402
from gaitcam.model.encoder import GaitEncoder  # noqa: E402
from gaitcam.recording.formats import read_recording, write_recording  # noqa: E402
from gaitcam.recording.recording import Recording, RecordingMeta  # noqa: E402
from gaitcam.sensors.base import Source, SourceError, SourceLost  # noqa: E402
from gaitcam.sensors.demo import DEMO_PEOPLE, DemoSource, demo_walk  # noqa: E402
from gaitcam.sensors.replay import ReplaySource  # noqa: E402
from gaitcam.session import LiveRun, Models, Session  # noqa: E402
from gaitcam.skeleton.layouts import CANONICAL  # noqa: E402
from gaitcam.skeleton.sequence import SkeletonSequence  # noqa: E402
from gaitcam.ui.app import application, run_gui  # noqa: E402
from gaitcam.ui.bench import CrowdSource  # noqa: E402
from gaitcam.ui.skeletons import BONES  # noqa: E402
from gaitcam.ui.style import UNKNOWN, identity_colour  # noqa: E402
from gaitcam.ui.transport import PlayableReplay  # noqa: E402
from gaitcam.ui.view import LiveView  # noqa: E402

NAMES = set(DEMO_PEOPLE)


@pytest.fixture(scope="module")
def model():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield GaitEncoder.from_weights("weights/sgela"), MatcherParams.load("weights/sgela.matcher.json")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo_gallery(model):
    with ExitStack() as stack:
        yield enrol_demo_gallery(stack, *model)


@pytest.fixture
def empty_gallery(tmp_path):
    with Gallery(tmp_path / "gallery.db") as gallery:
        yield gallery


def _live(source, gallery, model) -> LiveRun:
    """A session's live run on `source` (its events kept for `session.events()`)."""
    return Session(Models(*model), gallery, "test").live(source)


def _view(source, gallery, model, folder, sensor="demo") -> LiveView:
    application()
    return LiveView(_live(source, gallery, model), sensor_name=sensor, recordings_dir=folder)


def _wait(condition, timeout: float = 20.0) -> bool:
    """Run the event loop (the view's timer redraws) until `condition()` or the timeout."""
    app = application()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.01)
    return False


def _settled(view: LiveView, quiet: float = 0.5) -> int:
    """Wait until no new frame has come for `quiet` seconds; the frame count then."""
    last, since = view.frames.get()[0], time.monotonic()

    def still() -> bool:
        nonlocal last, since
        version = view.frames.get()[0]
        if version != last:
            last, since = version, time.monotonic()
        return time.monotonic() - since > quiet

    assert _wait(still, 5)
    return last


def _click(view: LiveView, action) -> None:
    view.findChild(pg.QtWidgets.QToolBar).widgetForAction(action).click()


def _labels(plot) -> list[str]:
    return [item.toPlainText() for item in plot.items if isinstance(item, pg.TextItem)]


def _skeleton_curves(plot) -> list:
    return [item for item in plot.items if isinstance(item, pg.PlotCurveItem) and item.zValue() >= 0]


def _pixels(image: QImage) -> np.ndarray:
    """The image as an RGB array, copied: the converted QImage owns the buffer and dies here."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes()).reshape(image.height(), -1)
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def _colour_pixels(pixels: np.ndarray, rgb) -> int:
    return int((np.abs(pixels.astype(int) - np.array(rgb[:3])).sum(axis=2) < 30).sum())


def test_demo_run_saves_a_screenshot_of_named_skeletons(tmp_path, model, demo_gallery):
    run = _live(DemoSource(realtime=False, duration=20), demo_gallery, model)
    shot = tmp_path / "shots" / "demo.png"
    stats = run_gui(run, sensor_name="demo",
                    recordings_dir=tmp_path, screenshot=shot)  # closes when the demo's 20 s are over
    assert stats.frames == 600 and stats.dropped == 0
    drawn = json.loads(Path(f"{shot}.json").read_text())
    assert drawn["status"]["source"] == "demo" and drawn["status"]["state"] == "ended"
    assert drawn["status"]["frames"] == stats.frames and drawn["status"]["dropped"] == 0
    assert [g.split(" ")[0] for g in drawn["gallery"]] == sorted(NAMES)
    tracks = drawn["tracks"]
    assert tracks and drawn["status"]["people"] == len(tracks)
    assert all(t["joints"] >= 19 and t["bones"] >= 17 for t in tracks)
    assert {t["label"] for t in tracks} <= NAMES | {"unknown"}
    pixels = _pixels(QImage(str(shot)))
    assert pixels.shape[0] > 400 and pixels.shape[1] > 800
    for t in tracks:  # each person is on the screenshot in the colour of their verdict
        colour = identity_colour(t["label"]) if t["state"] == "named" else UNKNOWN if t["state"] == "unknown" else None
        if colour is not None:
            assert _colour_pixels(pixels, colour) > 50, t


def test_replay_is_named_on_screen_and_the_transport_controls_it(tmp_path, model, demo_gallery):
    source = PlayableReplay(DEMO_DIR / "Ada.gaitrec", speed=4.0)
    view = _view(source, demo_gallery, model, tmp_path, sensor="replay")
    view.show()
    view.start()
    try:
        front, top = view.front_widget.getPlotItem(), view.top_widget.getPlotItem()
        assert _wait(lambda: any("Ada" in text for text in _labels(front)))
        assert any("Ada" in text for text in _labels(top))
        curves = _skeleton_curves(front)
        assert len(curves) == len(view.drawn()["tracks"]) >= 1
        assert max(len(c.getData()[0]) for c in curves) == 2 * len(BONES)  # every bone of a full body
        assert not view.camera_widget.isVisible()  # skeleton-only source: no camera panel

        view.play_button.click()
        assert source.paused and view.play_button.text() == "Play"
        settled = _settled(view)  # frames already queued still come through; then none
        assert view.drawn()["status"]["state"] == "paused"

        view.seek_slider.setValue(500)  # a click on the bar: half way, one frame shown while paused
        times = np.array([f.time for f in source.recording.frames()])
        times -= times[0]
        at = int(np.searchsorted(times, source.length / 2 - 1e-6))  # the first frame from half way on
        assert np.isclose(source.position, times[at:at + 2]).any()  # it, or the next once it is shown
        assert _wait(lambda: view.frames.get()[0] > settled, 3)
        view.speed_box.setCurrentIndex(view.speed_box.count() - 1)
        assert source.speed == 0
        view.play_button.click()
        assert not source.paused
        assert _wait(lambda: view.frames.get()[0] > settled + 30, 5)
    finally:
        view.close()


def test_a_plain_replay_source_runs_without_transport_controls(tmp_path, model, demo_gallery):
    run = _live(ReplaySource(DEMO_DIR / "Ada.gaitrec", speed=0), demo_gallery, model)
    shot = tmp_path / "replay.png"
    stats = run_gui(run, sensor_name="replay",
                    recordings_dir=tmp_path, screenshot=shot)
    drawn = json.loads(Path(f"{shot}.json").read_text())
    assert drawn["status"]["state"] == "ended" and drawn["status"]["frames"] == stats.frames > 0
    assert len(drawn["tracks"]) == 1 and drawn["tracks"][0]["label"] in ("Ada", "unknown")  # never someone else


def test_keys_pause_seek_and_change_speed(tmp_path, model, demo_gallery):
    source = PlayableReplay(DEMO_DIR / "Ben.gaitrec", speed=1.0)
    view = _view(source, demo_gallery, model, tmp_path, sensor="replay")
    view.show()
    view.activateWindow()
    assert QTest.qWaitForWindowActive(view, 2000)
    view.start()
    try:
        QTest.keyClick(view, Qt.Key.Key_BracketRight)
        assert source.speed == 2.0
        QTest.keyClick(view, Qt.Key.Key_Space)
        assert source.paused
        position = source.position
        QTest.keyClick(view, Qt.Key.Key_Right)
        assert source.position == pytest.approx(position + 5.0, abs=0.1)
        QTest.keyClick(view, Qt.Key.Key_Space)
        assert not source.paused
    finally:
        view.close()


def test_record_button_writes_a_recording_of_what_is_seen(tmp_path, model, demo_gallery):
    view = _view(DemoSource(realtime=True), demo_gallery, model, tmp_path / "recordings")
    view.show()
    view.start()
    try:
        assert _wait(lambda: view.drawn()["status"].get("frames", 0) > 5)
        _click(view, view.record_action)
        assert view.record_action.text() == "Stop recording"
        assert _wait(lambda: view.drawn()["status"]["recording"] and "REC" in view.status_labels["state"].text())
        started = view.frames.get()[0]
        assert _wait(lambda: view.frames.get()[0] > started + 30)
        _click(view, view.record_action)
        assert view.record_action.text() == "Record"

        _click(view, view.pause_action)  # a live source: the view freezes, capture goes on
        assert view.pause_action.text() == "Unfreeze"
        draws, frames = len(view.draw_seconds), view.frames.get()[0]
        assert _wait(lambda: view.frames.get()[0] > frames + 15)
        assert len(view.draw_seconds) == draws and view.drawn()["status"]["state"] == "paused"
        _click(view, view.pause_action)
        assert _wait(lambda: len(view.draw_seconds) > draws)
    finally:
        view.close()
    files = list((tmp_path / "recordings").glob("demo-*.gaitrec"))
    assert len(files) == 1 and view.message == f"recorded {files[0]}"
    recording = read_recording(files[0])
    assert recording.meta.sensor == "demo" and recording.meta.layout == CANONICAL.name
    assert recording.meta.calibration["floor"]  # replayable in the same floor frame
    assert recording.tracks and max(len(s) for s in recording.tracks.values()) >= 25


def _treadmill(path: Path) -> Path:
    """Ben's demo walk on the spot, without its gaps: one person in view for 30 s (a demo pass
    across the room lasts about 3 s, the least enrolment accepts)."""
    seq = read_recording(DEMO_DIR / "Ben.gaitrec").tracks[1]
    hip = seq.joints[:, CANONICAL.index("HipCenter")].copy()
    hip[:, 1] = 0.0  # keep the height: only the way across the floor goes
    joints = seq.joints - hip[:, None, :] + np.array([0.0, 0.0, 3.0], np.float32)
    walk = SkeletonSequence(joints, np.arange(len(seq)) / 30.0, CANONICAL, seq.states)
    write_recording(Recording(RecordingMeta(sensor="demo", layout=CANONICAL.name, fps=30.0), {1: walk}), path)
    return path


def test_enrolling_the_selected_person_from_the_live_view(tmp_path, model, empty_gallery, monkeypatch):
    asked = []
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: (asked.append(a[2]) or "  Zed ", True))
    source = PlayableReplay(_treadmill(tmp_path / "treadmill.gaitrec"), speed=4.0)
    view = _view(source, empty_gallery, model, tmp_path)
    view.show()
    view.start()
    try:
        _click(view, view.enroll_action)  # nobody selected yet: says so, asks nothing
        assert "select a person" in view.problem_label.text() and not asked
        assert _wait(lambda: view.people.count() > 0)
        view.people.setCurrentRow(0)
        track = view.people.item(0).data(Qt.ItemDataRole.UserRole)
        _click(view, view.enroll_action)
        assert asked == [f"Name for person #{track}:"] and view.enroll_action.text() == "Finish enrollment"
        assert _wait(lambda: view.tap.track_frames >= 150)  # 5 s of walking
        _click(view, view.enroll_action)  # finish now
        assert _wait(lambda: "enrolled Zed" in view.message, 30), view.problem
    finally:
        view.close()
    assert [p.name for p in empty_gallery.people()] == ["Zed"]
    assert view.gallery_list.item(0).text() == "Zed (1 recording)"
    assert view.pipeline.matcher.index.people == ["Zed"]  # the live matcher knows them now
    events = list(view.runner.live.session.events())  # as a headless run or the service publishes them
    assert [e["name"] for e in events if e["event"] == "enrolled"] == ["Zed"]
    assert events[-1]["event"] == "summary"
    kept = Path(empty_gallery.recordings("Zed")[0].path)
    assert kept.parent == tmp_path and kept.name.startswith("enroll-Zed-")
    assert read_recording(kept).meta.subject == "Zed" and len(read_recording(kept).tracks[track]) >= 150


def test_enrolling_from_files_good_bad_and_with_several_people(tmp_path, model, empty_gallery, monkeypatch):
    two = tmp_path / "two.gaitrec"
    meta = RecordingMeta(sensor="demo", layout=CANONICAL.name, fps=30.0)
    write_recording(Recording(meta, {4: demo_walk("Ada", 7, 8.0), 9: demo_walk("Chloe", 7, 8.0)}), two)
    junk = tmp_path / "junk.gaitrec"
    junk.write_bytes(b"not a recording")
    picked = iter([str(DEMO_DIR / "Chloe.gaitrec"), str(junk), str(two)])
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (next(picked), ""))
    names, offered = iter(["Cleo", "Second"]), []
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: (offered.append(k["text"]) or next(names), True))
    monkeypatch.setattr(QInputDialog, "getItem", lambda parent, title, label, items, *a: (items[1], True))
    view = _view(DemoSource(realtime=True), empty_gallery, model, tmp_path)
    view.show()
    view.start()
    try:
        _click(view, view.enroll_file_action)
        assert _wait(lambda: "enrolled Cleo" in view.message, 30), view.problem
        assert view.gallery_list.item(0).text() == "Cleo (1 recording)"
        assert offered == ["Chloe"]  # the recording's subject is offered as the name
        _click(view, view.enroll_file_action)  # a bad file: said in the window, nothing asked
        assert view.problem_label.isVisible() and "junk.gaitrec" in view.problem_label.text()
        _click(view, view.enroll_file_action)  # two people: the second one chosen
        assert _wait(lambda: "enrolled Second" in view.message, 30), view.problem
        assert _wait(lambda: view.pipeline.matcher.index.people == ["Cleo", "Second"], 5)
    finally:
        view.close()
    assert empty_gallery.recordings("Second")[0].track == 9


class _Flaky(Source):
    """A live sensor that delivers a few demo frames, then is unplugged for good."""

    name = "flaky"

    def __init__(self) -> None:
        self.demo = DemoSource(realtime=True)
        self.layout, self.fps = self.demo.layout, self.demo.fps
        self.frames = 0

    def open(self) -> None:
        if self.frames >= 20:
            raise SourceError("flaky: device not found")

    def read(self):
        if self.frames >= 20:
            raise SourceLost("flaky: device unplugged")
        self.frames += 1
        return self.demo.read()


def test_a_lost_sensor_is_shown_in_the_window(tmp_path, model, demo_gallery):
    view = _view(_Flaky(), demo_gallery, model, tmp_path, sensor="flaky")
    view.show()
    view.start()
    try:
        assert _wait(lambda: "unplugged" in view.problem_label.text() or "not found" in view.problem_label.text(), 5)
        assert view.problem_label.isVisible()
        assert _wait(lambda: "no frames from flaky" in view.problem_label.text(), 6)  # still lost later
        assert view.isVisible()  # the window carries on
    finally:
        view.close()


class _Broken(Source):
    name = "broken"
    layout, fps = CANONICAL, 30.0

    def open(self) -> None:
        raise SourceError("broken: no device connected")

    def read(self):
        raise AssertionError("never opened")


def test_a_source_that_cannot_start_fails_in_the_window_and_raises(tmp_path, model, demo_gallery):
    run = _live(_Broken(), demo_gallery, model)
    shot = tmp_path / "broken.png"
    with pytest.raises(SourceError, match="no device connected"):
        run_gui(run, sensor_name="broken",
                recordings_dir=tmp_path, screenshot=shot, duration=10)
    status = json.loads(Path(f"{shot}.json").read_text())["status"]
    assert status["state"] == "failed" and "no device connected" in status["error"]
    assert shot.stat().st_size > 0


def test_camera_sources_show_the_image_with_skeletons_over_it(tmp_path, model, demo_gallery):
    run = _live(CrowdSource(people=2, image=True, seconds=10), demo_gallery, model)
    shot = tmp_path / "camera.png"
    run_gui(run, sensor_name="crowd",
            recordings_dir=tmp_path, screenshot=shot, duration=2.5)
    drawn = json.loads(Path(f"{shot}.json").read_text())
    assert drawn["camera"]["image"] and drawn["camera"]["overlays"] == 2 and len(drawn["tracks"]) == 2
    # A name over each person in the image, at most a few rows above their head, none on another.
    labels = drawn["camera"]["labels"]
    assert sorted(int(t) for t in labels) == sorted(t["track"] for t in drawn["tracks"])
    (x1, y1), (x2, y2) = labels.values()
    assert abs(x1 - x2) > 60 or abs(y1 - y2) > 10
    pixels = _pixels(QImage(str(shot)))
    # The camera image (a grey ramp) fills part of the window, with the skeletons drawn over it.
    grey = (np.ptp(pixels.astype(int), axis=2) < 4) & (pixels[..., 0] > 45) & (pixels[..., 0] < 195)
    assert grey.sum() > 20_000
    for t in drawn["tracks"]:
        colour = identity_colour(t["label"]) if t["state"] == "named" else UNKNOWN if t["state"] == "unknown" else None
        if colour is not None:
            assert _colour_pixels(pixels, colour) > 100  # in the plots and over the image


def test_names_of_people_side_by_side_never_overlap():
    from gaitcam.ui.skeletons import spread_labels

    sizes = np.array([[0.8, 0.2]] * 3)
    at = spread_labels(np.array([[0.0, 1.9], [0.3, 1.95], [3.0, 1.9]]), sizes)
    assert at[0].tolist() == [0.0, 1.9] and at[2].tolist() == [3.0, 1.9]  # the lowest and the lone one stay
    assert at[1, 0] == 0.3 and at[1, 1] >= 1.9 + 0.2  # the one in the way moved just above
    for i in range(3):
        for j in range(i):
            assert abs(at[i, 0] - at[j, 0]) >= 0.8 or abs(at[i, 1] - at[j, 1]) >= 0.2


def test_names_on_the_camera_image_sit_on_heads_and_never_overlap():
    from gaitcam.ui.camera import head_point, image_labels

    person = np.array([[100.0, 50.0], [96.0, 60.0], [130.0, 40.0], [100.0, 150.0], [np.nan, np.nan]])
    person[2] = [np.nan, np.nan]
    assert head_point(person).tolist() == [98.0, 50.0]  # the top of them (rows run down), mid-head
    person[2] = [130.0, 45.0]  # a raised hand: the name moves up over it, not aside
    assert head_point(person)[1] == 45.0 and head_point(person)[0] < 110
    # Rows run down: a crowd of names moves up the image (to smaller rows), the lowest first.
    heads = np.array([[100.0, 200.0], [110.0, 190.0], [300.0, 200.0], [105.0, 205.0]])
    sizes = np.array([[80.0, 16.0]] * 4)
    at = image_labels(heads, sizes)
    assert at[3].tolist() == [105.0, 205.0] and at[2].tolist() == [300.0, 200.0]  # the lowest and the lone one
    assert at[0, 0] == 100.0 and at[1, 0] == 110.0 and at[0, 1] < 205.0 - 16 + 1e-6 and at[1, 1] < at[0, 1]
    for i in range(4):
        for j in range(i):
            assert abs(at[i, 0] - at[j, 0]) >= 80 or abs(at[i, 1] - at[j, 1]) >= 16 - 1e-6
    edge = image_labels(np.array([[10.0, 100.0], [630.0, 100.0]]), np.array([[80.0, 16.0]] * 2), width=640)
    assert edge.tolist() == [[40.0, 100.0], [600.0, 100.0]]  # whole names, not cut by the image's edges


def test_two_people_in_one_spot_get_two_readable_labels(tmp_path):
    from gaitcam.ui.skeletons import SkeletonViews
    from gaitcam.ui.style import look

    application()
    win = pg.GraphicsLayoutWidget()
    win.resize(900, 600)
    views = SkeletonViews(win.addPlot(), win.addPlot())
    win.show()
    pg.QtWidgets.QApplication.processEvents()
    skeleton = np.zeros((20, 3), np.float32)
    skeleton[:, 1] = np.linspace(0.0, 1.7, 20)
    skeleton[:, 2] = 3.0
    looks = {t: look(t, None) for t in (1, 2)}
    drawn = views.draw({1: skeleton, 2: skeleton + [0.1, 0.0, 0.0]}, looks)
    (x1, y1), (x2, y2) = (d["label_at"] for d in drawn)
    assert y1 != y2 and abs(x1 - x2) < 0.2  # one stacked above the other, not printed over it
    win.close()


def test_a_glitched_joint_or_a_sliver_of_a_window_keeps_the_views_bounded():
    from gaitcam.ui.skeletons import SkeletonViews
    from gaitcam.ui.style import look

    application()
    win = pg.GraphicsLayoutWidget()
    win.resize(900, 600)
    front, top = win.addPlot(), win.addPlot()
    views = SkeletonViews(front, top)
    win.show()
    skeleton = np.zeros((20, 3), np.float32)
    skeleton[:, 1] = np.linspace(0.0, 1.7, 20)
    skeleton[:, 2] = 3.0
    glitch = skeleton.copy()
    glitch[3] = [5e4, -5e4, 5e4]  # one joint 50 km away for one frame
    views.draw({1: skeleton}, {1: look(1, None)})
    views.draw({1: glitch}, {1: look(1, None)})
    for size in ((900, 600), (3000, 2), (2, 3000)):  # the aspect lock stretches a sliver's long axis
        win.resize(*size)
        pg.QtWidgets.QApplication.processEvents()
        win.grab()
        for plot in (front, top):
            for low, high in plot.getViewBox().viewRange():
                assert -200 <= low < high <= 200, (size, low, high)
    assert views.draw({1: glitch}, {1: look(1, None)})[0]["joints"] == 20  # still drawn, not dropped
    # Wider tick labels ("-40" for "2") leave the axis width, and so the aspect-locked range, as
    # they were: a width that followed the labels could feed back into the range for ever.
    win.resize(900, 600)
    pg.QtWidgets.QApplication.processEvents()
    widths = [plot.getAxis("left").width() for plot in (front, top)]
    far = skeleton + np.float32([-40.0, 0.0, 40.0])
    views.draw({1: far}, {1: look(1, None)})
    pg.QtWidgets.QApplication.processEvents()
    win.grab()
    assert front.getViewBox().viewRange()[0][0] <= -40 <= front.getViewBox().viewRange()[0][1]
    assert [plot.getAxis("left").width() for plot in (front, top)] == widths
    win.close()
