"""`convert` (between recording formats), `convert-ids` (SGE-LA's pickled ids, once) and
`calibrate` (the floor, from a recording)."""
from __future__ import annotations

import argparse


def add(sub: argparse._SubParsersAction) -> None:
    from gaitcam.recording.formats import SUPPORTED, WRITABLE

    p = sub.add_parser("convert", help="convert a recording between formats (by the output's suffix)",
                       description=f"Reads: {SUPPORTED}. Writes: {WRITABLE}.")
    p.add_argument("src", metavar="IN")
    p.add_argument("dst", metavar="OUT")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("convert-ids", help="convert an original SGE-LA ids file (a pickle) to JSON, once",
                       description="The original SGE-LA code saved ids_{D}_{f}.npy as a pickled dict. gaitcam never "
                       "unpickles while reading; this command reads the pickle once, admitting only numpy's array "
                       "constructors (a pickle that names anything else is refused before it runs), checks it is "
                       "{label: [window indices]}, and writes ids_{D}_{f}.json beside it (never overwriting).")
    p.add_argument("ids", metavar="IDS_NPY")
    p.set_defaults(func=cmd_convert_ids)

    p = sub.add_parser("calibrate", help="estimate the floor plane from a recording of people walking round",
                       description="Fits the floor under the walkers' feet (RANSAC, then least squares) and writes "
                       "CALIBRATION/<sensor>.json, which the live app then applies to that sensor: skeletons in "
                       "floor-aligned metres (y up, floor at 0). Walk in several directions and distances.")
    p.add_argument("recordings", nargs="+", metavar="RECORDING")
    p.add_argument("--sensor", help="sensor the calibration is for (default: the recording's)")
    p.add_argument("--out", metavar="JSON", help="where to write (default: the config's calibration folder)")
    p.set_defaults(func=cmd_calibrate)


def cmd_convert(args: argparse.Namespace) -> int:
    from gaitcam.recording.formats import convert

    rec = convert(args.src, args.dst)
    frames = sum(len(s) for s in rec.tracks.values())
    print(f"{args.src} -> {args.dst}: {len(rec.tracks)} track(s), {frames} skeleton frames, {rec.duration:.1f} s")
    return 0


def cmd_convert_ids(args: argparse.Namespace) -> int:
    from gaitcam.recording.sgela_npy import convert_ids

    out = convert_ids(args.ids)
    print(f"{args.ids} -> {out}: read with numpy's array constructors only")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    import numpy as np

    from gaitcam.cli.common import config_from
    from gaitcam.recording.formats import read_recording
    from gaitcam.stream.calibration import calibration_path, estimate_floor, lowest_feet

    recordings = [read_recording(p) for p in args.recordings]
    sensor = args.sensor or recordings[0].meta.sensor
    sequences = [s for r in recordings for s in r.tracks.values()]
    calibration = estimate_floor(sequences, sensor=sensor)
    cfg = config_from(args)
    out = calibration.save(args.out or calibration_path(sensor, cfg.calibration))
    feet = np.concatenate([calibration.apply(lowest_feet(s)) for s in sequences])
    tilt = np.degrees(np.arccos(np.clip(calibration.rotation[1, 1], -1, 1)))
    print(f"floor for {sensor}: camera {calibration.translation[1]:.3f} m above it, tilted {tilt:.1f} degrees; "
          f"feet at {100 * np.median(feet[:, 1]):.1f} cm (median); written to {out}")
    return 0
