"""`gaitcam link`: the site's linker, for cameras served by separate processes.

Each camera process runs with `--site-links` and stores its ended tracks in the shared gallery
(`identity.sightings`); this one process follows them and publishes every decision as the
`link` event (camera "site") a process with several sources publishes itself, as JSON lines on
stdout and, with --mqtt, to the broker. Run exactly one per site: two would give the same
person two site ids.
"""
from __future__ import annotations

import argparse
import logging

from gaitcam.cli.common import config_from
from gaitcam.cli.live import bus_outputs, stop_on_signals
from gaitcam.errors import GaitcamError
from gaitcam.identity.handoff import DEFAULT_THRESHOLD, DEFAULT_WAIT, DEFAULT_WINDOW

log = logging.getLogger(__name__)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("link", help="link tracks across camera processes that share a gallery (site-wide ids)",
                       description="Follows the tracks that camera processes started with --site-links store in "
                       "the gallery, and prints a `link` event (camera \"site\") for each decision. Ctrl-C or "
                       "SIGTERM ends it cleanly, deciding the tracks still waiting.")
    # SUPPRESS: the main parser has these too, and a subparser default would overwrite them.
    p.add_argument("--gallery", default=argparse.SUPPRESS, metavar="DB",
                   help="the cameras' gallery: a SQLite file or postgresql://user@host:port/dbname "
                   "(default: the config's)")
    p.add_argument("--weights", metavar="NAME", help="the cameras' encoder weights, whose matcher parameters "
                   "compare tracks (default: the config's, weights/sgela)")
    p.add_argument("--mqtt", default=argparse.SUPPRESS, metavar="HOST:PORT",
                   help="also publish the events to this MQTT broker, topic gaitcam/site/events")
    p.add_argument("--duration", type=float, default=argparse.SUPPRESS, metavar="S", help="stop after S seconds")
    p.add_argument("--threshold", dest="link_threshold", type=float, default=DEFAULT_THRESHOLD, metavar="T",
                   help=f"the score from which two tracks are linked (default {DEFAULT_THRESHOLD})")
    p.add_argument("--window", type=float, nargs=2, default=DEFAULT_WINDOW, metavar=("LO", "HI"),
                   help="transit window: seconds from one track's end to the next one's start "
                   f"(default {DEFAULT_WINDOW[0]:g} {DEFAULT_WINDOW[1]:g})")
    p.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="S",
                   help=f"seconds a track waits for competitors before its decision (default {DEFAULT_WAIT:g})")
    p.set_defaults(func=cmd_link)


def cmd_link(args: argparse.Namespace) -> int:
    from gaitcam.events import EventBus
    from gaitcam.identity.gallery import open_store
    from gaitcam.identity.matcher import MatcherParams
    from gaitcam.identity.sightings import SiteLinker

    lo, hi = args.window
    if lo > hi:
        raise GaitcamError(f"--window {lo:g} {hi:g}: its start lies after its end")
    cfg = config_from(args)
    params = MatcherParams.load(f"{cfg.weights}.matcher.json")
    bus = EventBus("site")
    with open_store(cfg.gallery) as gallery, bus_outputs(args, bus):
        linker = SiteLinker(gallery, params, bus.publish, threshold=args.link_threshold, window=(lo, hi),
                            wait=args.wait)
        log.info("linking the sightings of %s", gallery.where)
        with stop_on_signals(linker):
            linker.run(args.duration)
    n = linker.counts
    log.info("summary: %d sighting(s) read, %d decision(s), %d linked; skipped: %d unreadable, %d of another "
             "version, %d repeated", n.sightings, n.decisions, n.linked, n.unreadable, n.other_version, n.repeated)
    return 0
