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
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clearconv import train
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
        help="image folder FOLDER/CLASS/*.png|jpg (FOLDER/train and FOLDER/test when present)",
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
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="checkpoint written after each epoch (without it, Ctrl-C writes OUT.ckpt.npz)",
    )
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
    # Check every file the run writes now: a folder found unwritable after
    # hours of training would lose them.
    check_output("--out", args.out)
    if args.checkpoint:
        check_output("--checkpoint", args.checkpoint, must_exist=args.resume)
    if args.history:
        check_output("--history", args.history)


def check_output(flag: str, path: str, must_exist: bool = False) -> None:
    """Raise a one-line CLIError unless a file can be written at ``path``.

    ``must_exist``: the file is read first (``--resume``), so it must be there.
    """
    target = Path(path)
    if target.is_dir():
        raise CLIError(f"{flag} {path} is a folder; give a file name, e.g. {target / 'model.npz'}")
    if must_exist and not target.is_file():
        raise CLIError(f"{flag} {path}: no such file to resume from")
    folder = target.parent
    if not folder.is_dir():
        raise CLIError(f"{flag} {path}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=".clearconv-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CLIError(f"{flag} {path}: cannot write in {folder} ({exc.strerror or exc})") from exc


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
    lo, hi = record.get("lr_min", record["lr"]), record.get("lr_max", record["lr"])
    lr = f"{record['lr']:.3g}" if lo == hi else f"{lo:.3g}..{hi:.3g}"
    parts.append(f"lr {lr}  {record['seconds']:.1f} s")
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
    from clearconv.data import channel_stats, train_val_split
    from clearconv.model import Model

    _check_args(args)
    spec = resolve_model_spec(args.model)
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
    meta = {
        "model": args.model,
        **source,
        "preprocess": "mnist" if args.dataset == "mnist" else None,
        "train_images": len(train_ds),
        "test_images": len(test_ds),
        "seed": args.seed,
        "settings": {**cfg, "augment": _augment(cfg["augment"], digits)},
        "command": command_line(args),
    }
    start = time.perf_counter()
    history = _train(args, model, train_ds, val_ds, cfg, meta)
    wall = time.perf_counter() - start
    try:
        result = train.evaluate(model, test_ds.images, test_ds.labels, batch_size=256)
    except KeyboardInterrupt:  # the training is done: keep it
        model.meta = {**meta, "epochs": len(history), "interrupted": True}
        print(f"interrupted while testing: wrote {save_model(model, args.out)}", file=sys.stderr)
        raise
    accuracy = float(result["accuracy"])
    epochs_run = len(history)
    model.meta = {
        **meta,
        "epochs": epochs_run,
        "stopped_early": bool(history.stopped_early),
        "best_epoch": history.best_epoch,
        "wall_time_s": round(wall, 3),
        "test_accuracy": accuracy,
        "test_loss": float(result["loss"]),
    }
    line = (
        f"test accuracy {accuracy:.2%} on {len(test_ds):,} images "
        f"after {epochs_run} epoch(s) in {wall:.1f} s"
    )
    try:
        saved = save_model(model, args.out)
    except CLIError:
        print(line)  # the result still counts: the error says where the model went
        raise
    print(f"{line}; wrote {saved}")
    return 0


def _train(args: argparse.Namespace, model, train_ds, val_ds, cfg: dict, meta: dict):
    """``train.fit`` with the command's settings; on Ctrl-C, save and say how to go on."""
    # Ctrl-C always leaves something to go on from: the checkpoint, or (without
    # --checkpoint) the last finished epoch's weights at --out plus a checkpoint
    # written only then, so that the printed command resumes exactly.
    ckpt = args.checkpoint or str(interrupt_checkpoint(args.out))
    ckpt_before = _mtime(ckpt)
    last = LastEpoch(keep=not args.checkpoint)
    try:
        history = train.fit(
            model,
            train_ds,
            val_ds,
            epochs=cfg["epochs"],
            batch_size=cfg["batch_size"],
            optimizer=train.make_optimizer(
                cfg["optimizer"], model.parameters(), cfg["lr"], cfg["weight_decay"]
            ),
            scheduler=train.make_schedule(cfg["schedule"], cfg["epochs"]),
            label_smoothing=cfg["label_smoothing"],
            augment=meta["settings"]["augment"],
            seed=args.seed,
            checkpoint=ckpt,
            resume=args.resume,
            checkpoint_every_epoch=bool(args.checkpoint),
            early_stopping=args.early_stopping,
            progress=False if args.quiet else train.ProgressBar(lines=False),
            on_epoch_end=None if args.quiet else _epoch_line,
            history_path=args.history,
            callbacks=[last],
        )
    except train.TrainingDiverged as exc:
        raise CLIError(str(exc)) from exc
    except KeyboardInterrupt:
        model.meta = {**meta, "interrupted": True, "epochs": last.epoch}
        _interrupted(args, model, last, ckpt, written=_mtime(ckpt) != ckpt_before)
        raise
    return history


class LastEpoch(train.Callback):
    """Keeps a copy of the weights after each finished epoch (``keep=False``: nothing)."""

    def __init__(self, keep: bool) -> None:
        self.keep = keep
        self.epoch = 0
        self.state: dict[str, np.ndarray] | None = None

    def on_epoch_end(self, s: train.TrainState) -> None:
        self.epoch = s.epoch + 1
        if self.keep:
            self.state = {k: np.array(v) for k, v in s.model.state_dict().items()}


def interrupt_checkpoint(out: str) -> Path:
    """Where an interrupted run without ``--checkpoint`` saves its state: beside
    ``--out`` (``m.npz`` -> ``m.ckpt.npz``)."""
    path = Path(out)
    return path.with_name(f"{path.stem}.ckpt.npz")


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def _interrupted(
    args: argparse.Namespace, model, last: LastEpoch, ckpt: str, written: bool
) -> None:
    """After Ctrl-C: save what the run has and print the command that goes on from it."""
    if last.state is not None:
        model.load_state_dict(last.state)
        kept = f"wrote {save_model(model, args.out)} (the weights after epoch {last.epoch})"
        if written:
            kept += f" and the run's state to {ckpt}"
    elif args.checkpoint:
        kept = f"the checkpoint {ckpt} holds the run"
    else:
        kept = "no epoch had finished: nothing was written to --out"
    if Path(ckpt).is_file() and (written or args.checkpoint):
        again = argparse.Namespace(**{**vars(args), "checkpoint": ckpt, "resume": True})
        print(f"interrupted: {kept}; to resume:\n  {command_line(again)}", file=sys.stderr)
    else:
        print(f"interrupted: {kept}; to start again:\n  {command_line(args)}", file=sys.stderr)


def save_model(model, out: str) -> Path:
    """Write the model at ``out``; if that fails now (the disk filled, the folder
    went away), write it to a new file in the current folder or the temporary
    folder instead and say where, so that the training is not lost."""
    from clearconv import io

    try:
        return io.save(model, out)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        for folder in (Path.cwd(), Path(tempfile.gettempdir())):
            try:
                fd, name = tempfile.mkstemp(prefix=f"{Path(out).stem}-", suffix=".npz", dir=folder)
                os.close(fd)
                saved = io.save(model, name)
            except OSError:
                continue
            raise CLIError(
                f"cannot write {out} ({reason}); the model was saved to {saved} instead"
            ) from exc
        raise CLIError(
            f"cannot write {out} ({reason}), nor a copy in {Path.cwd()} or {tempfile.gettempdir()}"
        ) from exc
