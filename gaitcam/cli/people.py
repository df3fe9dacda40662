"""`enroll`, `identify` and `gallery list|rename|export|remove|rekey`: who the app knows."""
from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING

from gaitcam.cli.common import add_runtime_options, config_from, load_models
from gaitcam.errors import GaitcamError

if TYPE_CHECKING:
    from gaitcam.config import Config
    from gaitcam.identity.gallery import Gallery

log = logging.getLogger(__name__)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("enroll", help="add a person to the gallery from recordings of them walking",
                       description="Enrol NAME from one or more recordings (any supported format). A recording "
                       "with several people needs --track. Joints a sensor never tracks are derived from their "
                       "neighbours where the geometry allows. Refused, with the reason: under 20 windows (2 s) "
                       "of usable walking or over 20 %% of frames unusable (joints missing longer than 0.3 s). Warned: a close match to someone already enrolled.")
    p.add_argument("name")
    p.add_argument("recordings", nargs="*", metavar="RECORDING")
    p.add_argument("--track", type=int, help="which person of a multi-person recording")
    p.add_argument("--replace", action="store_true", help="replace NAME's templates instead of adding walks")
    live = p.add_argument_group("enrol the person walking in front of the sensor now")
    live.add_argument("--live", action="store_true",
                      help="wait for one walking track on --sensor, show its progress, record it and enrol it "
                      "as soon as it gives enough windows (the recording is kept under the config's recordings/)")
    live.add_argument("--sensor", default="demo", help="with --live: the skeleton source (default: demo)")
    live.add_argument("--source", metavar="PATH_OR_INDEX", help="with --live: file or device for the sensor")
    live.add_argument("--wait", type=float, default=60.0, metavar="S",
                      help="with --live: give up after S seconds without a track that gives enough (default 60)")
    add_runtime_options(p)
    p.set_defaults(func=cmd_enroll, speed=1.0)

    p = sub.add_parser("identify", help="name the people in recordings against the gallery",
                       description="Each track of each recording is one query; the tracks of one recording are "
                       "matched jointly (two people are never given one name). Files are read before the gallery.")
    p.add_argument("recordings", nargs="+", metavar="RECORDING")
    p.add_argument("--json", action="store_true", help="one JSON object per track on stdout")
    p.add_argument("--threshold", type=float, default=argparse.SUPPRESS,
                   help="lowest score that names someone (0.5 = calibrated)")
    add_runtime_options(p)
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("gallery", help="list, rename, export or remove enrolled people; re-encrypt with a new key",
                       description="Templates are encrypted in the gallery (AES-GCM) with the key in "
                       "$GAITCAM_GALLERY_KEY (base64) or else in the key file beside it (DB.key, made on first use; for a "
                       "PostgreSQL gallery, in the user's data folder, named for the server and database).")
    gallery_help = "gallery: a SQLite file or postgresql://user@host:port/dbname (default: the config's)"
    p.add_argument("--gallery", default=argparse.SUPPRESS, metavar="DB", help=gallery_help)
    gsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    gsub.add_parser("list", help="enrolled people, their walks, sensors and encoder versions")
    r = gsub.add_parser("rename", help="rename a person")
    r.add_argument("old")
    r.add_argument("new")
    r = gsub.add_parser("remove", help="delete a person, their templates and recording references for good "
                        "(scrubbed from the file); their recording files are kept unless --delete-recordings",
                        description="Erasure: the person's name, templates and recording references are deleted "
                        "and scrubbed from the gallery file and its journal. The recording files themselves are "
                        "kept (and listed) unless --delete-recordings.")
    r.add_argument("name")
    r.add_argument("--delete-recordings", action="store_true",
                   help="also delete the recording files only they appear in (a recording another enrolled "
                   "person appears in is kept)")
    r = gsub.add_parser("export", help="write everything held about a person to DIR/NAME/person.json "
                        "(an access request)",
                        description="Access request (GDPR art. 15): the name, when enrolled, every enrolment's "
                        "recording (path, sha256, sensor, track, when added, whether the file still exists) and "
                        "every template decrypted (kind, encoder version, sensor, shape, vectors), as "
                        "DIR/NAME/person.json, owner-only. It is biometric data: hand it over securely.")
    r.add_argument("name")
    r.add_argument("--out", required=True, metavar="DIR", help="folder to write the export in (made if missing)")
    r.add_argument("--with-recordings", action="store_true",
                   help="also copy the recording files that still exist into DIR/NAME/recordings/ "
                   "(encrypted ones decrypted)")
    r.add_argument("--force", action="store_true", help="replace an earlier export of the same person")
    r = gsub.add_parser("rekey", help="re-encrypt every template with a new random key in the key file "
                        "(the old ciphertext is scrubbed; back up the new key file with the gallery)",
                        description="Also re-wraps, for the new key, the encrypted recordings the gallery refers "
                        "to and every .gaitrec under --recordings; any other recording encrypted under the old "
                        "key no longer opens (back the old key up first if there are such).")
    r.add_argument("--recordings", nargs="+", default=[], metavar="DIR",
                   help="also re-wrap every encrypted .gaitrec under these folders (recursively), such as "
                   "recordings never enrolled")
    r = gsub.add_parser("plain-vectors", help="opt in (or out) of searching a PostgreSQL gallery inside the "
                        "database (pgvector), with its walks' vectors stored UNENCRYPTED there",
                        description="on: every enrolled walk's vector is also stored unencrypted in a pgvector "
                        "column of the gallery's database, which then finds each query's nearest walks; for every "
                        "process on that database. The templates become readable to anyone who can read the "
                        "database or a dump or backup of it: say --yes to accept that. off: the plain vectors are "
                        "dropped from the database's files. Needs a PostgreSQL gallery with pgvector on its server.")
    r.add_argument("state", choices=("on", "off"))
    r.add_argument("--yes", action="store_true", help="with on: accept that the vectors are stored unencrypted")
    r.add_argument("--gallery", default=argparse.SUPPRESS, metavar="DB", help=gallery_help)
    p.set_defaults(func=cmd_gallery)


def cmd_enroll(args: argparse.Namespace) -> int:
    from gaitcam.identity.enrollment import enroll_recordings
    from gaitcam.session import open_gallery

    if args.live:
        if args.recordings:
            raise GaitcamError("enroll --live records the person in front of the sensor; name no recordings")
        return enroll_live(args)
    if not args.recordings:
        raise GaitcamError("enroll NAME RECORDING...: name the recordings to enrol from, or use --live")
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


def enroll_live(args: argparse.Namespace) -> int:
    """Record the live source until one track gives enough windows to enrol, then enrol that
    track of the recording (through the same checks as any file)."""
    import sys
    import time

    from gaitcam.cli.live import make_source, one_source, writer
    from gaitcam.identity.enrollment import MIN_ENROL_WINDOWS
    from gaitcam.recording.native import new_recording_path
    from gaitcam.session import Session, open_gallery

    cfg = config_from(args)
    source = make_source(args, gui=False, source=one_source(args, "enroll --live"))
    models = load_models(cfg)
    path = new_recording_path(cfg.recordings, f"enrol-{args.sensor}")
    chosen = None
    with open_gallery(cfg.gallery, models) as gallery, \
            Session(models, gallery, args.sensor, keep_events=False) as session:
        with writer(path, source, args.sensor, None) as recorder:
            run = session.live(source, recorder=recorder, stride=cfg.stride, queue_size=cfg.queue_size)
            run.start()
            print(f"enrolling {args.name}: walk in front of the {args.sensor} sensor "
                  f"({MIN_ENROL_WINDOWS} windows needed, waiting up to {args.wait:g} s)", file=sys.stderr)
            end, shown = time.monotonic() + args.wait, ""
            try:
                while chosen is None and time.monotonic() < end and run.stats is None:
                    evidence = dict(run.pipeline.matcher.tracks)
                    ready = [t for t, ev in evidence.items()
                             if ev.windows >= MIN_ENROL_WINDOWS and ev.segments >= models.params.min_segments]
                    best = max(evidence.items(), key=lambda kv: kv[1].windows, default=None)
                    line = "" if best is None else f"track {best[0]}: {min(best[1].windows, MIN_ENROL_WINDOWS)}/{MIN_ENROL_WINDOWS} windows"
                    if line != shown:
                        print(f"  {line}", file=sys.stderr)
                        shown = line
                    chosen = ready[0] if ready else None
                    time.sleep(0.2)
            finally:
                run.stop()
                run.join(timeout=30)
        if chosen is None:
            path.unlink(missing_ok=True)
            raise GaitcamError(f"no walking track gave {MIN_ENROL_WINDOWS} windows in {args.wait:g} s; nothing enrolled")
        try:
            r = session.enroll(args.name, path, chosen, args.replace)
        except GaitcamError:
            path.unlink(missing_ok=True)  # refused: the recording of a stranger is not kept
            raise
    print(f"enrolled {r.name} from {path} (track {r.track}): {r.windows} windows, {r.seconds:.1f} s of walking")
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
        log.warning("%s: the gallery is empty; everyone will be unknown", gallery.where)
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
    from gaitcam.identity import plain_vectors
    from gaitcam.identity.gallery import open_store

    cfg = config_from(args)
    if args.action == "plain-vectors":
        return switch_plain_vectors(args, cfg)
    with open_store(cfg.gallery) as gallery:
        if args.action == "list":
            people = gallery.people()
            for p in people:
                print(f"{p.name}: {p.n_recordings} recording(s), {p.n_templates} template(s), "
                      f"sensors {', '.join(p.sensors) or '-'}, encoder {', '.join(p.encoder_versions) or '-'}, "
                      f"enrolled {p.created:%Y-%m-%d %H:%M}")
            print(f"{len(people)} people in {gallery.where}")
            if (on := plain_vectors.state(gallery)) is not None:
                print("plain vectors ON: the walks' vectors are also stored UNENCRYPTED in the database and searched "
                      "there (pgvector)" + ("" if on["matcher"] else "; out of step: rebuilt by the next process "
                                            "that opens the gallery with its matcher"))
        elif args.action == "rename":
            gallery.rename(args.old, args.new)
            print(f"renamed {args.old} to {args.new}")
        elif args.action == "export":
            export_person(gallery, args)
        elif args.action == "rekey":
            done = gallery.rekey(args.recordings)
            moved = done.recordings
            unopenable = f", {moved.unopenable} no gallery key opens" if moved.unopenable else ""
            failed = (f", {moved.failed} could not be: the old key is kept in {done.key}.old until they are"
                      if moved.failed else "")
            print(f"re-encrypted {done.templates} template(s) in {gallery.where} with a new key ({done.key}); "
                  f"re-wrapped {moved.rewrapped} encrypted recording(s) ({moved.missing} missing{unopenable}{failed})")
        else:
            info = next((p for p in gallery.people() if p.name == args.name), None)
            own = gallery.remove(args.name, delete_recordings=args.delete_recordings)
            templates = f" and their {info.n_templates} template(s)" if info else ""
            print(f"removed {args.name}{templates} from {gallery.where} (scrubbed from the gallery)")
            if args.delete_recordings:
                print(f"deleted {len(own)} recording(s) only they appeared in" + "".join(f"\n  {p}" for p in own))
            elif own:
                print(f"kept {len(own)} recording(s) of theirs (`--delete-recordings` deletes them):"
                      + "".join(f"\n  {p}" for p in own))
    return 0


def export_person(gallery: Gallery, args: argparse.Namespace) -> None:
    """`gallery export`: the person's data to a folder; says how much, never the vectors."""
    from gaitcam.identity.export import write_export

    export = gallery.export(args.name)  # an unknown name fails here, before anything is written
    written = write_export(export, args.out, force=args.force, with_recordings=args.with_recordings)
    copies = f", {written.copied} recording file(s) copied" if args.with_recordings else ""
    print(f"exported {export['name']}: {written.templates} template(s), {written.recordings} recording "
          f"reference(s){copies} to {written.path}")


def switch_plain_vectors(args: argparse.Namespace, cfg: Config) -> int:
    """`gallery plain-vectors on|off`: on says the trade-off and needs --yes (else exit 2, nothing
    changed); it back-fills every walk with the configured matcher's vectors."""
    import sys

    from gaitcam.identity import plain_vectors
    from gaitcam.identity.postgres import PostgresGallery, is_url

    if not is_url(str(cfg.gallery)):
        raise GaitcamError(f"{cfg.gallery}: plain vectors are searched by pgvector, which needs a PostgreSQL gallery "
                           "(--gallery postgresql://user@host:port/dbname), not a SQLite file")
    if args.state == "on" and not args.yes:
        print(f"{plain_vectors.TRADE_OFF}\nNothing changed: add --yes to switch plain vectors on.", file=sys.stderr)
        return 2
    with PostgresGallery(str(cfg.gallery)) as gallery:
        if args.state == "off":
            dropped = gallery.plain_vectors_off()
            print(f"plain vectors were off in {gallery.where}" if dropped is None else
                  f"plain vectors off in {gallery.where}: dropped {dropped} vector(s) from the database's files")
            return 0
        print(plain_vectors.TRADE_OFF, file=sys.stderr)
        count = gallery.plain_vectors_on(plain_vectors.WalkVectors(load_models(cfg).params))
    print(f"plain vectors on in {gallery.where}: {count} walk(s) stored unencrypted, searched in the database")
    return 0
