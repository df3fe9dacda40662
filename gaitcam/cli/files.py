"""`convert` (between recording formats) and `calibrate` (the floor, from a recording)."""
from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    from gaitcam.recording.formats import SUPPORTED, WRITABLE

    p = sub.add_parser("convert", help="convert a recording between formats (by the output's suffix)",
                       description=f"Reads: {SUPPORTED}. Writes: {WRITABLE}.")
    p.add_argument("src", metavar="IN")
    p.add_argument("dst", metavar="OUT")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from gaitcam.recording.formats import convert

    rec = convert(args.src, args.dst)
    frames = sum(len(s) for s in rec.tracks.values())
    print(f"{args.src} -> {args.dst}: {len(rec.tracks)} track(s), {frames} skeleton frames, {rec.duration:.1f} s")
    return 0
