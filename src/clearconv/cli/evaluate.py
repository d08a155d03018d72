"""``clearconv evaluate m.npz [--dataset NAME | --data FOLDER]``: accuracy, per-class, confusion.

Without ``--dataset``/``--data`` the data the model file records is used (the
data set, or the folder and the images training held out). ``--plots DIR``
draws the confusion matrix, the worst mistakes and the training curves.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from clearconv.cli import CLIError
from clearconv.cli import soundtext as st
from clearconv.cli._common import (
    DATASET_SHAPES,
    DATASETS,
    HELD_OUT_FRACTION,
    add_command,
    add_data_dir,
    confusion_table,
    data_root,
    format_table,
    held_out_split,
    load_folder,
    load_model_file,
    load_named,
    print_json,
    skipped_line,
)


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "evaluate",
        run,
        help="test a model file on a data set: accuracy, per-class scores, confusion matrix",
        description="Evaluate a model file on the test split of a named data set, or on an "
        "image folder (FOLDER/test when it exists, else all of FOLDER; for the folder the "
        "model was trained on, the images training held out). Without --dataset and --data, "
        "the data recorded in the model file is used (for xo, drawn with the training seed).",
    )
    p.add_argument("model", metavar="MODEL.npz", help="model file written by `clearconv train`")
    src = p.add_mutually_exclusive_group()
    src.add_argument(
        "--dataset",
        choices=DATASETS,
        help="a known data set (its test split; default: the model file's)",
    )
    src.add_argument(
        "--data",
        metavar="FOLDER",
        help="image folder FOLDER/CLASS/*.png|jpg (default: the model file's)",
    )
    add_data_dir(p)
    p.add_argument(
        "--split",
        choices=("train", "test"),
        default="test",
        help="which split of --dataset to use (default test)",
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="use the first N images")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch (default 256)")
    p.add_argument("--no-download", action="store_true", help="never download a missing data set")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--plots",
        metavar="DIR",
        help="write PNGs to DIR: confusion.png, mistakes.png (the most confident wrong "
        "answers) and curves.png (training curves from the model file or --history)",
    )
    p.add_argument(
        "--history",
        metavar="PATH",
        help="per-epoch metrics (.csv/.json from `train --history`) for curves.png "
        "(default: the history stored in the model file)",
    )


def recorded_data(model, args: argparse.Namespace) -> str | None:
    """Fill ``args.dataset``/``args.data`` from the model file when neither is given.

    Returns a line saying which data that is (``None`` when the command line
    chose). An explicit ``--data-dir`` still overrides the recorded root.
    """
    if args.dataset is not None or args.data is not None:
        return None
    meta = model.meta or {}
    name, where = meta.get("dataset"), meta.get("data")
    if name in ("folder", "text") and where:
        if not Path(where).exists():
            raise CLIError(
                f"{args.model} was trained on the folder {where}, which is not there any "
                "more: give --data FOLDER"
            )
        args.data = where
        return f"data: {where}, recorded in {args.model}"
    if name in DATASETS:
        args.dataset = name
        if args.data_dir is None and where and Path(where).is_dir():
            args.data_dir = where
        if name == "xo":  # the X/O test set is drawn: with the seed training used
            args.seed = int(meta.get("seed", args.seed))
        return f"data: {name} ({args.split} split), recorded in {args.model}"
    raise CLIError(
        f"{args.model} does not record the data it was trained on: give --dataset NAME or "
        "--data FOLDER"
    )


def load_eval_data(model, args: argparse.Namespace):
    """The evaluation set for ``model``: ``--dataset``'s split or ``--data``'s test images."""
    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be a positive number of images, got {args.limit}")
    if args.data is not None and st.is_text_data(Path(args.data)):
        ds = st.text_eval_data(model, Path(args.data))
        return ds if args.limit is None else ds[: args.limit]
    if args.data is not None and st.model_features(model) is not None:
        return _wav_eval_data(model, Path(args.data), args.limit)
    if args.dataset == "fsdd":
        feats = st.model_features(model)
        if feats is None:
            raise CLIError(f"{args.model} does not read sound (its file records no audio features)")
        ds = st.load_fsdd_split(data_root(args), args.split, feats)
        return ds if args.limit is None else ds[: args.limit]
    if args.data is not None:
        root = Path(args.data)
        if not root.is_dir():
            raise CLIError(f"{root}: no such folder (expected FOLDER/CLASS/*.png|jpg)")
        skipped: list = []
        ds = load_folder(root, "test", model.input_shape, model.class_names, skipped)
        if skipped:
            print(f"clearconv evaluate: warning: {skipped_line(skipped)}", file=sys.stderr)
        if len(ds) == 0:
            raise CLIError(f"{root}: none of its {len(skipped)} image files could be read")
        held_out = (model.meta or {}).get("held_out")
        if (
            not (root / "test").is_dir()
            and held_out
            and model.meta.get("data") == str(root.resolve())
            and held_out.get("images") == len(ds)
        ):
            # the folder the model was trained on: test on the images training held out
            ds = ds[_held_out(ds.labels, held_out)]
        return ds if args.limit is None else ds[: args.limit]
    shape = DATASET_SHAPES[args.dataset]
    if tuple(model.input_shape) != shape:
        raise CLIError(
            f"{args.model} takes input {tuple(model.input_shape)} but {args.dataset} "
            f"images are {shape}"
        )
    ds = load_named(
        args.dataset,
        data_root(args),
        args.split,
        seed=args.seed,
        download=not args.no_download,
        limit=args.limit,
    )
    if len(ds.class_names) != len(model.class_names):
        raise CLIError(
            f"{args.model} has {len(model.class_names)} classes but {args.dataset} has "
            f"{len(ds.class_names)}"
        )
    return ds


def _wav_eval_data(model, root: Path, limit: int | None):
    """The test recordings of a folder ``FOLDER/CLASS/*.wav`` (held out as training did)."""
    feats = st.model_features(model)
    if feats is None or not root.is_dir():
        raise CLIError(f"{root}: no such folder (expected FOLDER/CLASS/*.wav)")
    skipped: list = []
    ds = st.load_wav_folder(root, "test", feats, list(model.class_names), skipped)
    if skipped:
        print(f"clearconv evaluate: warning: {skipped_line(skipped)}", file=sys.stderr)
    if len(ds) == 0:
        raise CLIError(f"{root}: no readable recordings")
    held_out = (model.meta or {}).get("held_out")
    if not (root / "test").is_dir() and held_out and held_out.get("images") == len(ds):
        ds = ds[_held_out(ds.labels, held_out)]
    return ds if limit is None else ds[:limit]


def _held_out(labels, held_out: dict):
    """Indices of the images ``train`` held out for testing (as it recorded the split)."""
    import numpy as np

    from clearconv.data import train_val_split

    seed = int(held_out["seed"])
    if held_out.get("stratified"):
        return held_out_split(labels, seed)[1]
    # model files written before the split was stratified
    return train_val_split(len(labels), HELD_OUT_FRACTION, np.random.default_rng([seed, 2]))[1]


def report(result: dict, class_names: list[str]) -> dict:
    """The JSON-able report: accuracy (a fraction), loss, n, per_class, confusion."""
    confusion = [[int(v) for v in row] for row in result["confusion"]]
    precision = [float(v) for v in result["precision"]]
    recall = [float(v) for v in result["recall"]]
    support = [sum(row) for row in confusion]
    per_class = [
        {"class": c, "precision": p, "recall": r, "support": s}
        for c, p, r, s in zip(class_names, precision, recall, support, strict=True)
    ]
    return {
        "accuracy": float(result["accuracy"]),
        "loss": float(result["loss"]),
        "n": int(sum(support)),
        "classes": list(class_names),
        "per_class": per_class,
        "confusion": confusion,
    }


def print_report(rep: dict) -> None:
    """Accuracy line, per-class table and confusion matrix (rows: true, columns: predicted)."""
    print(f"accuracy {rep['accuracy']:.2%} on {rep['n']:,} images (loss {rep['loss']:.4f})")
    print()
    print(
        format_table(
            ["class", "precision", "recall", "support"],
            [
                [c["class"], f"{c['precision']:.3f}", f"{c['recall']:.3f}", c["support"]]
                for c in rep["per_class"]
            ],
        )
    )
    print()
    print("confusion matrix (rows: true class, columns: predicted)")
    print(confusion_table(rep["classes"], rep["confusion"]))


def make_plot_dir(folder: str) -> Path:
    """Create ``folder`` for ``--plots`` (before any work), or a one-line error.

    Also checks that matplotlib is there, so that its absence is found before
    training rather than after.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        from clearconv._extras import install_hint

        raise CLIError(f"--plots needs matplotlib: {install_hint('viz')}") from exc
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or exc
        raise CLIError(f"--plots {folder}: cannot create the folder ({why})") from exc
    if not os.access(path, os.W_OK):
        raise CLIError(f"--plots {folder}: the folder is not writable")
    return path


def atomic_plot(draw: Callable[[Path], object], path: Path) -> Path:
    """Call ``draw(tmp)`` on a temporary file beside ``path``, then move it into place.

    The temporary name is made here (not by ``mkstemp``, which creates files
    0600) so that the PNG gets the permissions the umask gives every file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        draw(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_plots(folder: str, model, ds, history=None) -> list[Path]:
    """confusion.png, mistakes.png and (with a history) curves.png in ``folder``.

    ``history``: per-epoch records (dicts, as ``History.records``) or a
    ``{column: values}`` dict as :func:`clearconv.viz.load_history` returns.
    """
    from clearconv.viz import confusion_matrix, plot_confusion, plot_curves, plot_mistakes

    out = make_plot_dir(folder)
    proba = model.predict_proba(ds.images)  # (N, K)
    names = list(model.class_names)
    matrix = confusion_matrix(ds.labels, proba.argmax(axis=1), len(names))
    written = [atomic_plot(lambda p: plot_confusion(matrix, names, p), out / "confusion.png")]
    if ds.images.ndim == 4 and ds.images.dtype.kind in "uf":  # pictures, not words or waveforms
        written.append(atomic_plot(
            lambda p: plot_mistakes(ds.images, proba, ds.labels, names, p), out / "mistakes.png"
        ))  # fmt: skip
    if isinstance(history, list) and history:
        keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
        history = {
            k: [float("nan") if r.get(k) is None else float(r[k]) for r in history]
            for k in keys
            if any(r.get(k) is not None for r in history)
        }
    if history:
        curves = history
        written.append(atomic_plot(lambda p: plot_curves(curves, p), out / "curves.png"))
    return written


def run(args: argparse.Namespace) -> int:
    from clearconv import train

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.plots is not None:
        make_plot_dir(args.plots)
    history = None
    if args.history is not None:
        from clearconv.viz import load_history

        if not Path(args.history).is_file():
            raise CLIError(f"--history {args.history}: no such file")
        history = load_history(args.history)
    model = load_model_file(args.model)
    if model.per_pixel:  # a segmentation model: pixel accuracy and IoU
        from clearconv.cli import _segment

        return _segment.evaluate(args, model)
    recorded = recorded_data(model, args)
    ds = load_eval_data(model, args)
    result = train.evaluate(model, ds.images, ds.labels, batch_size=args.batch_size)
    rep = report(result, model.class_names)
    if args.json:
        root = None if args.dataset in (None, "xo") else str(data_root(args))
        kind = "text" if st.model_vocab(model) is not None else "folder"
        data = {"dataset": args.dataset or kind, "path": args.data or root, "split": args.split}
        data["from_model_file"] = bool(recorded)
        print_json({"model": args.model, "data": data, **rep})
    else:
        if recorded:
            print(recorded)
        print_report(rep)
    if args.plots is not None:
        if history is None:
            history = (model.meta or {}).get("history")
        for path in write_plots(args.plots, model, ds, history):
            if not args.json:
                print(f"wrote {path}")
    return 0
