"""`train`: self-supervised SGE-LA training on unlabeled recordings."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import fields
from pathlib import Path

from gaitcam.errors import GaitcamError

log = logging.getLogger(__name__)


def add(sub: argparse._SubParsersAction) -> None:
    # Options that set a field of SGELAConfig or TrainConfig default to None and take the
    # field's default in cmd_train: reading those defaults here would import torch for `--help`.
    from gaitcam.skeleton.normalize import NORMALIZATIONS

    p = sub.add_parser(
        "train",
        help="self-supervised SGE-LA training on unlabeled recordings",
        description="Train the SGE-LA encoder without labels. Inputs: recording files or folders, "
        "and/or --kgbd ROOT (training walks only, by the project's split rule), "
        "or --sgela-npy DIR for the original preprocessed windows. Recordings are read as training "
        "needs them, so a folder of any size trains. Several processes: torchrun --nproc_per_node N "
        "main.py train ... (--batch-size is then all processes' together).",
    )
    p.add_argument("inputs", nargs="*", help="recording files or folders (any supported format)")
    p.add_argument("--data", nargs="+", default=[], metavar="PATH", help="more recording files or folders")
    p.add_argument("--init", metavar="WEIGHTS", help="fine-tune these weights (e.g. weights/sgela) on the data: "
                   "site adaptation without labels; their architecture and normalisation are kept")
    p.add_argument("--kgbd", metavar="ROOT", help="KGBD folder holding Data/ (probe walks are left out)")
    p.add_argument("--all-walks", action="store_true", help="with --kgbd: also train on the probe walks")
    p.add_argument("--sgela-npy", metavar="DIR", help="original SGE-LA preprocessed .npy folder")
    p.add_argument("--dataset", default="KGBD", help="with --sgela-npy: dataset name in the file names")
    p.add_argument("--limit", type=int, help="use only the first N sequences (a quick slice)")
    p.add_argument("--trim", type=int, default=10, help="frames dropped at both ends of each sequence")
    p.add_argument("--out", default="runs/train", help="output folder (weights, checkpoint, loss.png)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.*")
    p.add_argument("--cache-mb", type=float, default=1024, metavar="MB",
                   help="windows each process keeps in memory between reads (default 1024; KGBD takes about 180)")
    g = p.add_argument_group("model")
    g.add_argument("--f", type=int, help="frames per window (default 6)")
    g.add_argument("--stride", type=int, help="training stride (default f // 2)")
    g.add_argument("--normalization", choices=NORMALIZATIONS, default="body")
    g.add_argument("--attention", choices=("LA", "BA"), help="default LA")
    g.add_argument("--reconstruction", choices=("reverse", "forward"), help="default reverse")
    g.add_argument("--decoder-input", choices=("zeros", "teacher"), help="default zeros")
    g.add_argument("--hidden", type=int, help="LSTM units (default 256)")
    g.add_argument("--contrastive", action="store_true",
                   help="add the TPAMI extension's contrastive loss between two windows of one sequence")
    g.add_argument("--mask-joints", type=float, default=0.0, metavar="SHARE",
                   help="share of training windows read with a joint group (hands, feet, head, trunk) lost and "
                   "derived from its neighbours, the measured joints still the target (default 0)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, help="default 400 (early stopping usually ends sooner)")
    g.add_argument("--batch-size", type=int, help="windows per step, all processes together (default 128)")
    g.add_argument("--lr", type=float, help="learning rate (default 5e-4; with --init a tenth of it, so the "
                   "first steps keep what the weights learned)")
    g.add_argument("--l2", type=float, help="weight decay on ½Σw² (default 0; original: 0.02)")
    g.add_argument("--reduction", choices=("mean", "sum"), help="batch reduction of the loss (default mean; original: sum)")
    g.add_argument("--temperature", type=float, help="contrastive NT-Xent temperature (default 0.5)")
    g.add_argument("--contrastive-weight", type=float, help="default 1")
    g.add_argument("--val-fraction", type=float, default=0.1, help="share of sequences held out")
    g.add_argument("--val-every", type=int, help="steps between validations (default 200)")
    g.add_argument("--patience", type=int, help="validations without gain before stopping (default 8)")
    g.add_argument("--max-minutes", type=float, help="wall-clock budget")
    g.add_argument("--max-steps", type=int, help="step budget (equal work for ablations on a shared machine)")
    g.add_argument("--seed", type=int, help="default 0")
    g.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.set_defaults(func=cmd_train)


def _sources(args: argparse.Namespace):
    """-> (training source, validation source, description of the inputs) from what the user named.

    Validation holds out whole recordings; a single recording (or the legacy windows) is read
    at once and its sequences, or the tail of its only one, are held out instead.
    """
    import numpy as np

    from gaitcam.model.data import WindowSet, held_out, validation_split
    from gaitcam.model.sources import InMemorySource, RecordingSource
    from gaitcam.recording.formats import find_recordings
    from gaitcam.recording.kgbd import list_walks, probe_split, split_sha256
    from gaitcam.skeleton.normalize import normalize_windows
    from gaitcam.skeleton.windows import WindowStats

    if args.sgela_npy:
        from gaitcam.recording.sgela_npy import load_sgela_npy

        legacy = load_sgela_npy(args.sgela_npy, args.dataset, f=args.f, split="train")
        windows = normalize_windows(legacy.windows, args.normalization)
        data = WindowSet(windows, np.zeros(len(windows), np.int64))
        train, val = (InMemorySource(d) for d in validation_split(data, args.val_fraction, args.seed))
        return train, val, {"sgela_npy": args.sgela_npy}

    files = find_recordings([*args.inputs, *args.data])
    sources: dict = {"recording_files": len(files)}
    if args.kgbd:
        walks = list_walks(args.kgbd)
        train_walks, probes = probe_split(walks)
        chosen = walks if args.all_walks else train_walks
        files += [w.path for w in chosen]
        sources.update(kgbd=str(args.kgbd), kgbd_walks=len(chosen), probes_excluded=not args.all_walks,
                       split_sha256=split_sha256(probes))
    if args.limit:
        files = files[: args.limit]
    if not files:
        raise GaitcamError("train: no recordings given (name files or folders, --kgbd ROOT or --sgela-npy DIR)")
    cut = dict(f=args.f, stride=args.stride or max(1, args.f // 2), normalization=args.normalization, trim=args.trim)
    if len(files) == 1:
        data = RecordingSource(files, **cut, cache_bytes=0).load(0)
        train, val = (InMemorySource(d) for d in validation_split(data, args.val_fraction, args.seed))
        stats, sequences = data.stats, len(np.unique(data.sequence))
    else:
        is_val = np.isin(np.arange(len(files)), held_out(len(files), args.val_fraction, args.seed))
        train = RecordingSource([f for f, v in zip(files, is_val) if not v], **cut,
                                cache_bytes=int(args.cache_mb * 2**20))
        # Validation recordings are read twice (counted, then their windows taken) and never again: no cache.
        val = RecordingSource([f for f, v in zip(files, is_val) if v], **cut, cache_bytes=0)
        stats = WindowStats()
        for source in (train, val):
            source.index()
            stats.add(source.stats)
        sequences = train.sequences + val.sequences
    if stats.incomplete or stats.glitches or stats.gaps:
        log.warning("window rule: %d of %d frames dropped for joints missing too long, %d runs restarted at "
                    "tracking glitches, %d at gaps in time", stats.incomplete, stats.frames, stats.glitches,
                    stats.gaps)
    sources["sequences"] = sequences
    return train, val, sources


def cmd_train(args: argparse.Namespace) -> int:
    from gaitcam.model import distributed
    from gaitcam.model.sgela import SGELAConfig
    from gaitcam.model.train import TrainConfig, Trainer
    from gaitcam.model.weights import load_weights

    for cfg in (SGELAConfig(), TrainConfig()):  # unset options take the configs' defaults
        for f in fields(cfg):
            if f.name != "lr" and getattr(args, f.name, False) is None:  # lr: its default depends on --init
                setattr(args, f.name, getattr(cfg, f.name))
    initial = None
    if args.init:
        initial, meta = load_weights(args.init)
        model_cfg, args.normalization, args.f = initial.cfg, meta["normalization"], initial.cfg.f
    else:
        model_cfg = SGELAConfig(
            f=args.f, hidden=args.hidden, attention=args.attention,
            reconstruction=args.reconstruction, decoder_input=args.decoder_input, contrastive=args.contrastive,
        )
    if not 0 <= args.mask_joints <= 1:
        raise GaitcamError(f"--mask-joints: expected a share between 0 and 1, got {args.mask_joints}")
    lr = args.lr or (TrainConfig.lr / 10 if args.init else TrainConfig.lr)
    train_cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=lr, l2=args.l2, reduction=args.reduction,
        val_every=args.val_every, patience=args.patience, max_minutes=args.max_minutes,
        max_steps=args.max_steps, seed=args.seed,
        threads=args.threads, device=args.device, temperature=args.temperature,
        contrastive_weight=args.contrastive_weight, mask_joints=args.mask_joints,
    )
    with distributed.process_group(args.device):
        rank = distributed.rank()
        if rank > 0:  # one voice: every process sees the same data and decisions; rank 0 tells them
            logging.getLogger().setLevel(logging.ERROR)
        started = time.monotonic()
        train, val, sources = _sources(args)
        log.info("%d training and %d validation windows from %s (%.0f s to read)", train.index().sum(),
                 val.index().sum(), sources, time.monotonic() - started)
        notes = {"data": sources, "command": "python main.py " + " ".join(sys.argv[1:]),
                 "train": vars(train_cfg) | {"stride": args.stride or max(1, args.f // 2), "trim": args.trim,
                                             "world_size": distributed.world()}}
        if args.init:
            notes["init"] = {"weights": str(args.init), "version": meta["version"]}
        trainer = Trainer(model_cfg, train_cfg, args.out, args.normalization, notes=notes)
        before = None
        if initial is not None:
            trainer.start_from(initial)
            before = trainer.validate(val)  # the held-out loss the starting weights give, for comparison
        summary = trainer.fit(train, val, resume=args.resume)
    if rank > 0:
        return 0
    print(f"best validation loss {summary['best_val']:.5g} at step {summary['best_step']}; "
          f"{summary['epochs']:.2f} epochs in {summary['minutes']:.1f} min ({summary['stop']}); "
          f"weights: {Path(args.out) / 'sgela.safetensors'}; loss curve: {Path(args.out) / 'loss.png'}")
    if before is not None:
        change = 100 * (summary["best_val"] - before) / before
        print(f"held-out recordings ({summary['val_windows']} windows never trained on): loss {before:.5g} with "
              f"{args.init}, {summary['best_val']:.5g} fine-tuned ({change:+.1f} %): "
              + ("the adaptation helped" if change < 0 else "no gain: keep the initial weights")
              + f". Fit the matcher for the new weights: fit-matcher --weights {Path(args.out) / 'sgela'} ...")
    return 0
