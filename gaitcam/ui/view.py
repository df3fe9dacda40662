"""The live window: who is in view and who they are, and the operator's controls.

Threads: the pipeline runs on its own thread (`PipelineThread`) and hands each processed frame
to `LiveView._on_frame`, which only stores it in a latest-value slot. A QTimer on the GUI
thread redraws from that slot at up to `REFRESH_HZ`, so a slow redraw skips frames on screen
but never holds up capture, tracking or the model. Everything that happens on other threads
and must be seen (a failed write, a lost sensor, an enrolment's result) reaches the window
through a slot, a logging handler or a queued Qt signal, and shows in the red problem line.

Controls (toolbar buttons and keys): Space pause (a replay pauses playback; a live source
keeps running and the view freezes), R start/stop recording, E enrol the person selected in
"In view" (records their frames while they stay in view, then enrols from that recording;
E again finishes early), O enrol from a recording file; replays also get a seek bar (Left /
Right: 5 s back / on) and a speed box ([ / ]: slower / faster).
"""
from __future__ import annotations

import logging
import re
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QColor, QKeySequence
from PySide6.QtWidgets import (
    QComboBox, QFileDialog, QHBoxLayout, QInputDialog, QLabel, QListWidget, QListWidgetItem, QMainWindow,
    QPushButton, QSlider, QSplitter, QVBoxLayout, QWidget,
)

from gaitcam.errors import GaitcamError
from gaitcam.recording.formats import read_recording
from gaitcam.recording.native import RecordingWriter, new_recording_path
from gaitcam.recording.recording import RecordingMeta
from gaitcam.recording.sealed import writing_key
from gaitcam.session import LiveRun
from gaitcam.stream.pipeline import Snapshot
from gaitcam.ui.camera import CameraPanel
from gaitcam.ui.enroll import Enroller
from gaitcam.ui.runner import PipelineThread
from gaitcam.ui.skeletons import SkeletonViews
from gaitcam.ui.slots import LatestValue, WarningsToWindow
from gaitcam.ui.style import Look, look
from gaitcam.ui.tap import FrameTap, ImagePoints
from gaitcam.ui.transport import PlayableReplay

log = logging.getLogger(__name__)

REFRESH_HZ = 30  # redraws per second at most: a camera's rate, more is wasted on skeletons
STALE_SECONDS = 2.0  # a running live source silent this long is reported as lost
GONE_SECONDS = 1.0  # a person being captured for enrolment, out of view this long, is done
RATE_SECONDS = 2.0  # frame and window rates are measured over this much wall time
SEEK_STEP = 5.0  # seconds per Left / Right key
SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@dataclass(frozen=True)
class ViewFrame:
    """One processed frame as the view gets it: the pipeline's snapshot and image points."""

    snapshot: Snapshot
    points: ImagePoints | None


@dataclass
class _Capture:
    """A live enrolment under way: whose frames go to which recording."""

    name: str
    track: int
    path: Path
    seen: float  # wall time the person was last in view


class LiveView(QMainWindow):
    """The window; `start` runs the pipeline, closing it stops the pipeline."""

    closed = Signal()  # the pipeline has stopped and the last frame is drawn; the window is still up
    ended = Signal()  # the pipeline ended by itself: the source ended, or it failed

    def __init__(self, run: LiveRun, *, sensor_name: str, recordings_dir: Path) -> None:
        super().__init__()
        pipeline = run.pipeline
        self.pipeline, self.gallery = pipeline, run.session.gallery
        self.sensor_name = sensor_name
        self.recordings_dir = Path(recordings_dir).resolve()  # the gallery keeps these paths for rebuilds
        self.replay = pipeline.source if isinstance(pipeline.source, PlayableReplay) else None
        self.frames: LatestValue[ViewFrame] = LatestValue()
        self._tap_problems: LatestValue[str] = LatestValue()
        self.tap = FrameTap(pipeline.recorder, self._tap_problems.put)
        pipeline.recorder = self.tap
        self._chained = pipeline.on_frame
        pipeline.on_frame = self._on_frame
        self.runner = PipelineThread(run)
        self.enroller = Enroller(run.session.enroll)
        self.enroller.done.connect(self._enrolled)
        self.enroller.failed.connect(self.show_problem)
        self.warnings = WarningsToWindow()
        logging.getLogger("gaitcam").addHandler(self.warnings)

        self.draw_seconds: deque[float] = deque(maxlen=100_000)  # time spent in each redraw
        self.problem: str | None = None
        self.message = ""  # the latest note in the status bar (what an action did)
        self._seen = {"frames": 0, "warnings": 0, "tap": 0}  # slot versions already handled
        self._last_frame_at = time.monotonic()
        self._drawn_version = 0
        self._drawn: list[dict] = []
        self._overlays = 0
        self._rates: deque[tuple[float, int, int]] = deque()
        self._status: dict = {}
        self._selected: int | None = None
        self._frozen = False
        self._recording: Path | None = None
        self._capture: _Capture | None = None
        self._ended = False  # the pipeline ended by itself
        self._silence: str | None = None  # what the problem line says about a quiet source
        self._stopping = False  # the window is stopping it

        self._build()
        self.refresh_gallery()
        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / REFRESH_HZ))
        self.timer.timeout.connect(self.tick)

    # -- layout ---------------------------------------------------------------------------

    def _build(self) -> None:
        self.setWindowTitle(f"gaitcam: {self.sensor_name}")
        self.resize(1400, 760)

        bar = self.addToolBar("controls")
        bar.setMovable(False)
        self.pause_action = self._action(bar, "Pause", "Space", self.toggle_pause,
                                         "pause the replay" if self.replay else "freeze the view (capture goes on)")
        self.record_action = self._action(bar, "Record", "R", self.toggle_recording,
                                          f"record every frame to {self.recordings_dir}")
        self.enroll_action = self._action(bar, "Enroll selected…", "E", self.enroll_selected,
                                          "record the person selected in 'In view' while visible, then enroll them")
        self.enroll_file_action = self._action(bar, "Enroll from file…", "O", self.enroll_from_file,
                                               "enroll one person of a recording file")
        self._action(bar, "Quit", QKeySequence.StandardKey.Quit, self.close, "close the window")

        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("QLabel { color: #b00000; font-weight: bold; padding: 4px; }")
        self.problem_label.hide()

        self.camera_widget = _plot_widget()
        self.camera = CameraPanel(self.camera_widget.getPlotItem())
        self.camera_widget.hide()  # until a source sends an image
        self.front_widget, self.top_widget = _plot_widget(), _plot_widget()
        self.skeletons = SkeletonViews(self.front_widget.getPlotItem(), self.top_widget.getPlotItem())
        self.plots = QSplitter(Qt.Orientation.Horizontal)
        for w in (self.camera_widget, self.front_widget, self.top_widget):
            self.plots.addWidget(w)

        self.people = QListWidget()
        self.people.itemSelectionChanged.connect(self._selection_changed)
        self.gallery_list = QListWidget()
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.addWidget(QLabel("In view (select to enroll)"))
        side_layout.addWidget(self.people, 2)
        side_layout.addWidget(QLabel(f"Gallery: {self.gallery.where}"))
        side_layout.addWidget(self.gallery_list, 1)
        if self.replay is not None:
            side_layout.addWidget(self._transport())
        side.setMinimumWidth(230)

        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(self.plots)
        main.addWidget(side)
        main.setStretchFactor(0, 1)
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.problem_label)
        layout.addWidget(main, 1)
        self.setCentralWidget(central)

        self.status_labels = {key: QLabel() for key in ("source", "fps", "windows", "dropped", "people", "state")}
        for label in self.status_labels.values():
            self.statusBar().addPermanentWidget(label)

    def _action(self, bar, text: str, key, slot, tip: str) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(key))
        action.setToolTip(f"{tip} ({QKeySequence(key).toString()})")
        action.triggered.connect(slot)
        bar.addAction(action)
        return action

    def _transport(self) -> QWidget:
        """Play/pause, seek bar and speed box for a replay."""
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Replay"))
        self.play_button = QPushButton("Pause")
        self.play_button.clicked.connect(self.toggle_pause)
        self.seek_slider = QSlider(Qt.Orientation.Horizontal)
        self.seek_slider.setRange(0, 1000)
        self.seek_slider.valueChanged.connect(self._slider_moved)
        self.seek_slider.sliderReleased.connect(lambda: self._seek_to_slider(self.seek_slider.value()))
        self.position_label = QLabel()
        self.speed_box = QComboBox()
        self.speed_box.addItems([f"{s:g}x" for s in SPEEDS] + ["max"])
        current = self.replay.speed
        self.speed_box.setCurrentIndex(SPEEDS.index(current) if current in SPEEDS else len(SPEEDS))
        self.speed_box.currentIndexChanged.connect(self._speed_chosen)
        row = QHBoxLayout()
        row.addWidget(self.play_button)
        row.addWidget(self.speed_box)
        layout.addLayout(row)
        layout.addWidget(self.seek_slider)
        layout.addWidget(self.position_label)
        for key, slot in (("Left", lambda: self.seek_by(-SEEK_STEP)), ("Right", lambda: self.seek_by(SEEK_STEP)),
                          ("[", lambda: self.step_speed(-1)), ("]", lambda: self.step_speed(1))):
            action = QAction(self)
            action.setShortcut(QKeySequence(key))
            action.triggered.connect(slot)
            self.addAction(action)
        return box

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        self.runner.start()
        self.timer.start()

    def _on_frame(self, snapshot: Snapshot) -> None:
        """Pipeline thread: store and return at once."""
        points = self.tap.points
        self.frames.put(ViewFrame(snapshot, points if points is not None and points.time == snapshot.time else None))
        if self._chained is not None:
            self._chained(snapshot)

    def tick(self) -> bool:
        """Redraw if a new frame came (unless frozen) and refresh status; True if it redrew."""
        now = time.monotonic()
        version, frame = self.frames.get()
        if version != self._seen["frames"]:
            self._seen["frames"] = version
            self._last_frame_at = now
        self._rates.append((now, version, frame.snapshot.stats.windows if frame else 0))
        while self._rates[0][0] < now - RATE_SECONDS:
            self._rates.popleft()
        drawn = frame is not None and version != self._drawn_version and not self._frozen
        if drawn:
            started = time.perf_counter()
            self._draw(frame)
            self.draw_seconds.append(time.perf_counter() - started)
            self._drawn_version = version
        self._follow_capture(now, frame)
        self._check_problems(now)
        self._refresh_status(frame)
        if self.replay is not None:
            self._refresh_transport()
        if self.runner.started and not self.runner.running and not self._ended and not self._stopping:
            self._ended = True
            self._sync_actions()
            self.ended.emit()
        return drawn

    def _draw(self, frame: ViewFrame) -> None:
        s = frame.snapshot
        looks = {t: look(t, s.decisions.get(t), t == self._selected) for t in s.tracks}
        self._drawn = self.skeletons.draw(s.tracks, looks)
        for row in self._drawn:
            decision = s.decisions.get(row["track"])
            score = None if decision is None else float(decision.score)
            row["score"] = None if score is None or not np.isfinite(score) else round(score, 3)
        if s.image is not None:
            if self.camera_widget.isHidden():  # the first image: give the camera half the room
                self.camera_widget.show()
                width = sum(self.plots.sizes())
                self.plots.setSizes([width // 2, width // 4, width - width // 2 - width // 4])
            self._overlays = self.camera.draw(s.image, frame.points, looks)
        self._update_people(looks)

    def _update_people(self, looks: dict[int, Look]) -> None:
        rows = {self.people.item(i).data(Qt.ItemDataRole.UserRole): self.people.item(i)
                for i in range(self.people.count())}
        for track in rows.keys() - looks.keys():
            self.people.takeItem(self.people.row(rows.pop(track)))
        for track in sorted(looks):
            item = rows.get(track)
            if item is None:
                item = QListWidgetItem()
                item.setData(Qt.ItemDataRole.UserRole, track)
                self.people.addItem(item)
            if item.text() != looks[track].label:
                item.setText(looks[track].label)
                item.setForeground(QColor(*looks[track].colour[:3]))

    def _selection_changed(self) -> None:
        items = self.people.selectedItems()
        self._selected = items[0].data(Qt.ItemDataRole.UserRole) if items else None
        self._drawn_version = -1  # redraw to highlight them, even while a replay is paused

    def _refresh_status(self, frame: ViewFrame | None) -> None:
        (t0, v0, w0), (t1, v1, w1) = self._rates[0], self._rates[-1]
        span = t1 - t0
        fps = (v1 - v0) / span if span > 0.2 else 0.0
        wps = (w1 - w0) / span if span > 0.2 else 0.0
        stats = frame.snapshot.stats if frame is not None else None
        state = ("failed" if self.runner.error is not None else "ended" if self._ended
                 else "stopped" if self._stopping else "paused" if self.paused
                 else "running" if self.runner.running else "starting")
        self._status = {
            "source": self.sensor_name, "state": state, "fps": round(fps, 1), "windows_per_s": round(wps, 1),
            "dropped": stats.dropped if stats else 0, "people": len(frame.snapshot.tracks) if frame else 0,
            "frames": stats.frames if stats else 0, "tracks": stats.tracks if stats else 0,
            "errors": stats.errors if stats else 0, "stride": stats.stride if stats else 0,
            "lag_ms": round(1e3 * stats.lag, 1) if stats and stats.lag is not None else None,
            "recording": None if self._recording is None else str(self._recording),
            "enrolling": None if self._capture is None else self._capture.name,
            "error": self.problem,
        }
        extra = " ● REC" if self._recording else ""
        extra += f" enrolling {self._capture.name}: {self.tap.track_frames} frames" if self._capture else ""
        texts = {"source": f"source: {self.sensor_name}", "fps": f"{fps:.1f} fps",
                 "windows": f"{wps:.0f} windows/s, stride {self._status['stride']}"
                            + ("" if self._status["lag_ms"] is None else f", lag {self._status['lag_ms']:.0f} ms"),
                 "dropped": f"dropped {self._status['dropped']}", "people": f"people {self._status['people']}",
                 "state": state + extra}
        for key, text in texts.items():
            if self.status_labels[key].text() != text:  # an unchanged label is not repainted
                self.status_labels[key].setText(text)

    # -- problems ---------------------------------------------------------------------------

    def show_problem(self, text: str) -> None:
        """Show `text` in the window's red problem line (the newest problem wins)."""
        self.problem = text
        self.problem_label.setText(text)
        self.problem_label.show()

    def _clear_problem(self) -> None:
        self.problem = None
        self.problem_label.hide()

    def _check_problems(self, now: float) -> None:
        for key, slot in (("warnings", self.warnings.latest), ("tap", self._tap_problems)):
            version, text = slot.get()
            if version != self._seen[key]:
                self._seen[key] = version
                self.show_problem(text)
        if self.runner.error is not None and self.problem != self._failure():
            self.show_problem(self._failure())
            return
        silent = now - self._last_frame_at
        live = self.runner.running and not self.paused and not self.pipeline.source.is_file
        if live and silent > STALE_SECONDS:
            self._silence = (f"no frames from {self.sensor_name} for {silent:.0f} s: sensor lost? (reconnecting)"
                             if self._seen["frames"] else
                             f"waiting for the first frame from {self.sensor_name} ({silent:.0f} s)")
            self.show_problem(self._silence)
        elif self._silence is not None:
            if self.problem == self._silence:  # frames are back, and nothing newer is shown
                self._clear_problem()
            self._silence = None

    def _failure(self) -> str:
        return f"stopped: {self.runner.error}"

    def note(self, text: str) -> None:
        """Say what an action did, in the status bar."""
        self.message = text
        self.statusBar().showMessage(text)
        log.info("%s", text)

    # -- actions ----------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self.replay.paused if self.replay is not None else self._frozen

    def toggle_pause(self) -> None:
        if self.replay is not None:
            self.replay.set_paused(not self.replay.paused)
        else:
            self._frozen = not self._frozen
        self._sync_actions()

    def toggle_recording(self) -> None:
        if self._recording is not None:
            path, self._recording = self._recording, None
            if self.tap.stop_recording() is not None:
                self.note(f"recorded {path}")
        else:
            path = new_recording_path(self.recordings_dir, self.sensor_name)
            try:
                writer = RecordingWriter(path, self._meta(), key=writing_key())
            except GaitcamError as e:
                self.show_problem(str(e))
                return
            self.tap.start_recording(writer)
            self._recording = path
            self.note(f"recording to {path}")
        self._sync_actions()

    def enroll_selected(self) -> None:
        """Start capturing the selected person for enrolment (or finish a capture under way)."""
        if self._capture is not None:
            self._finish_capture()
            return
        track = self._selected
        if track is None:
            self.show_problem("select a person in the 'In view' list to enroll them")
            return
        name, ok = QInputDialog.getText(self, "Enroll", f"Name for person #{track}:")
        name = name.strip()
        if not ok or not name:
            return
        path = new_recording_path(self.recordings_dir, f"enroll-{_file_safe(name)}")
        try:
            writer = RecordingWriter(path, self._meta(subject=name), key=writing_key())
        except GaitcamError as e:
            self.show_problem(str(e))
            return
        self.tap.start_capture(track, writer)
        self._capture = _Capture(name, track, path, time.monotonic())
        self.note(f"recording #{track} to enroll as {name}: keep them walking in view")
        self._sync_actions()

    def enroll_from_file(self) -> None:
        """Pick a recording, the person in it if several, and a name; enrol in the background."""
        chosen, _ = QFileDialog.getOpenFileName(self, "Enroll from a recording", str(self.recordings_dir),
                                                "Recordings (*.gaitrec *.json *.csv *.txt *.skeleton);;All files (*)")
        if not chosen:
            return
        path = Path(chosen).resolve()
        try:
            recording = read_recording(path)
        except (GaitcamError, OSError) as e:
            self.show_problem(f"cannot enroll from {path.name}: {e}")
            return
        tracks = sorted(t for t, seq in recording.tracks.items() if len(seq))
        if not tracks:
            self.show_problem(f"cannot enroll from {path.name}: it holds no skeletons")
            return
        track = tracks[0]
        if len(tracks) > 1:
            options = [f"{t} ({len(recording.tracks[t])} frames)" for t in tracks]
            picked, ok = QInputDialog.getItem(self, "Enroll", "Which person of the recording?", options, 0, False)
            if not ok:
                return
            track = tracks[options.index(picked)]
        name, ok = QInputDialog.getText(self, "Enroll", f"Name for person {track} of {path.name}:",
                                        text=recording.meta.subject or "")
        name = name.strip()
        if ok and name:
            self.enroller.enroll(name, path, track)
            self.note(f"enrolling {name} from {path.name}…")

    def seek_by(self, seconds: float) -> None:
        if self.replay is not None:
            self.replay.seek(self.replay.position + seconds)

    def step_speed(self, step: int) -> None:
        if self.replay is not None:
            self.speed_box.setCurrentIndex(min(max(self.speed_box.currentIndex() + step, 0), len(SPEEDS)))

    # -- action helpers ---------------------------------------------------------------------

    def _follow_capture(self, now: float, frame: ViewFrame | None) -> None:
        """End a live enrolment capture once its person has left the view or the stream ended."""
        if self._recording is not None and self.tap.recording is None:
            self._recording = None  # the tap stopped it after a failed write (already reported)
            self._sync_actions()
        capture = self._capture
        if capture is None:
            return
        if self.tap.capturing is None:  # a failed write ended it (already reported)
            self._capture = None
            self._sync_actions()
            return
        if frame is not None and capture.track in frame.snapshot.tracks:
            capture.seen = now
        elif now - capture.seen > GONE_SECONDS or (self.runner.started and not self.runner.running):
            self._finish_capture()

    def _finish_capture(self) -> None:
        capture, self._capture = self._capture, None
        frames = self.tap.track_frames
        if self.tap.stop_capture() is not None:
            if frames:
                self.enroller.enroll(capture.name, capture.path)
                self.note(f"enrolling {capture.name} from {frames} frames in {capture.path.name}…")
            else:
                self.show_problem(f"enrolling {capture.name}: #{capture.track} was not seen again; nothing recorded")
        self._sync_actions()

    def _enrolled(self, message: str) -> None:
        self.note(message)  # the session has handed the live matcher the new gallery already
        self.refresh_gallery()

    def refresh_gallery(self) -> None:
        self.gallery_list.clear()
        for person in self.gallery.people():
            plural = "" if person.n_recordings == 1 else "s"
            self.gallery_list.addItem(f"{person.name} ({person.n_recordings} recording{plural})")

    def _sync_actions(self) -> None:
        pause_text = ("Play" if self.paused else "Pause") if self.replay else ("Unfreeze" if self._frozen else "Pause")
        self.pause_action.setText(pause_text)
        if self.replay is not None:
            self.play_button.setText(pause_text)
        self.record_action.setText("Stop recording" if self._recording else "Record")
        self.enroll_action.setText("Finish enrollment" if self._capture else "Enroll selected…")

    def _refresh_transport(self) -> None:
        length = max(self.replay.length, 1e-9)
        position = self.replay.position
        if not self.seek_slider.isSliderDown():
            self.seek_slider.blockSignals(True)
            self.seek_slider.setValue(int(round(1000 * position / length)))
            self.seek_slider.blockSignals(False)
        self.position_label.setText(f"{position:.1f} / {self.replay.length:.1f} s")

    def _slider_moved(self, value: int) -> None:
        if not self.seek_slider.isSliderDown():  # clicks and keys; a drag seeks on release
            self._seek_to_slider(value)

    def _seek_to_slider(self, value: int) -> None:
        self.replay.seek(value / 1000 * self.replay.length)

    def _speed_chosen(self, index: int) -> None:
        self.replay.set_speed(SPEEDS[index] if index < len(SPEEDS) else 0.0)

    def _meta(self, subject: str | None = None) -> RecordingMeta:
        source, calibration = self.pipeline.source, self.pipeline.calibration
        return RecordingMeta(sensor=self.sensor_name, layout=source.layout.name, fps=float(source.fps),
                             calibration=None if calibration is None else calibration.to_dict(), subject=subject,
                             created=datetime.now(timezone.utc).isoformat(timespec="seconds"))

    # -- closing ----------------------------------------------------------------------------

    def drawn(self) -> dict:
        """What the window shows now, as plain data (saved beside a screenshot)."""
        return {"tracks": list(self._drawn), "status": dict(self._status),
                "gallery": [self.gallery_list.item(i).text() for i in range(self.gallery_list.count())],
                "camera": {"image": not self.camera_widget.isHidden(), "overlays": self._overlays,
                           "labels": {str(t): list(xy) for t, xy in self.camera.label_at.items()}},
                "message": self.message}

    def shutdown(self) -> None:
        """Stop the pipeline, finish files, wait for enrolments."""
        self._stopping = True
        self.timer.stop()
        if self.replay is not None:
            self.replay.release()
        self.runner.stop()
        if self._capture is not None:
            capture, self._capture = self._capture, None
            if self.tap.stop_capture() is not None:
                log.warning("enrollment of %s not finished; its recording is kept: "
                            "python main.py enroll %s %s", capture.name, capture.name, capture.path)
        if self._recording is not None:
            self.toggle_recording()
        self.enroller.wait()
        logging.getLogger("gaitcam").removeHandler(self.warnings)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._stopping:
            self.shutdown()
            self.tick()  # the last frame and the final status
            self.closed.emit()
        event.accept()


def _plot_widget() -> pg.PlotWidget:
    """A white plot without antialiasing: smoothing the lines cost 40 % more paint time here."""
    widget = pg.PlotWidget(background="w")
    widget.setAntialiasing(False)
    for side in ("left", "bottom"):
        axis = widget.getPlotItem().getAxis(side)
        axis.setPen("k")
        axis.setTextPen("k")
    return widget


def _file_safe(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "person"
