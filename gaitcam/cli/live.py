"""The live app (no command) and `record`: a source through the pipeline to names.

`python main.py` with no --sensor runs the demo: synthetic walkers matched against a demo
gallery enrolled, at start-up, from the shipped walks in recordings/demo/ (other walk seeds
than the live scene), so a fresh machine shows the whole app working, stranger included.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from gaitcam.cli.common import config_from, load_models
from gaitcam.config import Config
from gaitcam.errors import GaitcamError

if TYPE_CHECKING:
    from gaitcam.events import EventBus
    from gaitcam.identity.gallery import Gallery
    from gaitcam.sensors.base import Source
    from gaitcam.session import Models
    from gaitcam.stream.calibration import Calibration

log = logging.getLogger(__name__)

def add_live_options(p: argparse.ArgumentParser, subcommand: bool = False) -> None:
    """The live options, on the main parser and on `record`. On a subcommand they default to
    SUPPRESS: argparse would otherwise overwrite `--gallery X record` with the subparser's None."""
    from gaitcam.sensors.base import SENSORS

    def default(value: object) -> object:
        return argparse.SUPPRESS if subcommand else value

    g = p.add_argument_group("live")
    g.add_argument("--sensor", default=default("demo"), help=f"skeleton source: {', '.join(SENSORS)} (default: demo)")
    g.add_argument("--source", action="append", default=default(None), metavar="PATH_OR_INDEX",
                   help="file or device for the sensor (replay/video: a file); give it again for more sources of "
                   "the same sensor in this process (one encoder serves them all; each has its own camera id)")
    g.add_argument("--gallery", default=default(None), metavar="DB",
                   help="gallery database (default: the config's; demo: its own)")
    g.add_argument("--headless", action="store_true", default=default(False),
                   help="no window (with or without one, the events go to stdout as JSON lines; schema: `schema events`)")
    g.add_argument("--camera", action="append", default=default(None), metavar="ID",
                   help="this source's id in events (default: the sensor's name; with several --source, "
                   "SENSOR-1, SENSOR-2 ...); once per --source")
    g.add_argument("--mqtt", default=default(None), metavar="HOST:PORT",
                   help="also publish the events to this MQTT broker, topic gaitcam/<camera>/events")
    g.add_argument("--screenshot", default=default(None), metavar="PNG",
                   help="save the window (and PNG.json: what was drawn) at exit; implies the window, also under "
                   "QT_QPA_PLATFORM=offscreen")
    g.add_argument("--duration", type=float, default=default(None), metavar="S", help="stop after S seconds")
    g.add_argument("--speed", type=float, default=default(1.0), help="replay speed (0: as fast as possible)")
    g.add_argument("--fov", type=float, default=default(None), metavar="DEG",
                   help="video, webcam: the camera's horizontal field of view, for metric depths from the image "
                   "(default 60; e.g. 2*atan(width/2/focal_px) from its calibration)")
    g.add_argument("--stride", type=int, default=default(None), help="frames between windows (default: the config's, 3)")
    g.add_argument("--threshold", type=float, default=default(None),
                   help="lowest score that names someone (0.5 = calibrated)")
    g.add_argument("--fpir", type=float, default=default(None), metavar="RATE",
                   help="share of strangers allowed a name; the gallery calibrates its threshold for it "
                   "(default: the config's, 0.01)")
    g.add_argument("--list-sensors", action="store_true", default=default(False),
                   help="say which sensors are usable here, and exit")
    if not subcommand:  # (`serve` has a session of its own; `record` takes it before the command)
        g.add_argument("--site-links", action="store_true",
                       help="one camera process of a site: store each ended track (sealed, kept 120 s) in the "
                       "shared gallery for the site's `link` process, which links tracks across processes; "
                       "without it, several --source are linked in this process")


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record a sensor to a file (crash-safe native format) while identifying",
                       description="Writes OUT (default recordings/<sensor>-<time>.gaitrec); the file stays "
                       "readable up to the last second if the process dies.")
    add_live_options(p, subcommand=True)
    p.add_argument("--out", metavar="FILE", help="recording to write (.gaitrec)")
    p.add_argument("--encrypt", action="store_true",
                   help="encrypt the recording with the gallery's key (AES-256-GCM; default: the config's "
                   "encrypt_recordings, false); every command reads it where that key is")
    p.set_defaults(func=cmd_record)


def source_args(args: argparse.Namespace) -> list[str | None]:
    """What each --source named (one None: the sensor's default device)."""
    return list(getattr(args, "source", None) or [None])


def camera_ids(args: argparse.Namespace) -> list[str]:
    """Each source's camera id in events: --camera once per source, else the sensor's name (one
    source) or SENSOR-1, SENSOR-2 ... (several)."""
    n = len(source_args(args))
    given = list(getattr(args, "camera", None) or [])
    if given and len(given) != n:
        raise GaitcamError(f"--camera: given {len(given)} time(s) for {n} source(s); give one per --source")
    ids = given or ([args.sensor] if n == 1 else [f"{args.sensor}-{i}" for i in range(1, n + 1)])
    if len(set(ids)) != len(ids):
        raise GaitcamError(f"--camera: each source needs its own id, got {', '.join(ids)}")
    return ids


def one_source(args: argparse.Namespace, what: str) -> str | None:
    """The one --source of a command that takes one."""
    sources = source_args(args)
    if len(sources) > 1:
        raise GaitcamError(f"{what} takes one --source, got {len(sources)}")
    return sources[0]


def make_source(args: argparse.Namespace, gui: bool, source: str | None = None):
    """The named sensor's Source on `source` (from --source; None: its default device), with
    --speed (each backend's first argument is what --source names: a file, a camera index or
    a device). A replay in the window gets the play/pause, seek and speed controls."""
    from gaitcam.sensors.base import SourceError, sensor_problem, source_class

    cls = source_class(args.sensor)
    fov = getattr(args, "fov", None)
    optics = {} if fov is None else {"horizontal_fov": fov}
    if optics and args.sensor not in ("video", "webcam"):
        raise GaitcamError(f"--fov: only for the video and webcam sensors (a depth sensor measures depth), "
                           f"not {args.sensor}")
    problem = sensor_problem(args.sensor) if source is None else None  # a device, not a file
    if problem is not None:
        raise SourceError(problem)  # before loading the model: the one line is all the user sees
    if args.sensor == "demo":
        return cls(realtime=args.speed != 0)
    if args.sensor in ("replay", "video"):
        if not source:
            raise GaitcamError(f"{args.sensor}: name the file with --source FILE")
        if gui and args.sensor == "replay":
            from gaitcam.ui.transport import PlayableReplay

            return PlayableReplay(source, speed=args.speed)
        return cls(source, speed=args.speed, **optics)
    return cls(source, **optics) if source is not None else cls(**optics)


def wants_window(args: argparse.Namespace) -> bool:
    """The window unless --headless; without a display (and no QT_QPA_PLATFORM) headless, saying so."""
    if args.headless:
        if args.screenshot:
            raise GaitcamError("--screenshot needs the window; leave out --headless")
        return False
    if args.screenshot or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") \
            or os.environ.get("QT_QPA_PLATFORM"):
        if args.screenshot and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        from gaitcam.ui.xcb import install_hint, missing_packages, uses_xcb

        if uses_xcb() and (missing := missing_packages()):  # else Qt aborts without saying what to install
            raise GaitcamError(install_hint(missing))
        return True
    log.warning("no display (DISPLAY/WAYLAND_DISPLAY unset, no QT_QPA_PLATFORM): running headless")
    return False


@contextmanager
def event_outputs(args: argparse.Namespace, session, stdout: bool = True) -> Iterator[None]:
    """The session's events out (`bus_outputs`)."""
    with bus_outputs(args, session.bus, stdout):
        yield


@contextmanager
def bus_outputs(args: argparse.Namespace, bus: EventBus, stdout: bool = True) -> Iterator[None]:
    """The events of `bus` as JSON lines on stdout and, with --mqtt, to the broker (connected
    now, so an unreachable broker is said before the run starts). On leaving, the bus closes
    and both outputs send everything published before it."""
    printer = None
    if stdout:
        sub = bus.subscribe(maxsize=100_000)

        def print_all() -> None:
            for event in sub:
                print(json.dumps(event), flush=True)
        printer = threading.Thread(target=print_all, name="gaitcam-stdout", daemon=True)
        printer.start()
    publisher = None
    if args.mqtt:
        from gaitcam.mqtt import MqttPublisher

        publisher = MqttPublisher(bus, args.mqtt)
    try:
        yield
    finally:
        bus.close()
        if printer is not None:
            printer.join()
        if publisher is not None:
            publisher.close()


@dataclass
class LiveSetup:
    """What a live run needs, loaded as the config and options say: one source per --source,
    each with its camera id."""

    models: Models
    sources: list[Source]
    cameras: list[str]
    gallery: Gallery
    calibration: Calibration | None

    @property
    def source(self) -> Source:
        """The source of a run that has one."""
        (source,) = self.sources
        return source


def live_setup(args: argparse.Namespace, cfg: Config, stack: ExitStack, gui: bool) -> LiveSetup:
    """The sources, the models, the gallery (the demo's own when the demo runs without --gallery)
    and the sensor's floor calibration; the gallery is closed with `stack`."""
    from gaitcam.identity.enrollment import demo_gallery
    from gaitcam.session import open_gallery
    from gaitcam.stream.calibration import Calibration, calibration_path

    cameras = camera_ids(args)
    # First: a missing sensor is said before the model loads.
    sources = [make_source(args, gui, s) for s in source_args(args)]
    models = load_models(cfg)
    if args.sensor == "demo" and args.gallery is None:
        gallery = demo_gallery(stack, models.encoder, models.params)
    else:
        gallery = stack.enter_context(open_gallery(cfg.gallery, models))
    if not gallery.people():
        log.warning("%s: the gallery is empty; everyone will be unknown (enrol people with `enroll`)", gallery.where)
    cal_file = calibration_path(args.sensor, cfg.calibration)
    return LiveSetup(models, sources, cameras, gallery, Calibration.load(cal_file) if cal_file.is_file() else None)


def run_live(args: argparse.Namespace, out: Path | None = None) -> int:
    from gaitcam.session import Session

    if args.list_sensors:
        return _list_sensors()
    if args.site_links and args.sensor == "demo" and args.gallery is None:
        raise GaitcamError("--site-links: the demo runs on a gallery of its own, which no linker reads; "
                           "give the site's --gallery")
    cfg = config_from(args)
    if out is not None:
        one_source(args, "record")
    gui = wants_window(args)
    if gui and len(source_args(args)) > 1:
        log.warning("the window shows one source; %d sources run headless", len(source_args(args)))
        gui = False
    with ExitStack() as stack:
        setup = live_setup(args, cfg, stack, gui)
        models, gallery, calibration = setup.models, setup.gallery, setup.calibration
        recorder = None
        if out is not None:
            recorder = stack.enter_context(writer(out, setup.source, args.sensor, calibration,
                                                  encrypt=getattr(args, "encrypt", False)))
        session = Session(models, gallery, setup.cameras[0], keep_events=False,
                          site_links=args.site_links)
        stack.callback(session.close)  # before the gallery closes: its watch and encoder thread end first
        with event_outputs(args, session):
            runs = [session.live(source, camera=camera, calibration=calibration, recorder=recorder,
                                 stride=cfg.stride, max_stride=cfg.max_stride, queue_size=cfg.queue_size)
                    for source, camera in zip(setup.sources, setup.cameras)]
            if len(runs) > 1:
                with stop_on_signals(*(r.pipeline for r in runs)):
                    for r in runs:
                        r.start(duration=args.duration)
                    for r in runs:
                        r.join()
                session.flush_links()  # the cross-camera links still waiting, before the bus closes
                failed = [r for r in runs if r.error is not None]
                if failed:
                    raise GaitcamError(f"{len(failed)} of {len(runs)} sources failed: {failed[0].error}")
                return 0
            (run,) = runs
            if gui:
                from gaitcam.ui import run_gui

                run_gui(run, sensor_name=args.sensor, recordings_dir=cfg.recordings,
                        screenshot=Path(args.screenshot) if args.screenshot else None, duration=args.duration)
            else:
                with stop_on_signals(run.pipeline):
                    run.run(duration=args.duration)
    if out is not None:
        print(f"recorded {out}", file=sys.stderr)
    return 0


@contextmanager
def stop_on_signals(*pipelines) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM (how services are stopped) end the runs the way their end
    does: each pipeline drains, the recording is flushed, the gallery closed, and each summary
    counts everything that happened. A second signal interrupts at once."""
    def handler(signum: int, frame) -> None:
        if all(p.stopping for p in pipelines):
            raise KeyboardInterrupt
        log.info("%s: stopping", signal.Signals(signum).name)
        for p in pipelines:
            p.stop()

    before = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def writer(out: Path, source, sensor: str, calibration, encrypt: bool = False):
    """The live recording's writer; encrypted with the gallery's key when `encrypt` or the
    config's `encrypt_recordings` says so (`enroll --live` records through here too)."""
    from gaitcam.recording.native import RecordingWriter
    from gaitcam.recording.recording import RecordingMeta
    from gaitcam.recording.sealed import writing_key

    meta = RecordingMeta(sensor=sensor, layout=source.layout.name, fps=float(source.fps),
                         calibration=None if calibration is None else calibration.to_dict(),
                         created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return RecordingWriter(out, meta, key=writing_key(encrypt))


def _list_sensors() -> int:
    from gaitcam.sensors.base import sensor_status

    for name, reason in sensor_status().items():
        print(f"{name}: " + ("available" if reason is None else f"not usable here: {reason}"))
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    return run_live(args)


def cmd_record(args: argparse.Namespace) -> int:
    from gaitcam.recording.native import new_recording_path

    cfg = config_from(args)
    out = Path(args.out) if args.out else new_recording_path(cfg.recordings, args.sensor)
    return run_live(args, out)
