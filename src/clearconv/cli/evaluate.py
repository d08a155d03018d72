"""``clearconv evaluate m.npz --dataset NAME | --data FOLDER``: accuracy, per-class, confusion."""

from __future__ import annotations

import argparse
from pathlib import Path

from clearconv.cli import CLIError
from clearconv.cli._common import (
    DATASET_SHAPES,
    DATASETS,
    add_command,
    add_data_dir,
    data_root,
    format_table,
    held_out_split,
    load_folder,
    load_model_file,
    load_named,
    print_json,
)


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "evaluate",
        run,
        help="test a model file on a data set: accuracy, per-class scores, confusion matrix",
        description="Evaluate a model file on the test split of a named data set, or on an "
        "image folder (FOLDER/test when it exists, else all of FOLDER).",
    )
    p.add_argument("model", metavar="MODEL.npz", help="model file written by `clearconv train`")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", choices=DATASETS, help="a known data set (its test split)")
    src.add_argument("--data", metavar="FOLDER", help="image folder FOLDER/CLASS/*.png|jpg")
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


def load_eval_data(model, args: argparse.Namespace):
    """The evaluation set for ``model``: ``--dataset``'s split or ``--data``'s test images."""
    if args.limit is not None and args.limit < 1:
        raise CLIError(f"--limit must be a positive number of images, got {args.limit}")
    if args.data is not None:
        root = Path(args.data)
        if not root.is_dir():
            raise CLIError(f"{root}: no such folder (expected FOLDER/CLASS/*.png|jpg)")
        ds = load_folder(root, "test", model.input_shape, class_names=model.class_names)
        held_out = (model.meta or {}).get("held_out")
        if (
            not (root / "test").is_dir()
            and held_out
            and model.meta.get("data") == str(root.resolve())
            and held_out.get("images") == len(ds)
        ):
            # the folder the model was trained on: test on the images training held out
            ds = ds[held_out_split(len(ds), int(held_out["seed"]))[1]]
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
    names = [str(i) for i in range(len(rep["classes"]))]
    print(
        format_table(
            ["", *names],
            [
                [f"{i} {c}", *row]
                for i, (c, row) in enumerate(zip(rep["classes"], rep["confusion"]))
            ],
        )
    )


def run(args: argparse.Namespace) -> int:
    from clearconv import train

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    model = load_model_file(args.model)
    if model.per_pixel:  # a segmentation model: pixel accuracy and IoU
        from clearconv.cli import _segment

        return _segment.evaluate(args, model)
    ds = load_eval_data(model, args)
    result = train.evaluate(model, ds.images, ds.labels, batch_size=args.batch_size)
    rep = report(result, model.class_names)
    if args.json:
        print_json({"model": args.model, **rep})
    else:
        print_report(rep)
    return 0
