"""`benchmark kgbd|shift|cross-site|handoff`: accuracy on the public KGBD data, by the paper's
protocols and by the app's own (sensor shift, a new site, one person across two cameras)."""
from __future__ import annotations

import argparse

from gaitcam.cli.common import plot_path, save_json
from gaitcam.config import WEIGHTS_DIR
from gaitcam.errors import GaitcamError

LAB_WEIGHTS = WEIGHTS_DIR / "sgela-lab82"


def add(sub: argparse._SubParsersAction) -> None:
    from gaitcam.skeleton.perturb import PERTURBATIONS

    p = sub.add_parser(
        "benchmark",
        help="accuracy on KGBD: the paper's protocols, sensor shift, a new site, links across cameras",
        description="kgbd: the encoder by the paper's protocols with the project's split (per person the "
        "highest-numbered walk is the probe); classifier: the paper's recognition network on frozen AGEs "
        "(Rank-1/5/10, CMC, nAUC both ways); retrieval: cosine matching against all training-walk windows "
        "(Rank-1/5/10, mAP), each beside an untrained network and the raw windows. shift: evaluate's fold protocol "
        "with every probe walk perturbed as other sensors and sites differ, one row per perturbation. cross-site: "
        "persons 1-82 are the lab (encoder and matcher); in two folds, 83-123 a new site's enrolled people and "
        "124-164 strangers, then the other way round; the threshold comes from each site's gallery for --fpir. "
        "handoff: persons 83-164 walk between two cameras, several in transit at once, half of them enrolled; tracks "
        "are linked across the cameras (link precision and recall), the link threshold chosen on persons 1-82 only. "
        "Rates in the JSON are fractions.",
    )
    p.add_argument("benchmark", choices=("kgbd", "shift", "cross-site", "handoff"))
    p.add_argument("--root", required=True, metavar="DIR", help="the KGBD folder that holds Data/")
    p.add_argument("--protocol", choices=("classifier", "retrieval"), help="kgbd: which protocol (required)")
    p.add_argument("--weights", help="encoder weights (default: weights/sgela; cross-site, handoff: "
                   "weights/sgela-lab82)")
    p.add_argument("--json", metavar="OUT", help="write the results here")
    p.add_argument("--plot", metavar="PNG", help="kgbd: CMC plot (default: beside --json, else runs/benchmark/)")
    p.add_argument("--rn", metavar="DIR", help="kgbd classifier: reuse the RNs saved here when trained on exactly "
                   "these features and training walks; otherwise train them and save them here")
    p.add_argument("--threads", type=int, help="torch CPU threads (numpy's BLAS follows OPENBLAS_NUM_THREADS)")
    p.add_argument("--limit-people", type=int, metavar="N", help="kgbd: only the first N persons (a quick run)")
    p.add_argument("--seed", type=int, default=0, help="seeds the untrained encoder, RNs, folds and perturbations; "
                   "handoff: who is enrolled, the schedules and the lab's halves")
    p.add_argument("--select-on-probes", action="store_true",
                   help="kgbd classifier: choose the RN's epoch on the probe windows, as the released code did "
                   "(optimistic; labelled so in the output), to compare with the paper")
    p.add_argument("--no-controls", dest="controls", action="store_false",
                   help="kgbd: SGE-LA only, e.g. for an ablation (its controls are the shipped weights' run's)")
    p.add_argument("--fpir", type=float, default=0.01, metavar="RATE",
                   help="shift, cross-site: the FPIR the gallery calibrates its threshold for (default 0.01)")
    p.add_argument("--only", nargs="+", choices=[n for n in PERTURBATIONS if n != "clean"], metavar="NAME",
                   help=f"shift: these perturbations only (beside clean): {', '.join(list(PERTURBATIONS)[1:])}")
    p.add_argument("--no-partial", dest="partial", action="store_false",
                   help="cross-site: skip the site with hands and shoulder centre never tracked")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.set_defaults(func=cmd_benchmark)


def cmd_benchmark(args: argparse.Namespace) -> int:
    if not 0 < args.fpir < 1:
        raise GaitcamError(f"--fpir: expected a rate strictly between 0 and 1, got {args.fpir}")
    return {"kgbd": _kgbd, "shift": _shift, "cross-site": _cross_site, "handoff": _handoff}[args.benchmark](args)


def _encoder(args: argparse.Namespace, default):
    from gaitcam.session import load_encoder

    return load_encoder(args.weights or default, args.device, args.threads or None)


def _kgbd(args: argparse.Namespace) -> int:
    from gaitcam.evaluation.kgbd_benchmark import format_table, run_kgbd_benchmark, save_cmc_plot

    if args.protocol is None:
        raise GaitcamError("benchmark kgbd needs --protocol classifier or retrieval")
    result = run_kgbd_benchmark(
        args.root, args.protocol, args.weights or str(WEIGHTS_DIR / "sgela"), threads=args.threads,
        limit_people=args.limit_people, seed=args.seed, rn_dir=args.rn, device=args.device, controls=args.controls,
        select_on_probes=args.select_on_probes,
    )
    plot = plot_path(args, "runs/benchmark", f"kgbd_{args.protocol}_cmc.png")
    result["plot"] = str(save_cmc_plot(result, plot))
    if args.json:
        save_json(args.json, result)
    print(format_table(result))
    print(f"CMC plot: {plot}" + (f"; JSON: {args.json}" if args.json else ""))
    return 0


def _shift(args: argparse.Namespace) -> int:
    from gaitcam.evaluation.shift import format_shift, run_shift_benchmark
    from gaitcam.session import load_models

    models = load_models(args.weights or WEIGHTS_DIR / "sgela", args.device, args.threads or None)
    encoder, params = models.encoder, models.params
    result = run_shift_benchmark(args.root, encoder, params, args.only, args.fpir, seed=args.seed)
    if args.json:
        save_json(args.json, result)
    print(format_shift(result))
    return 0


def _cross_site(args: argparse.Namespace) -> int:
    from gaitcam.evaluation.cross_site import format_cross_site, run_cross_site

    encoder = _encoder(args, LAB_WEIGHTS)
    result = run_cross_site(args.root, encoder, args.fpir, partial=args.partial)
    if args.json:
        save_json(args.json, result)
    print(format_cross_site(result))
    return 0


def _handoff(args: argparse.Namespace) -> int:
    from gaitcam.evaluation.handoff import format_handoff, run_handoff

    encoder = _encoder(args, LAB_WEIGHTS)
    result = run_handoff(args.root, encoder, args.seed)
    if args.json:
        save_json(args.json, result)
    print(format_handoff(result))
    return 0
