"""``clearconv train --model NAME|net.toml|m.npz --dataset NAME|--data FOLDER --out m.npz``.

Builds the model (zoo name or architecture file) or loads a model file to train
further, loads the data, trains with the model's recipe (every setting can be
overridden; small data gets more steps, see :func:`small_data`), reports
per-epoch metrics and the final test accuracy, and writes one model file
holding the weights, class names, normalisation, training metadata and the
per-epoch history. ``--find-lr`` runs the learning-rate range test instead.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clearconv import train
from clearconv.cli import CLIError
from clearconv.cli import soundtext as st
from clearconv.cli._common import (
    DATASET_SHAPES,
    DATASETS,
    HELD_OUT_FRACTION,
    add_command,
    add_data_dir,
    data_root,
    folder_classes,
    held_out_split,
    load_folder,
    load_model_file,
    load_named,
    parse_shape,
    resolve_model_spec,
    skipped_line,
)
from clearconv.cli.evaluate import atomic_plot, make_plot_dir, write_plots

#: Small data: without --epochs, training takes at least this many optimizer steps.
MIN_STEPS = 200
#: Small data: without --batch-size, a batch holds at most 1/BATCH_SHARE of the
#: training images (and at least MIN_BATCH), so that an epoch has several steps.
BATCH_SHARE = 8
MIN_BATCH = 8


def add_parser(subparsers) -> None:
    # Over 80 lines: one flat add_argument per option, each with its help text.
    from clearconv import zoo

    p = add_command(
        subparsers,
        "train",
        run,
        help="train a model on a data set or an image folder and save it",
        description="Train a zoo model (or one from a .toml/.json architecture file, or a "
        "saved model file to train further) on a known data set or an image folder "
        "FOLDER/CLASS/*.png|jpg, then write a model file. Unset options come from the "
        "model's recipe. Small data: when --batch-size is not given, a batch holds at most "
        f"1/{BATCH_SHARE} of the training images (at least {MIN_BATCH}); when --epochs is not "
        f"given, the epochs are raised so that training takes at least {MIN_STEPS} optimizer "
        "steps (one line says so when this changes the recipe). Settings of an architecture "
        "file that the data replaces (input_shape, the last layer's out_features) are named "
        "on one line each.",
    )
    p.add_argument(
        "--model",
        required=True,
        help=f"zoo name ({', '.join(zoo.NAMES)}), a .toml/.json architecture file, or a "
        "model file (.npz) to continue training: same classes (fine-tuning), or a new last "
        "layer with --num-classes",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=DATASETS, help="a known data set (xo needs no files)")
    src.add_argument(
        "--data",
        metavar="FOLDER",
        help="image folder FOLDER/CLASS/*.png|jpg, recordings FOLDER/CLASS/*.wav (FOLDER/train "
        "and FOLDER/test when present), a segmentation folder FOLDER/train/images + "
        "FOLDER/train/masks, or sentences: FOLDER with train.csv and test.csv "
        "(columns text,label) or one CSV file with --val-split",
    )
    p.add_argument(
        "--out", metavar="PATH", help="model file to write (.npz); required unless --find-lr"
    )
    add_data_dir(p)
    p.add_argument(
        "--input-shape", metavar="C,H,W", help="input size for folder data (default: the model's)"
    )
    p.add_argument(
        "--num-classes",
        type=int,
        metavar="K",
        help="with a model file as --model: replace its last Linear layer by a new one with "
        "K outputs (K = the data's classes), keeping the other weights",
    )
    p.add_argument(
        "--epochs",
        type=int,
        help="passes over the training data; for small data, raised to at least "
        f"{MIN_STEPS} optimizer steps",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        help=f"images per step; for small data, at most 1/{BATCH_SHARE} of the training images",
    )
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
    p.add_argument(
        "--find-lr",
        action="store_true",
        help="learning-rate range test instead of training (as fastai's lr_find): the lr grows "
        "from 1e-7 to 10 over 200 steps until the loss diverges; prints the suggested --lr "
        "and saves no model",
    )
    p.add_argument(
        "--plots",
        metavar="DIR",
        help="write PNGs to DIR: training curves, confusion matrix and worst mistakes on the "
        "test set (with --find-lr: the loss against the learning rate)",
    )
    st.add_text_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-epoch lines")
    # data-parallel ranks (clearconv.distributed)
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="train with N processes on this machine (mpiexec; one thread each unless --threads)",
    )
    p.add_argument(
        "--sync-batchnorm",
        action="store_true",
        help="with several ranks: BatchNorm statistics of the whole batch (default: per rank)",
    )


def _check_args(args: argparse.Namespace) -> None:
    positive = {"--epochs": args.epochs, "--batch-size": args.batch_size, "--limit": args.limit}
    positive["--early-stopping"] = args.early_stopping
    positive["--num-classes"] = args.num_classes
    positive["--workers"] = args.workers
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
    if args.num_classes is not None and not is_model_file(args.model):
        raise CLIError(
            f"--num-classes is for a model file (.npz) given as --model; {args.model}'s last "
            "layer is sized to the data's classes already"
        )
    if args.out is None and not args.find_lr:
        raise CLIError("--out PATH is required: the model file to write (.npz)")
    # Check every file the run writes now: a folder found unwritable after
    # hours of training would lose them.
    if args.out is not None:
        check_output("--out", args.out)
    if args.checkpoint:
        check_output("--checkpoint", args.checkpoint, must_exist=args.resume)
    if args.history:
        check_output("--history", args.history)
    if args.plots is not None:
        make_plot_dir(args.plots)


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


def small_data(cfg: dict, n: int, args: argparse.Namespace) -> str | None:
    """Fit the recipe to ``n`` training images (in place); a line saying what changed, or None.

    The recipes are made for tens of thousands of images: one epoch of
    batch 64 over 64 images is a single optimizer step, which learns nothing.
    Settings given on the command line are kept as they are.

    Example
    -------
    >>> cfg = {"epochs": 1, "batch_size": 64}
    >>> line = small_data(cfg, 64, argparse.Namespace(epochs=None, batch_size=None))
    >>> cfg, line.split(" (at least")[0]
    ({'epochs': 25, 'batch_size': 8}, 'small data (64 training images): batch 8, 25 epochs')
    """
    before = (cfg["epochs"], cfg["batch_size"])
    if args.batch_size is None:
        cfg["batch_size"] = min(cfg["batch_size"], max(MIN_BATCH, n // BATCH_SHARE))
    steps = max(1, math.ceil(n / cfg["batch_size"]))
    if args.epochs is None and cfg["epochs"] * steps < MIN_STEPS:
        cfg["epochs"] = math.ceil(MIN_STEPS / steps)
    if (cfg["epochs"], cfg["batch_size"]) == before:
        return None
    if cfg["epochs"] == before[0]:
        # only the batch changed (e.g. --epochs was given): a minimum of steps was not applied
        return (
            f"small data ({n:,} training images): batch {cfg['batch_size']}, {cfg['epochs']} "
            f"epochs (a batch holds at most 1/{BATCH_SHARE} of the images; "
            "set --batch-size to choose)"
        )
    return (
        f"small data ({n:,} training images): batch {cfg['batch_size']}, {cfg['epochs']} "
        f"epochs (at least {MIN_STEPS} optimizer steps; set --epochs or --batch-size to choose)"
    )


def is_model_file(spec: str) -> bool:
    """``--model`` names a saved model file (to train further) rather than an architecture."""
    return Path(spec).suffix.lower() == ".npz"


def _notice(kind: str, message: str) -> None:
    """One line on stderr that is not an error: ``clearconv train: note: ...``."""
    print(f"clearconv train: {kind}: {message}", file=sys.stderr, flush=True)


def _arch_notes(path: str, data_shape: tuple | None, shape: tuple, classes: int, what: str):
    """Lines saying which settings of an architecture file the data replaced, and why.

    Layer sizes are inferred from the input, so a net written for 28x28 images
    also runs on 9x9 ones; the notes make sure this is never silent.
    """
    from clearconv import zoo

    arch = zoo.read_architecture(path)
    notes = []
    written = arch.get("input_shape")
    if data_shape is not None and written is not None and tuple(written) != tuple(shape):
        notes.append(
            f"{path} says input_shape = {list(written)}, but {what} images are "
            f"{'x'.join(map(str, data_shape))}: the net is built for {tuple(shape)} "
            "(layer sizes follow the input)"
        )
    found = zoo.classifier(arch["layers"])
    if found is not None:
        last, key = found
        out = last.get(key)
        if out is not None and out != classes:
            notes.append(
                f"{path} says {key} = {out} for the last {last['type']} layer, but {what} has "
                f"{classes} classes: it gets {classes} outputs"
            )
    return notes


def _new_head(base, k: int, rng: np.random.Generator):
    """``base``'s net with its classifier replaced by a fresh one with ``k`` outputs: the
    last top-level Linear layer, or a segmentation net's closing Conv2d (only
    upsampling after it)."""
    from clearconv.nn.config import from_config, to_config

    cfg = to_config(base.net)
    layers = (cfg.get("layers") if cfg.get("type") == "Sequential" else None) or []
    linear = [i for i, layer in enumerate(layers) if layer.get("type") == "Linear"]
    convs = [i for i, layer in enumerate(layers) if layer.get("type") == "Conv2d"]
    pixelwise = not linear and bool(convs)
    pixelwise = pixelwise and all(la.get("type") == "Upsample" for la in layers[convs[-1] + 1 :])
    if not (linear or pixelwise):
        raise CLIError(
            "--num-classes: the model has no top-level Linear layer (or closing Conv2d) to replace"
        )
    i = convs[-1] if pixelwise else linear[-1]
    layers[i]["out_channels" if pixelwise else "out_features"] = k
    net = from_config(cfg, base.input_shape, rng=rng)
    kept = {n: v for n, v in base.state_dict().items() if not n.startswith(f"{i}.")}
    net.load_state_dict(kept, strict=False)  # every weight but the new layer's
    return net


def build_net(spec: str, base, shape, data_shape, class_names: list[str], what: str, args, rng):
    """``(net, input_shape, notes)``: the net to train on data with ``class_names``.

    ``base`` (a loaded model file) keeps its weights; it must have the same
    classes, or ``--num-classes`` gives it a new last layer. Otherwise the
    zoo model or architecture file is built for the data; ``notes`` say what
    of an architecture file the data replaced.
    """
    from clearconv import zoo

    k = len(class_names)
    if base is not None:
        if args.num_classes is None:
            if list(base.class_names) != list(class_names):
                raise CLIError(
                    f"{args.model} has {base.num_classes} classes "
                    f"({_names(base.class_names)}) but {what} has {k} ({_names(class_names)}): "
                    f"add --num-classes {k} to replace its last layer with a new {k}-class one"
                )
            return base.net, tuple(base.input_shape), []
        if args.num_classes != k:
            raise CLIError(f"--num-classes {args.num_classes}, but {what} has {k} classes")
        return _new_head(base, k, rng), tuple(base.input_shape), []
    net, built = zoo.build(spec, input_shape=shape, num_classes=k, rng=rng)
    notes = [] if spec in zoo.NAMES else _arch_notes(spec, data_shape, built, k, what)
    return net, tuple(built), notes


def _names(names, shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def load_data(spec: str, args: argparse.Namespace, rng: np.random.Generator, base=None):
    """``(net, input_shape, train, test, source, notes)`` for the model and data in ``args``.

    ``source`` (recorded in the model file) names the data; for a folder
    without ``FOLDER/test`` it also says which images were held out, so that
    ``evaluate`` can test on the same ones. ``base`` is a model file to train
    further (its input shape and classes must fit the data).
    """
    shape = parse_shape(args.input_shape)
    if base is not None and shape is not None and shape != tuple(base.input_shape):
        raise CLIError(f"--input-shape {shape} does not match {args.model}'s {base.input_shape}")
    if args.dataset == "fsdd":
        return _load_fsdd_data(spec, args, rng, base, shape)
    if args.dataset is not None:
        ds_shape = DATASET_SHAPES[args.dataset]
        if shape is not None and shape != ds_shape:
            raise CLIError(f"--input-shape {shape} does not match {args.dataset}'s {ds_shape}")
        if base is not None and tuple(base.input_shape) != ds_shape:
            raise CLIError(
                f"{args.model} takes input {tuple(base.input_shape)} but {args.dataset} "
                f"images are {ds_shape}"
            )
        root = data_root(args)
        download = not args.no_download
        train = load_named(
            args.dataset, root, "train", seed=args.seed, download=download, limit=args.limit
        )
        test = load_named(args.dataset, root, "test", seed=args.seed, download=download)
        net, built, notes = build_net(
            spec, base, ds_shape, ds_shape, train.class_names, args.dataset, args, rng
        )
        source = {"dataset": args.dataset, "data": str(root)}
        return net, built, train, test, source, notes
    return _load_folder_data(spec, args, rng, base, shape)


def _load_folder_data(
    spec: str, args: argparse.Namespace, rng: np.random.Generator, base, shape
) -> tuple:
    """:func:`load_data` for ``--data FOLDER``: refuses what ImageFolder does, skips bad files."""
    from clearconv.data import IMAGE_EXTENSIONS, image_folder_split

    root = Path(args.data)
    if st.is_text_data(root):
        return _load_text_data(spec, args, rng, base, root)
    classes = folder_classes(root)
    if st.is_wav_folder(root):
        return _load_wav_data(spec, args, rng, base, root, classes)
    folder = image_folder_split(root, "train")
    if len(classes) < 2:
        raise CLIError(
            f"{folder}: one class folder ({classes[0]}); a classifier needs at least two, "
            f"one folder per class ({folder}/CLASS/*.png|jpg)"
        )
    net, built, notes = build_net(spec, base, shape, None, classes, str(root), args, rng)
    skipped: list = []
    train = load_folder(root, "train", built, classes, skipped)
    counts = np.bincount(train.labels, minlength=len(classes))
    if len(train) == 0 and skipped:
        raise CLIError(
            f"{folder}: none of its {len(skipped)} image files could be read "
            f"(first: {skipped[0][1]})"
        )
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise CLIError(
            f"{folder}: no readable images in class folder(s) {', '.join(empty)} (expected "
            f"{'|'.join(IMAGE_EXTENSIONS)}); add images or remove the folder(s)"
        )
    found = f"found {len(train):,} images in {len(classes)} classes: " + ", ".join(
        f"{c} ({n:,})" for c, n in zip(classes, counts, strict=True)
    )
    if (root / "test").is_dir():
        test = load_folder(root, "test", built, classes, skipped)
        held_out = None
        found += f"; {len(test):,} test images in {root / 'test'}"
    else:
        held_out = {"seed": args.seed, "images": len(train), "stratified": True}
        tr, te = held_out_split(train.labels, args.seed)
        train, test = train[tr], train[te]
        if len(train) == 0 or len(test) == 0:
            raise CLIError(f"{root}: too few images to hold out a test set ({len(tr) + len(te)})")
        found += f"; {len(test):,} held out for testing ({HELD_OUT_FRACTION:.0%} of each class)"
    if skipped:
        _notice("warning", skipped_line(skipped))
    if not args.quiet:
        print(found, flush=True)
    if args.limit is not None:
        train = train[: args.limit]
    source = {"dataset": "folder", "data": str(root.resolve()), "held_out": held_out}
    return net, built, train, test, source, notes


def _load_on_ranks(spec: str, args: argparse.Namespace, rng: np.random.Generator, base, dist):
    """:func:`load_data` on every rank, where only rank 0 downloads missing files
    (two ranks writing one download would garble it); the others then read them."""
    if dist is None or args.no_download:
        return load_data(spec, args, rng, base)
    try:  # the usual case: every rank finds the data
        offline = argparse.Namespace(**{**vars(args), "no_download": True})
        found = load_data(spec, offline, rng, base)
    except CLIError:
        found = None
    if dist.sum([found is None])[0] == 0:
        return found
    if dist.is_root:
        found = found or load_data(spec, args, rng, base)
    dist.comm.Barrier()  # rank 0 has the files (or has failed and aborted the job)
    return found or load_data(spec, args, rng, base)


def _load_fsdd_data(spec: str, args: argparse.Namespace, rng, base, shape) -> tuple:
    """:func:`load_data` for ``--dataset fsdd``: the features follow the model."""
    feats = st.features_for(spec, base)
    want = st.features_shape(feats)
    if shape is not None and shape != want:
        raise CLIError(f"--input-shape {shape} does not match {spec}'s fsdd input {want}")
    root = data_root(args)
    train = st.load_fsdd_split(root, "train", feats)
    test = st.load_fsdd_split(root, "test", feats)
    if args.limit is not None:
        train = train[: args.limit]
    net, built, notes = build_net(spec, base, want, want, train.class_names, "fsdd", args, rng)
    source = {"dataset": "fsdd", "data": str(root), **st.meta_of(features=feats)}
    return net, built, train, test, source, notes


def _load_wav_data(spec: str, args: argparse.Namespace, rng, base, root: Path, classes) -> tuple:
    """:func:`load_data` for a folder of recordings ``FOLDER/CLASS/*.wav``."""
    feats = st.features_for(spec, base)
    want = st.features_shape(feats)
    net, built, notes = build_net(spec, base, want, want, classes, str(root), args, rng)
    skipped: list = []
    train = st.load_wav_folder(root, "train", feats, classes, skipped)
    if len(train) == 0:
        raise CLIError(f"{root}: none of its recordings could be read")
    found = f"found {len(train):,} recordings in {len(classes)} classes"
    if (root / "test").is_dir():
        test = st.load_wav_folder(root, "test", feats, classes, skipped)
        held_out = None
    else:
        held_out = {"seed": args.seed, "images": len(train), "stratified": True}
        tr, te = held_out_split(train.labels, args.seed)
        train, test = train[tr], train[te]
        found += f"; {len(test):,} held out for testing ({HELD_OUT_FRACTION:.0%} of each class)"
    if skipped:
        _notice("warning", skipped_line(skipped))
    if not args.quiet:
        print(found, flush=True)
    if args.limit is not None:
        train = train[: args.limit]
    source = {"dataset": "folder", "data": str(root.resolve()), "held_out": held_out,
              **st.meta_of(features=feats)}  # fmt: skip
    return net, built, train, test, source, notes


def _load_text_data(spec: str, args: argparse.Namespace, rng, base, root: Path) -> tuple:
    """:func:`load_data` for sentences: ``FOLDER/train.csv`` and ``test.csv``, or one CSV."""
    from clearconv import zoo
    from clearconv.nn.config import from_config

    if args.min_count < 1 or args.max_len < 1:
        raise CLIError("--min-count and --max-len must be >= 1")
    if base is not None:
        raise CLIError("training a text model file further is not supported; start from textcnn")
    if spec not in zoo.NAMES or zoo.DEFAULT_INPUT_SHAPES[spec] != (56,):
        raise CLIError(f"sentences need a text model (textcnn), not {spec}")
    split = 0.0 if root.is_dir() else args.val_split  # one CSV: --val-split is the test set
    if split and args.early_stopping is not None:
        raise CLIError(
            f"--early-stopping needs validation data apart from the test set: {root} is one "
            "CSV file whose --val-split share is the test set; give a folder with train.csv "
            "and test.csv"
        )
    train, test, vocab, source = st.load_text_data(
        root, split, args.seed, args.min_count, args.max_len
    )
    cfg = zoo.config(spec, num_classes=len(train.class_names), vocab_size=len(vocab))
    if args.embeddings:
        cfg["layers"][0]["embedding_dim"] = st.embedding_dim(args.embeddings)
    net = from_config(cfg, (args.max_len,), rng=rng)
    line = st.init_embedding(net, rng, vocab, args.embeddings)
    if line and not args.quiet:
        print(line, flush=True)
    if not args.quiet:
        print(f"{len(train):,} training and {len(test):,} test sentences, "
              f"{len(vocab):,} words in the vocabulary", flush=True)  # fmt: skip
    if args.limit is not None:
        train = train[: args.limit]
    return net, (args.max_len,), train, test, {**source, **st.meta_of(vocab=vocab)}, []


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
    # --workers N starts N ranks; under mpiexec every rank trains, and an error on
    # one stops them all (Distributed.run) instead of leaving them waiting.
    from clearconv.distributed import Distributed, launched_size

    several = (args.workers or 1) > 1 or launched_size() > 1
    if args.find_lr and several:
        raise CLIError("--find-lr runs in one process: leave out --workers (and mpiexec)")
    if (args.workers or 1) > 1:
        _check_args(args)
        from clearconv.cli._workers import spawn

        return spawn(args)
    if launched_size() == 1:
        return _run(args, None)
    dist = Distributed(sync_batchnorm=args.sync_batchnorm)
    return dist.run(_run, args, dist)


def fine_tuned_from(args: argparse.Namespace, base) -> dict:
    """What a model file trained further from ``base`` records of it."""
    return {
        "file": str(args.model),
        "classes": list(base.class_names),
        "new_head": args.num_classes is not None,
    }


def _model(net, shape: tuple, train_ds, base):
    """The Model to train: normalised as ``base`` was, or by the training images'
    channel statistics (token indices, a text model's input, are not scaled)."""
    from clearconv.data import channel_stats
    from clearconv.model import Model

    if base is not None:  # keep the normalisation the weights were trained with
        return Model(net, shape, train_ds.class_names, mean=base.mean, std=base.std)
    if len(shape) == 1:
        return Model(net, shape, train_ds.class_names)
    mean, std = channel_stats(train_ds.images)
    return Model(net, shape, train_ds.class_names, mean=mean, std=std)


def _meta(args, name: str, source: dict, model, train_ds, test_ds, cfg: dict, base, notes) -> dict:
    """What the model file records of how it was trained (before the run's figures)."""
    meta = {
        "model": name or args.model,
        **source,
        "preprocess": "mnist" if args.dataset == "mnist" else None,
        "train_images": len(train_ds),
        "test_images": len(test_ds),
        "class_counts": np.bincount(train_ds.labels, minlength=model.num_classes).tolist(),
        "seed": args.seed,
        "settings": {**cfg, "augment": _augment(cfg["augment"], args.dataset in ("mnist", "xo"))},
        "command": command_line(args),
    }
    if base is not None:
        meta["fine_tuned_from"] = fine_tuned_from(args, base)
    if notes:
        meta["adapted"] = notes
    return meta


def _run(args: argparse.Namespace, dist) -> int:
    """One straight sequence: check, load, build, train, test, save. ``dist``
    (clearconv.distributed): every rank trains; rank 0 alone prints and writes."""
    from clearconv.data import stratified_split

    _check_args(args)
    from clearconv.data.segment import is_segmentation_folder

    if args.data is not None and is_segmentation_folder(args.data):  # images with masks
        from clearconv.cli import _segment

        return _segment.train(args, dist)
    base = load_model_file(args.model) if is_model_file(args.model) else None
    spec = args.model if base is not None else resolve_model_spec(args.model)
    rng = np.random.default_rng(args.seed)
    net, shape, train_ds, test_ds, source, notes = _load_on_ranks(spec, args, rng, base, dist)
    root = dist is None or dist.is_root
    for note in notes if root else ():
        _notice("note", note)
    # a model file trains further with the recipe of the model it was made from
    name = str(base.meta.get("model", "")) if base is not None else spec
    cfg = settings(name, args)
    val_ds = None
    one_csv = source.get("dataset") == "text" and source.get("held_out")  # split off already
    if args.val_split > 0 and not one_csv:
        tr, va = stratified_split(train_ds.labels, args.val_split, rng)
        train_ds, val_ds = train_ds[tr], train_ds[va]
    if len(train_ds) == 0:
        raise CLIError("no training images left (check --limit and --val-split)")
    small = small_data(cfg, len(train_ds), args)
    model = _model(net, shape, train_ds, base)
    say = (lambda *a: None) if args.quiet or not root else print
    noun = "sentences" if "vocab" in source else "recordings" if "features" in source else "images"
    if small:
        say(small)
    if args.find_lr:
        return _find_lr(model, train_ds, cfg, args)
    say(
        f"training {args.model} on {args.dataset or args.data}: {len(train_ds):,} {noun}"
        + (f", {len(val_ds):,} for validation" if val_ds is not None else "")
        + f", {cfg['epochs']} epoch(s), batch {cfg['batch_size']}, {cfg['optimizer']} "
        f"lr {cfg['lr']:g}"
    )
    meta = _meta(args, name, source, model, train_ds, test_ds, cfg, base, notes)
    start = time.perf_counter()
    history = _train(args, model, train_ds, val_ds, cfg, meta, dist)
    wall = time.perf_counter() - start
    evaluate = train.evaluate if dist is None else dist.evaluate  # sharded over the ranks
    result = test_on_ranks(
        lambda: evaluate(model, test_ds.images, test_ds.labels, batch_size=256),
        args, model, {**meta, "epochs": len(history)}, dist,
    )  # fmt: skip
    if result is None:  # a rank other than 0: rank 0 alone writes
        return 0
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
        "history": history.records,
    }
    line = (
        f"test accuracy {accuracy:.2%} on {len(test_ds):,} {noun} "
        f"after {epochs_run} epoch(s) in {wall:.1f} s"
    )
    try:
        saved = save_model(model, args.out)  # before the plots: a failed plot must not lose it
    except CLIError:
        print(line)  # the result still counts: the error says where the model went
        raise
    if args.plots is not None:
        for path in write_plots(args.plots, model, test_ds, history.records):
            say(f"wrote {path}")
    print(f"{line}; wrote {saved}")
    return 0


def test_on_ranks(evaluate, args: argparse.Namespace, model, meta: dict, dist) -> dict | None:
    """The test figures, ``evaluate()`` (a collective under MPI), then on several ranks
    the per-step split (another), printed by rank 0. None on the other ranks, which
    stop there. A Ctrl-C while testing first saves the trained model (with ``meta``)."""
    root = dist is None or dist.is_root
    try:
        result = evaluate()
    except KeyboardInterrupt:  # the training is done: keep it
        if root:
            model.meta = {**meta, "interrupted": True}
            saved = save_model(model, args.out)
            print(f"interrupted while testing: wrote {saved}", file=sys.stderr)
        raise
    if dist is None:
        return result
    split = dist.timings()
    if not root:
        return None
    if not args.quiet:
        print(
            f"{dist.size} ranks, per step: compute {split['compute'] * 1e3:.2f} ms "
            f"(BatchNorm sync {split['bn_sync'] * 1e3:.2f}), allreduce "
            f"{split['allreduce'] * 1e3:.2f} ms (idle {split['idle'] * 1e3:.2f}, "
            f"transfer {split['transfer'] * 1e3:.2f})"
        )
    return result


def _train(
    args: argparse.Namespace, model, train_ds, val_ds, cfg: dict, meta: dict, dist=None, **fit_args
):
    """``train.fit`` with the command's settings (over the ranks of ``dist`` when
    given); on Ctrl-C, save and say how to go on (rank 0). ``fit_args`` replace
    fit's arguments (segmentation: its paired augmentation, an epoch line with IoU)."""
    # Ctrl-C always leaves something to go on from: the checkpoint, or (without
    # --checkpoint) the last finished epoch's weights at --out plus a checkpoint
    # written only then, so that the printed command resumes exactly.
    ckpt = args.checkpoint or str(interrupt_checkpoint(args.out))
    ckpt_before = _mtime(ckpt)
    last = LastEpoch(keep=not args.checkpoint)
    root = dist is None or dist.is_root
    kwargs = dict(
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
        on_epoch_end=None if args.quiet or not root else _epoch_line,
        history_path=args.history,
        callbacks=[last],
        distributed=dist,
    )
    try:
        history = train.fit(model, train_ds, val_ds, **{**kwargs, **fit_args})
    except train.TrainingDiverged as exc:
        raise CLIError(str(exc)) from exc
    except KeyboardInterrupt:
        if root:
            model.meta = {**meta, "interrupted": True, "epochs": last.epoch}
            _interrupted(args, model, last, ckpt, written=_mtime(ckpt) != ckpt_before)
        raise
    return history


def _find_lr(model, train_ds, cfg: dict, args: argparse.Namespace) -> int:
    """``--find-lr``: the range test on the training data; prints the suggestion, saves no model."""
    from clearconv.lr_finder import find_lr, plot_lr_finder

    if args.out is not None:
        print(f"--find-lr trains no model: {args.out} is not written", file=sys.stderr)
    r = find_lr(
        model,
        train_ds,
        batch_size=cfg["batch_size"],
        optimizer=cfg["optimizer"],
        weight_decay=cfg["weight_decay"],
        seed=args.seed,
    )
    stop = "the loss diverged" if r.diverged else "the end of the sweep"
    print(
        f"lr finder: {len(r.lrs)} steps from {r.lrs[0]:.1e} to {r.lrs[-1]:.2g} ({stop}), "
        f"batch {cfg['batch_size']}, {cfg['optimizer']}"
    )
    why, other = lr_reading(r)
    print(f"suggested --lr {r.suggestion:.2g} ({why}); {other}")
    if args.plots is not None:
        path = Path(args.plots) / "lr_finder.png"
        atomic_plot(lambda tmp: plot_lr_finder(r, tmp), path)
        print(f"wrote {path}")
    return 0


def lr_reading(r) -> tuple[str, str]:
    """``(why, other)``: why the range test's suggestion is what it is, and what the
    other reading of the curve says."""
    if r.diverged:
        why = f"a tenth of {r.lr_min * 10:.2g}, where the loss was lowest"
        return why, f"steepest descent at {r.lr_steep:.2g}"
    why = "the steepest descent of the loss"
    if int(np.argmin(r.losses)) == len(r.losses) - 1:
        return why, "the loss was still falling at the end, so its lowest point is no guide"
    return why, (f"the loss rose after its lowest point at {r.lr_min * 10:.2g} but stayed under "
                 f"4x it: a tenth of that, {r.lr_min:.2g}, is the cautious choice")  # fmt: skip


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
