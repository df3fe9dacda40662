"""What several commands load the same way: config, encoder, matcher parameters, gallery."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from gaitcam.config import Config, load_config
from gaitcam.errors import GaitcamError

log = logging.getLogger(__name__)


def add_runtime_options(p: argparse.ArgumentParser, gallery: bool = True, fpir: bool = True) -> None:
    """Options that override the config file for commands that encode and match."""
    if gallery:
        # SUPPRESS: the main parser has --gallery too, and a subparser default would overwrite it.
        p.add_argument("--gallery", default=argparse.SUPPRESS, metavar="DB",
                       help="gallery database (default: the config's)")
    p.add_argument("--weights", metavar="NAME", help="encoder weights (default: weights/sgela)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the config's, 1)")
    p.add_argument("--device", help="auto (CUDA when present), cpu or cuda")
    if fpir:
        p.add_argument("--fpir", type=float, metavar="RATE",
                       help="share of strangers allowed a name; the gallery calibrates its threshold for it "
                       "(default: the config's, 0.01)")


def config_from(args: argparse.Namespace, **extra: object) -> Config:
    """The config file updated by whatever of its keys the command line gave."""
    keys = ("gallery", "weights", "threads", "device", "threshold", "fpir", "stride", "log_level", "queue_size")
    overrides = {k: getattr(args, k) for k in keys if hasattr(args, k)}
    cfg = load_config(args.config, {**overrides, **extra})
    if args.log_level is None:
        logging.getLogger().setLevel(cfg.log_level)
    return cfg


def load_encoder(cfg: Config):
    """The encoder of the configured weights, on the configured device and thread count."""
    import torch

    from gaitcam.model.encoder import GaitEncoder

    torch.set_num_threads(cfg.threads)
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise GaitcamError(f"device {cfg.device}: no CUDA device here (torch {torch.__version__}); use auto or cpu")
    encoder = GaitEncoder.from_weights(cfg.weights, device=cfg.device)
    if encoder.f != cfg.f:
        raise GaitcamError(f"{cfg.weights}: the weights use {encoder.f}-frame windows, the config says f = {cfg.f}")
    return encoder


def matcher_params_path(weights: Path) -> Path:
    return Path(f"{weights}.matcher.json")


def load_params(cfg: Config, encoder):
    """The matcher parameters fitted for exactly this encoder (refused for any other)."""
    from gaitcam.identity.matcher import MatcherParams

    path = matcher_params_path(cfg.weights)
    if not path.is_file():
        raise GaitcamError(f"{path}: no matcher parameters for these weights; "
                           f"run `python main.py fit-matcher --train DIR --weights {cfg.weights}`")
    params = MatcherParams.load(path)
    if params.encoder_version != encoder.version:
        raise GaitcamError(f"{path}: fitted for encoder {params.encoder_version}, the weights are "
                           f"{encoder.version}; run fit-matcher again")
    if cfg.threshold is not None:
        params.min_score = cfg.threshold
    params.fpir = cfg.fpir
    return params


def open_gallery(path: Path, encoder, params, rebuild: bool = True):
    """The gallery, with templates of an older encoder rebuilt from their recordings first."""
    from gaitcam.identity.enrollment import reenroll_stale
    from gaitcam.identity.gallery import Gallery

    gallery = Gallery(path)
    if rebuild and gallery.stale(params.template_version):
        names = reenroll_stale(gallery, encoder, params)
        log.warning("re-enrolled %s for %s", ", ".join(names), params.template_version)
    return gallery


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
