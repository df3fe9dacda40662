"""Command line: `python main.py [COMMAND] ...` (contract in ../shared/docs/ARCHITECTURE.md).

One module per group of commands; each has `add(subparsers)` and its `cmd_*` functions. With no
command, the live app runs (`live.py`). Heavy imports (torch, Qt, SDKs) happen inside the
commands, so `--help` and one-line errors stay fast.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gaitcam import __version__
from gaitcam.cli import bench, benchmark, evaluate, files, link, live, people, schema, serve, train
from gaitcam.errors import GaitcamError

COMMANDS = (live, people, files, evaluate, train, benchmark, bench, schema, serve, link)


def build_parser() -> argparse.ArgumentParser:
    prog = "gaitcam" if Path(sys.argv[0]).name == "gaitcam" else "python main.py"  # the console script or main.py
    parser = argparse.ArgumentParser(prog=prog,
                                     description="gaitcam: person re-identification by gait, from 3-D skeletons")
    parser.add_argument("--version", action="version", version=f"gaitcam {__version__}")
    parser.add_argument("--config", metavar="TOML", help="config file (default: ./gaitcam.toml, "
                        "else ~/.config/gaitcam/config.toml; see gaitcam.example.toml)")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="log detail on stderr (default: the config's, INFO)")
    live.add_live_options(parser)
    parser.set_defaults(func=live.cmd_live)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMANDS:
        module.add(sub)
    return parser


@contextmanager
def recordings_keyed_by(args: argparse.Namespace) -> Iterator[None]:
    """Encrypted recordings open with the key of the gallery this command configures (its
    --config and --gallery), whichever command reads them; the config loads only if one is met."""
    from gaitcam.config import load_config
    from gaitcam.recording import sealed

    before = sealed.use_config(lambda: load_config(args.config, {"gallery": getattr(args, "gallery", None)}))
    try:
        yield
    finally:
        sealed.use_config(before)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level or "INFO", stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        with recordings_keyed_by(args):
            return args.func(args)
    except GaitcamError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
