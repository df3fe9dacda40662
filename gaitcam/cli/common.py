"""What several commands load the same way: config, encoder, matcher parameters, gallery."""
from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from gaitcam.config import PRECISIONS, Config, load_config


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a container's share)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def add_runtime_options(p: argparse.ArgumentParser, gallery: bool = True, fpir: bool = True,
                        batch: bool = False) -> None:
    """Options that override the config file for commands that encode and match. `batch`: an
    offline command that has the machine to itself, so it uses every core unless told otherwise
    (the config's thread count is sized for the live loop, which shares the cores)."""
    if gallery:
        # SUPPRESS: the main parser has --gallery too, and a subparser default would overwrite it.
        p.add_argument("--gallery", default=argparse.SUPPRESS, metavar="DB",
                       help="gallery: a SQLite file or postgresql://user@host:port/dbname (default: the config's)")
    p.add_argument("--weights", metavar="NAME", help="encoder weights (default: weights/sgela)")
    if batch:
        p.add_argument("--threads", type=int, default=available_cores(),
                       help=f"torch CPU threads (default: every core this process may use, {available_cores()} here)")
    else:
        p.add_argument("--threads", type=int, help="torch CPU threads (default: the config's, 1)")
    p.add_argument("--device", help="auto (CUDA when present), cpu or cuda")
    p.add_argument("--precision", choices=PRECISIONS,
                   help="the encoder's arithmetic: float32; int8 on a CPU (AVX2 or AVX-512); float16 or bfloat16, "
                   "mainly on a GPU (default: the config's, float32)")
    if fpir:
        p.add_argument("--fpir", type=float, metavar="RATE",
                       help="share of strangers allowed a name; the gallery calibrates its threshold for it "
                       "(default: the config's, 0.01)")

def config_from(args: argparse.Namespace, **extra: object) -> Config:
    """The config file updated by whatever of its keys the command line gave."""
    keys = ("gallery", "weights", "threads", "device", "precision", "threshold", "fpir", "stride", "log_level",
            "queue_size")
    overrides = {k: getattr(args, k) for k in keys if hasattr(args, k)}
    cfg = load_config(args.config, {**overrides, **extra})
    if args.log_level is None:
        logging.getLogger().setLevel(cfg.log_level)
    return cfg

def load_encoder(cfg: Config):
    """The encoder of the configured weights, on the configured device and thread count."""
    from gaitcam.session import load_encoder as load

    return load(cfg.weights, cfg.device, cfg.threads, cfg.f, cfg.precision)

def load_models(cfg: Config):
    """The configured encoder and its matcher parameters, with the configured threshold and FPIR."""
    from gaitcam.session import load_models as load

    return load(cfg.weights, cfg.device, cfg.threads, cfg.f, cfg.threshold, cfg.fpir, cfg.precision)

def matcher_params_path(weights: Path) -> Path:
    return Path(f"{weights}.matcher.json")

def save_json(path: str | Path, result: dict) -> None:
    """A command's results as indented JSON (the folder made if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")

def plot_path(args: argparse.Namespace, fallback: str, name: str) -> Path:
    """Where a command's plot goes: --plot, else beside --json, else the fallback folder."""
    if args.plot:
        return Path(args.plot)
    return (Path(args.json).parent if args.json else Path(fallback)) / name
