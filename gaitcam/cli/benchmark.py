"""`benchmark kgbd`: the paper's protocols on KGBD, each figure beside its two controls."""
from __future__ import annotations

import argparse

from gaitcam.cli.common import plot_path, save_json
from gaitcam.config import APP_ROOT


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark",
        help="the paper's numbers on a public dataset, beside an untrained network and raw windows",
        description="Benchmark the encoder on KGBD with the project's split (per person the highest-numbered "
        "walk is the probe). classifier: the paper's recognition network on frozen AGEs (Rank-1/5/10, CMC, "
        "nAUC both ways); retrieval: cosine matching against all training-walk windows (Rank-1/5/10, mAP). "
        "Query unit: one window; walk-level results are reported beside. Rates in the JSON are fractions.",
    )
    p.add_argument("dataset", choices=("kgbd",))
    p.add_argument("--root", required=True, metavar="DIR", help="the folder that holds Data/")
    p.add_argument("--protocol", required=True, choices=("classifier", "retrieval"))
    p.add_argument("--weights", default=str(APP_ROOT / "weights" / "sgela"),
                   help="encoder weights (NAME, NAME.json or NAME.safetensors)")
    p.add_argument("--json", metavar="OUT", help="write the results here")
    p.add_argument("--plot", metavar="PNG", help="CMC plot (default: beside --json, else runs/benchmark/)")
    p.add_argument("--rn", metavar="DIR", help="classifier: reuse the RNs saved here when trained on exactly "
                   "these features and training walks; otherwise train them and save them here")
    p.add_argument("--threads", type=int, help="torch CPU threads (numpy's BLAS follows OPENBLAS_NUM_THREADS)")
    p.add_argument("--limit-people", type=int, metavar="N", help="only the first N persons (a quick run)")
    p.add_argument("--seed", type=int, default=0, help="seeds the untrained encoder and the RNs")
    p.add_argument("--no-controls", dest="controls", action="store_false",
                   help="SGE-LA only, e.g. for an ablation (its controls are the shipped weights' run's)")
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.set_defaults(func=cmd_benchmark)


def cmd_benchmark(args: argparse.Namespace) -> int:
    
    from gaitcam.evaluation.kgbd_benchmark import format_table, run_kgbd_benchmark, save_cmc_plot

    result = run_kgbd_benchmark(
        args.root, args.protocol, args.weights, threads=args.threads, limit_people=args.limit_people,
        seed=args.seed, rn_dir=args.rn, device=args.device, controls=args.controls,
    )
    plot = plot_path(args, "runs/benchmark", f"kgbd_{args.protocol}_cmc.png")
    result["plot"] = str(save_cmc_plot(result, plot))
    if args.json:
        save_json(args.json, result)
    print(format_table(result))
    print(f"CMC plot: {plot}" + (f"; JSON: {args.json}" if args.json else ""))
    return 0
