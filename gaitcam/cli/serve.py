"""`gaitcam serve`: the live pipeline and the gallery behind HTTP (gaitcam.service).

Binds 127.0.0.1 by default. Any other address needs a token (--token-file FILE, or
$GAITCAM_TOKEN), which every request must then bear; without one it refuses to start.
SIGINT and SIGTERM stop the server, then the live run, which prints its summary event.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack

from gaitcam.cli.common import config_from
from gaitcam.cli.live import add_live_options, event_outputs, live_setup, one_source

log = logging.getLogger(__name__)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the live pipeline behind a REST and WebSocket service (FastAPI)",
                       description="REST for the gallery and identification, live events over WebSocket "
                       "(/api/v1/events) and Server-Sent Events, Prometheus metrics (/metrics), the API at /docs. "
                       "Beyond 127.0.0.1 a token is required.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--token-file", metavar="FILE",
                   help="file holding the bearer token (else $GAITCAM_TOKEN); required beyond loopback")
    p.add_argument("--no-live", action="store_true", help="no live source: gallery and identify only")
    add_live_options(p, subcommand=True)
    p.set_defaults(func=cmd_serve)


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, ending on SIGINT and SIGTERM the way --duration ends it: it stops
        serving, the live run stops and prints its summary, and the process exits 0. (uvicorn
        itself raises the signal again once it has stopped, which would kill the process
        before the summary.) A second signal stops at once."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            def handler(signum: int, frame: object) -> None:
                self.force_exit = self.should_exit
                self.should_exit = True

            before = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, h in before.items():
                    signal.signal(s, h)

    return Server


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from gaitcam.service.app import create_app
    from gaitcam.service.auth import check_bind, load_token
    from gaitcam.session import Session

    _Server = _server_class()
    token = load_token(args.token_file)
    check_bind(args.host, token)  # before anything loads: the one line is all the user sees
    cfg = config_from(args)
    one_source(args, "serve")
    with ExitStack() as stack:
        setup = live_setup(args, cfg, stack, gui=False)
        session = Session(setup.models, setup.gallery, setup.cameras[0], keep_events=False)
        stack.callback(session.close)  # before the gallery closes: its watch and encoder thread end first
        run = None if args.no_live else session.live(setup.source, calibration=setup.calibration, stride=cfg.stride,
                                                     max_stride=cfg.max_stride, queue_size=cfg.queue_size)
        server = _Server(uvicorn.Config(create_app(session, run, token, cfg.recordings / "uploads"),
                                               host=args.host, port=args.port, log_level="warning",
                                               ws="websockets-sansio", lifespan="off"))
        if args.duration is not None:  # stop as Ctrl-C would, after --duration seconds
            timer = threading.Timer(args.duration, lambda: setattr(server, "should_exit", True))
            timer.daemon = True
            timer.start()
        stack.enter_context(event_outputs(args, session, stdout=False))  # MQTT; stdout gets the summary only
        last = session.bus.subscribe(maxsize=1, count_drops=False)  # keeps only the newest event: the summary, at the end
        if run is not None:
            run.start()
        print(f"serving on http://{args.host}:{args.port} (API at /docs)", file=sys.stderr, flush=True)
        try:
            server.run()  # until SIGINT or SIGTERM
        finally:
            if run is not None:
                run.stop()
                run.join(timeout=30)
                if (final := last.get(timeout=0)) is not None and final["event"] == "summary":
                    print(json.dumps(final), flush=True)
    return 0
