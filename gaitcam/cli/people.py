"""`enroll`, `identify` and `gallery list|rename|remove`: who the app knows."""
from __future__ import annotations

import argparse
import json
import logging

from gaitcam.cli.common import add_runtime_options, config_from, load_models

log = logging.getLogger(__name__)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enroll", help="add a person to the gallery from recordings of them walking",
                       description="Enrol NAME from one or more recordings (any supported format). A recording "
                       "with several people needs --track. Joints a sensor never tracks are derived from their "
                       "neighbours where the geometry allows. Refused, with the reason: under 3 s of usable "
                       "walking or over 20 %% of frames unusable (joints missing longer than 0.3 s). Warned: a close match to someone already enrolled.")
    p.add_argument("name")
    p.add_argument("recordings", nargs="+", metavar="RECORDING")
    p.add_argument("--track", type=int, help="which person of a multi-person recording")
    p.add_argument("--replace", action="store_true", help="replace NAME's templates instead of adding walks")
    add_runtime_options(p)
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("identify", help="name the people in recordings against the gallery",
                       description="Each track of each recording is one query; the tracks of one recording are "
                       "matched jointly (two people are never given one name). Files are read before the gallery.")
    p.add_argument("recordings", nargs="+", metavar="RECORDING")
    p.add_argument("--json", action="store_true", help="one JSON object per track on stdout")
    p.add_argument("--threshold", type=float, default=argparse.SUPPRESS,
                   help="lowest score that names someone (0.5 = calibrated)")
    add_runtime_options(p)
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("gallery", help="list, rename or remove enrolled people")
    p.add_argument("--gallery", default=argparse.SUPPRESS, metavar="DB", help="gallery database (default: the config's)")
    gsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    gsub.add_parser("list", help="enrolled people, their walks, sensors and encoder versions")
    r = gsub.add_parser("rename", help="rename a person")
    r.add_argument("old")
    r.add_argument("new")
    r = gsub.add_parser("remove", help="delete a person's templates for good (secure delete, vacuum)")
    r.add_argument("name")
    r.add_argument("--delete-recordings", action="store_true", help="also delete the recordings they came from")
    p.set_defaults(func=cmd_gallery)


def cmd_enroll(args: argparse.Namespace) -> int:
    from gaitcam.identity.enrollment import enroll_recordings
    from gaitcam.session import open_gallery

    cfg = config_from(args)
    models = load_models(cfg)
    encoder, params = models.encoder, models.params
    with open_gallery(cfg.gallery, models) as gallery:
        # All files are read and checked before anything is written (a bad one changes nothing).
        results = enroll_recordings(gallery, encoder, params, args.name, args.recordings, args.track,
                                    replace=args.replace)
    for path, r in zip(args.recordings, results):
        print(f"enrolled {r.name} from {path} (track {r.track}): {r.windows} windows, {r.seconds:.1f} s of walking"
              + (f" ({len(r.warnings)} warning(s) above)" if r.warnings else ""))
    return 0


def cmd_identify(args: argparse.Namespace) -> int:
    from gaitcam.identity.enrollment import identify_recording, load_index
    from gaitcam.recording.formats import read_recording
    from gaitcam.session import open_gallery

    recordings = [read_recording(p) for p in args.recordings]  # bad files fail before the gallery opens
    cfg = config_from(args)
    models = load_models(cfg)
    encoder, params = models.encoder, models.params
    with open_gallery(cfg.gallery, models) as gallery:
        index = load_index(gallery, params)
    if not len(index):
        log.warning("%s: the gallery is empty; everyone will be unknown", cfg.gallery)
    for path, rec in zip(args.recordings, recordings):
        if not rec.tracks:  # failure to acquire: nothing to match, said and counted
            row = {"recording": str(path), "track": None, "identity": None, "score": None, "nearest": None,
                   "windows": 0, "failure": "no pose"}
            print(json.dumps(row) if args.json else f"{path}: no one to identify (no pose: the recording holds no skeleton)")
            continue
        for track, r in identify_recording(rec, encoder, params, index).items():
            d = r.decision
            row = {"recording": str(path), "track": track, "identity": d.identity,
                   "score": None if d.pending else round(d.score, 4), "nearest": d.candidate, "windows": d.windows,
                   "failure": r.failure}
            if args.json:
                print(json.dumps(row))
            elif r.failure is not None:
                print(f"{path} track {track}: cannot tell ({r.failure}: {r.detail})")
            else:
                said = d.identity or "unknown"
                extra = "" if d.candidate is None else f" (score {d.score:.2f}, nearest {d.candidate})"
                print(f"{path} track {track}: {said}{extra}")
    return 0


def cmd_gallery(args: argparse.Namespace) -> int:
    from gaitcam.identity.gallery import Gallery

    cfg = config_from(args)
    with Gallery(cfg.gallery) as gallery:
        if args.action == "list":
            people = gallery.people()
            for p in people:
                print(f"{p.name}: {p.n_recordings} recording(s), {p.n_templates} template(s), "
                      f"sensors {', '.join(p.sensors) or '-'}, encoder {', '.join(p.encoder_versions) or '-'}, "
                      f"enrolled {p.created:%Y-%m-%d %H:%M}")
            print(f"{len(people)} people in {cfg.gallery}")
        elif args.action == "rename":
            gallery.rename(args.old, args.new)
            print(f"renamed {args.old} to {args.new}")
        else:
            info = next((p for p in gallery.people() if p.name == args.name), None)
            own = gallery.remove(args.name, delete_recordings=args.delete_recordings)
            templates = f" and their {info.n_templates} template(s)" if info else ""
            print(f"removed {args.name}{templates} from {cfg.gallery} (scrubbed from the file)")
            if args.delete_recordings:
                print(f"deleted {len(own)} recording(s) only they appeared in" + "".join(f"\n  {p}" for p in own))
            elif own:
                print(f"kept {len(own)} recording(s) of theirs (`--delete-recordings` deletes them):"
                      + "".join(f"\n  {p}" for p in own))
    return 0
