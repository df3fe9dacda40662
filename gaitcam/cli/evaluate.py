"""`evaluate`, `fit-matcher` and `kgbd-layout`: the app's matcher measured on labelled folders."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gaitcam.errors import GaitcamError
from gaitcam.cli.common import (add_runtime_options, config_from, load_encoder, load_models, matcher_params_path,
                                plot_path, save_json)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Rank-1/5, mAP, FNIR at FPIR, DET and CMC of the app's matcher on two folders",
                       description="DIR is DIR/<identity>/<recording file>, any supported format, any number of "
                       "identities from 2. In folds, every identity is a stranger once: its walks (gallery and "
                       "probe) are stranger probes against the other identities' gallery walks, whose probe walks "
                       "are the enrolled probes. The matcher is fitted and the threshold calibrated on each fold's "
                       "enrolled gallery only. Reports the fusion, each cue alone, a bone-length 1-NN baseline and "
                       "two controls (the gait cue with an untrained network and with raw windows), bootstrap 95 %% "
                       "CIs over identities, failures to acquire and enrol.")
    p.add_argument("--gallery", dest="gallery_dir", required=True, metavar="DIR", help="gallery folder")
    p.add_argument("--probe", required=True, metavar="DIR", help="probe folder")
    p.add_argument("--json", metavar="OUT", help="write the results here")
    p.add_argument("--plot", metavar="PNG", help="CMC and DET plot (default: beside --json, else runs/evaluate/)")
    p.add_argument("--folds", type=int, default=10, metavar="K",
                   help="folds; each identity is a stranger in one (default 10, at most one per identity)")
    p.add_argument("--no-controls", dest="controls", action="store_false",
                   help="skip the untrained-network and raw-window controls (faster)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="B", help="bootstrap resamples for the CIs")
    p.add_argument("--seed", type=int, default=0, help="seeds the folds, the untrained network and the bootstrap")
    add_runtime_options(p, gallery=False, batch=True)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("fit-matcher", help="learn how the matcher compares walks, from labelled walks",
                       description="From TRAIN/<identity>/<recordings> (training walks only, never probes), or "
                       "from the people enrolled in a gallery (--from-gallery): descriptor statistics, PCA and the "
                       "whitening of each person's walk-to-walk variation, plus the stranger scores small "
                       "galleries calibrate on. Writes WEIGHTS.matcher.json and .safetensors. The open-set "
                       "threshold is not fitted here: every gallery calibrates its own for --fpir.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--train", metavar="DIR", help="training folder, DIR/<identity>/<recordings>")
    src.add_argument("--from-gallery", action="store_true",
                     help="fit on the walks enrolled in the gallery (--gallery, else the config's)")
    p.add_argument("--exclude-last", type=int, default=0, metavar="N",
                   help="with --train: leave the last N identities out (e.g. to keep them strangers)")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="with --train: fit on the walks as recorded only, not also on a copy of each under a "
                   "random sensor shift (mirrored, jitter, joints never tracked, camera pose, frame rate)")
    p.add_argument("--out", metavar="JSON", help="where to write (default: WEIGHTS.matcher.json)")
    add_runtime_options(p, fpir=False, batch=True)
    p.set_defaults(func=cmd_fit_matcher)

    p = sub.add_parser("kgbd-layout", help="lay KGBD out as gallery/ and probe/ folders by the one split rule",
                       description="Symlinks OUT/gallery/<PersonNNN>/<walk> (all walks but the highest-numbered) "
                       "and OUT/probe/<PersonNNN>/<walk> (the highest-numbered), for evaluate and fit-matcher.")
    p.add_argument("--root", required=True, metavar="DIR", help="the KGBD folder holding Data/")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=cmd_kgbd_layout)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gaitcam.evaluation.folders import evaluate_folders, format_result, save_plot

    cfg = config_from(args)
    models = load_models(cfg)
    encoder, params = models.encoder, models.params
    if args.folds < 2 or args.bootstrap < 1:
        raise GaitcamError("evaluate needs --folds 2 or more and --bootstrap 1 or more")
    result = evaluate_folders(args.gallery_dir, args.probe, encoder, params, folds=args.folds, fpir=cfg.fpir,
                              controls=args.controls, bootstrap=args.bootstrap, seed=args.seed,
                              workers=cfg.threads)
    result["command"] = "python main.py " + " ".join(sys.argv[1:])
    plot = plot_path(args, "runs/evaluate", "cmc_det.png")
    result["plot"] = str(save_plot(result, plot))
    if args.json:
        save_json(args.json, result)
    print(format_result(result))
    print(f"CMC and DET plot: {plot}" + (f"; JSON: {args.json}" if args.json else ""))
    return 0


def cmd_fit_matcher(args: argparse.Namespace) -> int:
    from gaitcam.evaluation.fit_matcher import fit_matcher, fit_matcher_from_gallery
    from gaitcam.identity.gallery import open_store

    cfg = config_from(args)
    encoder = load_encoder(cfg)
    if args.from_gallery:
        with open_store(cfg.gallery) as gallery:
            params = fit_matcher_from_gallery(gallery, encoder)
    else:
        params = fit_matcher(args.train, encoder, exclude_last=args.exclude_last, augment=args.augment)
    out = Path(args.out) if args.out else matcher_params_path(cfg.weights)
    params.save(out)
    print(f"matcher for encoder {encoder.version}: {params.notes['walks']} walks of {params.notes['people']} people, "
          f"{params.notes['pca']} dimensions; written to {out} (+ .safetensors)")
    return 0


def cmd_kgbd_layout(args: argparse.Namespace) -> int:
    from gaitcam.recording.kgbd import layout_split

    gallery, probe = layout_split(args.root, args.out)
    print(f"gallery: {gallery}\nprobe: {probe}")
    return 0
