"""`bench`: encoder and live-pipeline speed, reference against fast path; `bench search`: the
gallery search as it grows; `bench kernels`: the small-batch kernel as CPUs without this one's
AVX-512 or VNNI run it; `soak`: nothing leaks (BENCHMARKS.md)."""
from __future__ import annotations

import argparse
import functools
import logging
import sys
from pathlib import Path

from gaitcam.cli.common import add_runtime_options, config_from, load_models, save_json
from gaitcam.config import APP_ROOT, PRECISIONS, WEIGHTS_DIR

KGBD_BESIDE = APP_ROOT.parent / "shared" / "data" / "kgbd"  # where a checkout next to shared/ finds KGBD


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="encoder and live-pipeline speed: reference model against the fast path",
        description="Measures the encoder (throughput at batch 1, 8, 64, 256; batch-1 latency p50/p99; the "
        "reference training step) for the reference model and the fast path, alternating them so both share "
        "the same machine load, at each thread count; then 6 replayed people at 30 fps, stride 1, through the "
        "whole live pipeline (frame-to-decision latency, drops, CPU, memory), with the reference encoder "
        "alongside; then the same with the stride adapting to load from 1 (pipeline_auto); then start-up "
        "(--help, and the demo's first frame, in fresh processes). On CUDA the encoder figures are the GPU's. "
        "The default run takes a few minutes.",
    )
    p.add_argument("--json", metavar="OUT", help="write the full results here")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], metavar="N",
                   help="CPU thread counts to measure the encoder at; the first is the headline and the "
                   "pipeline's (default: 1 2)")
    p.add_argument("--weights", default=str(WEIGHTS_DIR / "sgela"),
                   help="encoder weights (default: weights/sgela)")
    p.add_argument("--view", action="store_true",
                   help="instead: the Qt view's draw time per frame with 6 people at 30 fps (offscreen without a display)")
    p.add_argument("--view-seconds", type=float, default=10.0, metavar="S", help="length of the --view run")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--pipeline-seconds", type=float, default=20.0, metavar="S",
                   help="live pipeline run per encoder and stride (default: 20)")
    p.add_argument("--slowdown", type=int, default=1, metavar="K",
                   help="the pipeline runs compute every encoder batch K times: how the live pipeline would hold on "
                   "a machine whose encoder is K times slower (compare its batch figures with these; default: 1)")
    p.add_argument("--precision", choices=PRECISIONS, default="float32",
                   help="the fast encoder's arithmetic in the pipeline, matcher, scaling and soak runs, as the "
                   "config's precision sets it for the live app (the encoder figures cover every path anyway; "
                   "default: float32)")
    p.add_argument("--scaling", action="store_true",
                   help="also how the pipeline's cost grows with people (1, 6, 12, 30) and stride (1, 2, 3, 6, "
                   "adapting): --scaling-seconds per setting")
    p.add_argument("--scaling-seconds", type=float, default=10.0, metavar="S",
                   help="length of each --scaling run (default: 10)")
    p.add_argument("--soak", action="store_true", help="also replay accelerated for --soak-minutes at the live "
                   "stride (3) and report resident memory at the start, every minute and at the end")
    p.add_argument("--soak-minutes", type=float, default=10.0, metavar="M", help="soak length (default: 10)")
    p.add_argument("--soak-speed", type=float, default=4.0, metavar="X", help="soak replay speed (default: 4)")
    p.set_defaults(func=cmd_bench)
    others = p.add_subparsers(title="other benchmarks", metavar="{search,kernels}")
    _add_search(others)
    _add_kernels(others)

    p = sub.add_parser(
        "soak", help="run the live pipeline on the demo at full speed with enrol/remove churn; check nothing leaks",
        description="The demo scene through the live pipeline as fast as it goes (speed 0), on a temporary gallery "
        "of the demo people; every --churn-every seconds a live track is enrolled (through the Session API, as the "
        "service does) and the previous such enrolment removed with its recording. After the warm-up, resident "
        "memory, open fds and threads are compared with the end of the run. Exit status 1 when RSS grows by 5 % "
        "or more, fds or threads change, anything failed, or no one was removed.")
    p.add_argument("--minutes", type=float, default=60.0, metavar="M", help="length of the run (default: 60)")
    p.add_argument("--warmup", type=float, metavar="S",
                   help="seconds before the comparison starts (default: 20 %% of the run, at least 30)")
    p.add_argument("--churn-every", type=float, default=10.0, metavar="S",
                   help="seconds between enrol/remove steps (default: 10)")
    p.add_argument("--json", metavar="OUT", help="write the results here")
    add_runtime_options(p, gallery=False, fpir=False)
    p.set_defaults(func=cmd_soak)


def _add_search(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search", help="identification's gallery search at 1k-100k (--full: 1M) enrolled walks",
        description="One probe at a time against synthetic galleries shaped like real ones (128-d unit vectors) "
        "of 1k, 10k and 100k walks (--full: 1M too): exact scans in numpy and torch, faiss's HNSW graph, and the "
        "app's own exact path; p50/p99 latency, build time, resident memory (each row in a fresh process), "
        "recall@1 against the exact scan. The default backend (marked) is the first exact scan whose p99 stays "
        "within 20 ms up to 100k walks, else the fastest. With KGBD the real descriptors too, each backend's "
        "Rank-1 beside the exact scan's. The default run takes a few minutes; --full adds several more.")
    p.add_argument("--full", action="store_true", help="add the 1M-walk galleries")
    p.add_argument("--sizes", type=int, nargs="+", metavar="N", help="gallery sizes instead (default: 1000 10000 "
                   "100000, with --full 1000000 too)")
    p.add_argument("--queries", type=int, metavar="N", help="timed probes per row (default: 500)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="threads each row's library runs on "
                   "(default: 1, as beside the live encoder; see BENCHMARKS.md)")
    p.add_argument("--root", metavar="DIR", help=f"KGBD (default: {KGBD_BESIDE} when it exists)")
    p.add_argument("--no-kgbd", action="store_true", help="leave the real KGBD descriptors out")
    p.add_argument("--weights", default=str(WEIGHTS_DIR / "sgela"),
                   help="weights (and their matcher) that encode KGBD (default: weights/sgela)")
    p.add_argument("--cache", default="runs/bench-search", metavar="DIR",
                   help="where KGBD's encoded walks are kept between runs (default: runs/bench-search)")
    p.add_argument("--json", metavar="OUT", help='write {"rows": [{"n", "backend", "p99_ms", "rss_mb", "default", '
                   '...}], ...} here')
    p.set_defaults(func=cmd_bench_search)


def _add_kernels(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kernels", help="the small-batch encoder kernel in float32 and int8 as CPUs without this one's AVX-512 "
        "or VNNI would run it",
        description="Compiles the small-batch kernel for this CPU and, where it has them, as a CPU without "
        "AVX-512 VNNI, without AVX-512 (AVX2 with AVX-VNNI) and with AVX2 alone would (the same source, "
        "instructions switched off), and times each in float32 and int8 at batch 1, 2, 3 and 8 on one thread: "
        "ten calls in a row and call by call, every figure as the float32 model's FLOPs over the float32 peak "
        "its instructions allow (8-float builds: torch.mm held to AVX2). An emulation of those CPUs: the "
        "caches and clocks stay this one's. About a minute.")
    p.add_argument("--rounds", type=int, default=20, metavar="N",
                   help="timed blocks of ten calls per path and batch; call by call 5 x N calls (default: 20)")
    p.add_argument("--weights", default=str(WEIGHTS_DIR / "sgela"), help="encoder weights (default: weights/sgela)")
    p.add_argument("--json", metavar="OUT", help='write {"builds": {...}, "batches": {"1": [{"build", "precision", '
                   '"in_a_row_ms", "in_a_row_peak_fraction", ...}]}} here')
    p.set_defaults(func=cmd_bench_kernels)


def cmd_bench_kernels(args: argparse.Namespace) -> int:
    """The builds' table on stdout, progress on stderr."""
    import torch

    from gaitcam.benchmarks import kernels
    from gaitcam.benchmarks.scene import demo_windows
    from gaitcam.errors import GaitcamError
    from gaitcam.model.weights import load_weights

    if args.rounds < 1:
        raise GaitcamError("--rounds: at least 1")
    torch.set_num_threads(1)
    model, meta = load_weights(Path(args.weights))
    windows = demo_windows(max(kernels.BATCHES), model.cfg.f, meta["normalization"])
    try:
        result = kernels.run(model, windows, args.rounds, say=_say)
    except RuntimeError as e:
        raise GaitcamError(str(e)) from e
    if args.json:
        save_json(args.json, result)
    print(kernels.table(result))
    return 0


def cmd_bench_search(args: argparse.Namespace) -> int:
    """The search grid; progress on stderr, the table on stdout."""
    from gaitcam.benchmarks import search
    from gaitcam.errors import GaitcamError

    sizes = tuple(args.sizes) if args.sizes else search.FULL_SIZES if args.full else search.SIZES
    queries = search.QUERIES if args.queries is None else args.queries
    if min(sizes) < 2 or queries < 1 or args.threads < 1:
        raise GaitcamError("--sizes: galleries of at least 2 walks; --queries, --threads: at least 1")
    root = None if args.no_kgbd else args.root or (KGBD_BESIDE if KGBD_BESIDE.is_dir() else None)
    if root is not None and not Path(root).is_dir():
        raise GaitcamError(f"--root {root}: no such folder")
    if root is None and not args.no_kgbd:
        _say(f"KGBD: {KGBD_BESIDE} not found; real descriptors left out (--root DIR includes them)")
    kgbd = functools.partial(search.kgbd_set, root, args.weights, args.cache, _say) if root else None
    result = search.run(sizes, kgbd, queries, args.threads, say=_say)
    if args.json:
        save_json(args.json, result)
    print(search.table(result))
    return 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_bench(args: argparse.Namespace) -> int:
    from gaitcam.benchmarks.report import run_benchmarks, summary
    from gaitcam.errors import GaitcamError

    if args.view:
        return _bench_view(args)
    if any(n < 1 for n in args.threads) or args.slowdown < 1:
        raise GaitcamError("--threads, --slowdown: at least 1")
    result = run_benchmarks(
        args.weights, args.device, tuple(args.threads), args.pipeline_seconds,
        soak_minutes=args.soak_minutes if args.soak else None, soak_speed=args.soak_speed, slowdown=args.slowdown,
        scaling_seconds=args.scaling_seconds if args.scaling else None, precision=args.precision,
        say=lambda text: print(text, file=sys.stderr, flush=True),
    )
    if args.json:
        save_json(args.json, result)
    print(summary(result))
    return 0


def _bench_view(args: argparse.Namespace) -> int:
    """The window's redraw cost with 6 people in view at 30 fps, and whether capture dropped frames."""
    from gaitcam.ui import bench_view

    result = bench_view(people=6, fps=30.0, seconds=args.view_seconds, weights=Path(args.weights))
    if args.json:
        save_json(args.json, result)
    print(f"view, 6 people at 30 fps for {args.view_seconds:.0f} s: draw p50 {result['draw_ms_p50']:.1f} ms, "
          f"p99 {result['draw_ms_p99']:.1f} ms ({result['draws']} redraws); frames {result['frames']} of "
          f"{result['expected_frames']} expected, dropped {result['dropped']}")
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    """Soak; progress on stderr, the verdict on stdout; 1 when a limit is broken."""
    from gaitcam.benchmarks.soak import check_budget, run_soak

    seconds = 60 * args.minutes
    warmup = args.warmup if args.warmup is not None else max(0.2 * seconds, 30.0)
    check_budget(seconds, warmup, args.churn_every)
    cfg = config_from(args)
    models = load_models(cfg)
    # Each churn step recalibrates the gallery (INFO) and enrols a demo walker whom the lookalike
    # check may take for someone enrolled (WARNING): expected here, and every step would say so.
    enrolment_log = logging.getLogger("gaitcam.identity.enrollment")
    level = enrolment_log.level
    if args.log_level is None:
        enrolment_log.setLevel(logging.ERROR)
    try:
        result = run_soak(models, seconds, warmup=warmup, churn_every=args.churn_every, stride=cfg.stride,
                          say=lambda text: print(text, file=sys.stderr, flush=True))
    finally:
        enrolment_log.setLevel(level)
    if args.json:
        save_json(args.json, result.to_json())
    print("\n".join(result.verdict()))
    return 0 if result.passed else 1
