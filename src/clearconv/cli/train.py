"""``clearconv train --model NAME|net.toml --dataset NAME|--data FOLDER --out m.npz``.

Builds the model (zoo name or architecture file), loads the data, trains with
the model's recipe (every setting can be overridden), reports per-epoch
metrics and the final test accuracy, and writes one model file holding the
weights, class names, normalisation and training metadata.
"""

from __future__ import annotations

import argparse
import os
import shlex
import tempfile
import time
from pathlib import Path

import numpy as np

from clearconv.cli import CLIError
from clearconv.cli._common import (
    DATASET_SHAPES,
    DATASETS,
    add_command,
    add_data_dir,
    data_root,
    folder_classes,
    held_out_split,
    load_folder,
    load_named,
    parse_shape,
    resolve_model_spec,
)


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "train",
        run,
        help="train a model on a data set or an image folder and save it",
        description="Train a zoo model (or one from a .toml/.json architecture file) on a "
        "known data set or an image folder FOLDER/CLASS/*.png|jpg, then write a model file. "
        "Unset options come from the model's recipe.",
    )
    p.add_argument("--model", required=True, help="zoo name (lenet5, resnet, ...) or .toml/.json")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=DATASETS, help="a known data set (xo needs no files)")
    src.add_argument(
        "--data",
        metavar="FOLDER",
        help="image folder FOLDER/CLASS/*.png|jpg (FOLDER/train and FOLDER/test when present), "
        "or a segmentation folder FOLDER/train/images + FOLDER/train/masks",
    )
    p.add_argument("--out", required=True, metavar="PATH", help="model file to write (.npz)")
    add_data_dir(p)
    p.add_argument(
        "--input-shape", metavar="C,H,W", help="input size for folder data (default: the model's)"
    )
    p.add_argument("--epochs", type=int, help="passes over the training data")
    p.add_argument("--batch-size", type=int, help="images per step")
    p.add_argument("--lr", type=float, help="(peak) learning rate")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), help="optimizer")
    p.add_argument("--schedule", choices=("none", "step", "cosine", "onecycle"), help="lr schedule")
    p.add_argument("--weight-decay", type=float, help="weight decay")
    p.add_argument("--label-smoothing", type=float, help="label smoothing in [0, 1)")
    p.add_argument(
        "--val-split", type=float, default=0.0, help="share of training data for validation"
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random shifts/rotations/scalings (default: the recipe's)",
    )
    p.add_argument("--early-stopping", type=int, metavar="N", help="stop after N epochs w/o gain")
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint written after each epoch")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--history", metavar="PATH", help="write per-epoch metrics (.csv or .json)")
    p.add_argument("--limit", type=int, metavar="N", help="train on the first N training images")
    p.add_argument("--no-download", action="store_true", help="never download a missing data set")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-epoch lines")


def _check_args(args: argparse.Namespace) -> None:
    positive = {"--epochs": args.epochs, "--batch-size": args.batch_size, "--limit": args.limit}
    positive["--early-stopping"] = args.early_stopping
    for flag, value in positive.items():
        if value is not None and value < 1:
            raise CLIError(f"{flag} must be >= 1, got {value}")
    if args.lr is not None and not args.lr > 0:
        raise CLIError(f"--lr must be > 0, got {args.lr}")
    if args.weight_decay is not None and args.weight_decay < 0:
        raise CLIError(f"--weight-decay must be >= 0, got {args.weight_decay}")
    if args.label_smoothing is not None and not 0 <= args.label_smoothing < 1:
        raise CLIError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if not 0 <= args.val_split < 1:
        raise CLIError(f"--val-split must be in [0, 1), got {args.val_split}")
    if args.early_stopping is not None and args.val_split <= 0:
        raise CLIError("--early-stopping needs validation data: add --val-split, e.g. 0.1")
    if args.resume and not args.checkpoint:
        raise CLIError("--resume needs --checkpoint PATH (the checkpoint to continue from)")
    if args.history and Path(args.history).suffix.lower() not in (".csv", ".json"):
        raise CLIError(f"--history must end in .csv or .json, got {args.history}")
    out_dir = Path(args.out).parent
    if not out_dir.is_dir():
        raise CLIError(f"--out {args.out}: folder {out_dir} does not exist")
    # Probe now: an unwritable folder found after hours of training loses them.
    try:
        fd, probe = tempfile.mkstemp(prefix=".clearconv-probe.", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CLIError(
            f"--out {args.out}: cannot write in {out_dir} ({exc.strerror or exc})"
        ) from exc


def settings(spec: str, args: argparse.Namespace) -> dict:
    """Training settings: the command line over the model's recipe (general defaults for files)."""
    from clearconv import zoo

    merged = zoo.recipe(spec if spec in zoo.NAMES else None)
    given = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "schedule": args.schedule,
        "weight_decay": args.weight_decay,
        "label_smoothing": args.label_smoothing,
    }
    merged.update({k: v for k, v in given.items() if v is not None})
    if args.augment is False:
        merged["augment"] = None
    elif args.augment and not merged.get("augment"):
        merged["augment"] = True
    return merged


def _augment(value, digits: bool) -> dict | None:
    """The recipe's augmentation (``Augment``'s arguments), or the default for ``--augment``."""
    if value is True:
        # small shifts, rotations and scalings; mirror images only where they make sense
        return {"shift": 2, "rotate": 10.0, "scale": 0.1, "flip": not digits}
    return value or None


def _epoch_line(record: dict) -> None:
    """One line per epoch: losses, accuracies, learning rate, time."""
    parts = [f"epoch {record['epoch']:>3}"]
    parts.append(f"loss {record['train_loss']:.4f} acc {record['train_acc']:.2%}")
    if record.get("val_loss") is not None:
        parts.append(f"val_loss {record['val_loss']:.4f} val_acc {record['val_acc']:.2%}")
    parts.append(f"lr {record['lr']:.3g}  {record['seconds']:.1f} s")
    print("  ".join(parts), flush=True)


def load_data(spec: str, args: argparse.Namespace, rng: np.random.Generator):
    """``(net, input_shape, train, test, source)`` for the model and data named in ``args``.

    ``source`` (recorded in the model file) names the data; for a folder
    without ``FOLDER/test`` it also says which images were held out, so that
    ``evaluate`` can test on the same ones.
    """
    from clearconv import zoo

    shape = parse_shape(args.input_shape)
    if args.dataset is not None:
        ds_shape = DATASET_SHAPES[args.dataset]
        if shape is not None and shape != ds_shape:
            raise CLIError(f"--input-shape {shape} does not match {args.dataset}'s {ds_shape}")
        root = data_root(args)
        download = not args.no_download
        train = load_named(
            args.dataset, root, "train", seed=args.seed, download=download, limit=args.limit
        )
        test = load_named(args.dataset, root, "test", seed=args.seed, download=download)
        net, shape = zoo.build(
            spec, input_shape=ds_shape, num_classes=len(train.class_names), rng=rng
        )
        return net, tuple(shape), train, test, {"dataset": args.dataset, "data": str(root)}
    root = Path(args.data)
    classes = folder_classes(root)
    net, shape = zoo.build(spec, input_shape=shape, num_classes=len(classes), rng=rng)
    train = load_folder(root, "train", shape, classes)
    if (root / "test").is_dir():
        test = load_folder(root, "test", shape, classes)
        held_out = None
    else:
        held_out = {"seed": args.seed, "images": len(train)}
        tr, te = held_out_split(len(train), args.seed)
        train, test = train[tr], train[te]
        if len(train) == 0 or len(test) == 0:
            raise CLIError(f"{root}: too few images to hold out a test set ({len(tr) + len(te)})")
    if args.limit is not None:
        train = train[: args.limit]
    source = {"dataset": "folder", "data": str(root.resolve()), "held_out": held_out}
    return net, tuple(shape), train, test, source


def command_line(args: argparse.Namespace) -> str:
    """The effective command, rebuilt from the parsed options (recorded in the model file)."""
    skip = {"func", "command", "debug", "threads"}
    parts = ["clearconv", "train"]
    for key, value in vars(args).items():
        if key in skip or value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        parts += [flag] if value is True else [flag, str(value)]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    from clearconv import io, train
    from clearconv.data import channel_stats, train_val_split
    from clearconv.model import Model

    _check_args(args)
    spec = resolve_model_spec(args.model)
    from clearconv.data.segment import is_segmentation_folder

    if args.data is not None and is_segmentation_folder(args.data):  # images with masks
        from clearconv.cli import _segment

        return _segment.train(args, spec)
    rng = np.random.default_rng(args.seed)
    net, shape, train_ds, test_ds, source = load_data(spec, args, rng)
    cfg = settings(spec, args)
    digits = args.dataset in ("mnist", "xo")
    val_ds = None
    if args.val_split > 0:
        tr, va = train_val_split(len(train_ds), args.val_split, rng)
        train_ds, val_ds = train_ds[tr], train_ds[va]
    if len(train_ds) == 0:
        raise CLIError("no training images left (check --limit and --val-split)")
    mean, std = channel_stats(train_ds.images)
    model = Model(net, shape, train_ds.class_names, mean=mean, std=std)
    say = (lambda *a: None) if args.quiet else print
    say(
        f"training {args.model} on {args.dataset or args.data}: {len(train_ds):,} images"
        + (f", {len(val_ds):,} for validation" if val_ds is not None else "")
        + f", {cfg['epochs']} epoch(s), batch {cfg['batch_size']}, {cfg['optimizer']} "
        f"lr {cfg['lr']:g}"
    )
    start = time.perf_counter()
    try:
        history = train.fit(
            model,
            train_ds,
            val_ds,
            epochs=cfg["epochs"],
            batch_size=cfg["batch_size"],
            optimizer=cfg["optimizer"],
            lr=cfg["lr"],
            schedule=cfg["schedule"],
            weight_decay=cfg["weight_decay"],
            label_smoothing=cfg["label_smoothing"],
            augment=_augment(cfg["augment"], digits),
            seed=args.seed,
            checkpoint=args.checkpoint,
            resume=args.resume,
            early_stopping=args.early_stopping,
            progress=not args.quiet,
            on_epoch_end=None if args.quiet else _epoch_line,
            history_path=args.history,
        )
    except train.TrainingDiverged as exc:
        raise CLIError(str(exc)) from exc
    wall = time.perf_counter() - start
    result = train.evaluate(model, test_ds.images, test_ds.labels, batch_size=256)
    accuracy = float(result["accuracy"])
    epochs_run = len(history)
    model.meta = {
        "model": args.model,
        **source,
        "preprocess": "mnist" if args.dataset == "mnist" else None,
        "epochs": epochs_run,
        "stopped_early": bool(history.stopped_early),
        "best_epoch": history.best_epoch,
        "wall_time_s": round(wall, 3),
        "train_images": len(train_ds),
        "test_images": len(test_ds),
        "test_accuracy": accuracy,
        "test_loss": float(result["loss"]),
        "seed": args.seed,
        "settings": {**cfg, "augment": _augment(cfg["augment"], digits)},
        "command": command_line(args),
    }
    io.save(model, args.out)
    print(
        f"test accuracy {accuracy:.2%} on {len(test_ds):,} images "
        f"after {epochs_run} epoch(s) in {wall:.1f} s; wrote {args.out}"
    )
    return 0
