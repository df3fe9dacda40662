"""`evaluate`, `fit-matcher` and `kgbd-layout`: the app's matcher measured on labelled folders."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gaitcam.cli.common import (add_runtime_options, config_from, load_encoder, load_params, matcher_params_path,
                                plot_path, save_json)


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="Rank-1/5, mAP and open-set rates of the app's matcher on two folders",
                       description="DIR is DIR/<identity>/<recording file>, any supported format. Every gallery "
                       "identity is enrolled in a fresh temporary gallery; every probe recording is one query. "
                       "Reports gait only, body shape only, the shipped fusion and a bone-length 1-NN baseline "
                       "(closed set), then FPIR/DIR with the last --unknown identities left out of the gallery.")
    p.add_argument("--gallery", dest="gallery_dir", required=True, metavar="DIR", help="gallery folder")
    p.add_argument("--probe", required=True, metavar="DIR", help="probe folder")
    p.add_argument("--json", metavar="OUT", help="write the results here")
    p.add_argument("--plot", metavar="PNG", help="CMC plot (default: beside --json, else runs/evaluate/)")
    p.add_argument("--unknown", type=int, default=20, metavar="N",
                   help="identities left out for the open-set figures (default 20; 0: none)")
    p.add_argument("--threshold", type=float, default=argparse.SUPPRESS,
                   help="lowest score that names someone (0.5 = calibrated)")
    add_runtime_options(p, gallery=False)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("fit-matcher", help="fit the matcher's statistics and open-set threshold on training walks",
                       description="From TRAIN/<identity>/<recordings> (training walks only, never probes): "
                       "label-free descriptor statistics and scales, and the threshold at which --fpir of "
                       "strangers' walks would get a name. Writes WEIGHTS.matcher.json.")
    p.add_argument("--train", required=True, metavar="DIR", help="training folder, DIR/<identity>/<recordings>")
    p.add_argument("--exclude-last", type=int, default=20, metavar="N",
                   help="leave the last N identities out (those `evaluate --unknown N` uses as strangers)")
    p.add_argument("--fpir", type=float, default=0.05, help="target false-positive identification rate")
    p.add_argument("--out", metavar="JSON", help="where to write (default: WEIGHTS.matcher.json)")
    add_runtime_options(p, gallery=False)
    p.set_defaults(func=cmd_fit_matcher)

    p = sub.add_parser("kgbd-layout", help="lay KGBD out as gallery/ and probe/ folders by the one split rule",
                       description="Symlinks OUT/gallery/<PersonNNN>/<walk> (all walks but the highest-numbered) "
                       "and OUT/probe/<PersonNNN>/<walk> (the highest-numbered), for evaluate and fit-matcher.")
    p.add_argument("--root", required=True, metavar="DIR", help="the KGBD folder holding Data/")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=cmd_kgbd_layout)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from gaitcam.evaluation.folders import evaluate_folders, format_result, save_cmc_plot

    cfg = config_from(args)
    encoder = load_encoder(cfg)
    params = load_params(cfg, encoder)
    result = evaluate_folders(args.gallery_dir, args.probe, encoder, params, unknown=args.unknown)
    result["command"] = "python main.py " + " ".join(sys.argv[1:])
    plot = plot_path(args, "runs/evaluate", "cmc.png")
    result["plot"] = str(save_cmc_plot(result, plot))
    if args.json:
        save_json(args.json, result)
    print(format_result(result))
    print(f"CMC plot: {plot}" + (f"; JSON: {args.json}" if args.json else ""))
    return 0


def cmd_fit_matcher(args: argparse.Namespace) -> int:
    from gaitcam.evaluation.fit_matcher import fit_matcher

    cfg = config_from(args)
    encoder = load_encoder(cfg)
    params = fit_matcher(args.train, encoder, exclude_last=args.exclude_last, target_fpir=args.fpir)
    out = Path(args.out) if args.out else matcher_params_path(cfg.weights)
    params.save(out)
    print(f"matcher for encoder {encoder.version}: threshold {params.threshold:.4f} "
          f"(target FPIR {args.fpir:.2f} on {params.notes['walks']} walks of {params.notes['people']} people); "
          f"written to {out}")
    return 0


def cmd_kgbd_layout(args: argparse.Namespace) -> int:
    from gaitcam.recording.kgbd import layout_split

    gallery, probe = layout_split(args.root, args.out)
    print(f"gallery: {gallery}\nprobe: {probe}")
    return 0
