"""The segmentation side of ``train``, ``evaluate`` and ``predict`` (a class for every pixel).

The subcommands hand over here when the data is a segmentation folder
(``FOLDER/train/images`` + ``FOLDER/train/masks``, see
:mod:`clearconv.data.segment`) or the model labels pixels (``Model.per_pixel``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from clearconv.cli import CLIError
from clearconv.cli._common import HELD_OUT_FRACTION, parse_shape, print_json

#: ``--augment`` for segmentation: mirrors and quarter turns, small shifts (masks alike).
DEFAULT_AUGMENT = {"flip": True, "rot90": True, "shift": 4}


def _warn_skipped(split: str, skipped: list[str]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} bad {split} pair(s); first: {skipped[0]}", file=sys.stderr)


def _data_shape(root: Path, given: tuple[int, ...] | None) -> tuple[int, int, int]:
    """The model input ``(C, H, W)``: ``--input-shape``, else the first training image's size."""
    from clearconv.data import load_image
    from clearconv.data.segment import _pairs

    if given is not None:
        if len(given) != 3 or given[0] not in (1, 3):
            raise CLIError(f"--input-shape must be C,H,W with C 1 or 3, got {given}")
        return given  # type: ignore[return-value]
    first = _pairs(root / "train")[0][0]
    _, h, w = load_image(first).shape
    return (3, h, w)


def load_split(root: Path, split: str, model_shape, classes, skip_bad: bool):
    """One split of a segmentation folder at the model's input size."""
    from clearconv.data.segment import load_segmentation_folder

    c, h, w = model_shape
    size = (h, w)
    return load_segmentation_folder(root, split, classes, size, c, skip_bad=skip_bad)


def _augment(value: Any):
    from clearconv.data.segment import PairedAugment

    if not value:
        return None
    return PairedAugment(**(DEFAULT_AUGMENT if value is True else value))


def held_out_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, test_idx)`` without ``FOLDER/test``: the same for the same seed
    (unstratified: an image has no one class to stratify by)."""
    from clearconv.data import train_val_split

    return train_val_split(n, HELD_OUT_FRACTION, np.random.default_rng([seed, 2]))


def _train_test(root: Path, shape, classes, args: argparse.Namespace, loud: bool = True):
    """``(train, test, held_out)``: bad pairs skipped and counted (said when ``loud``);
    without ``FOLDER/test`` a share of the training images is held out (``held_out``
    says which, for evaluate)."""
    train_ds, skipped = load_split(root, "train", shape, classes, skip_bad=True)
    _warn_skipped("training", skipped if loud else [])
    held_out = None
    if (root / "test").is_dir():
        test_ds, skipped_test = load_split(root, "test", shape, classes, skip_bad=True)
        _warn_skipped("test", skipped_test if loud else [])
    else:
        held_out = {"seed": args.seed, "images": len(train_ds)}
        tr, te = held_out_split(len(train_ds), args.seed)
        train_ds, test_ds = train_ds[tr], train_ds[te]
    if args.limit is not None:
        train_ds = train_ds[: args.limit]
    return train_ds, test_ds, held_out


def _run_meta(history, wall: float, n_train: int, n_test: int, result: dict) -> dict:
    """What the model file records of a training run and its test figures."""
    return {
        "epochs": len(history),
        "stopped_early": bool(history.stopped_early),
        "best_epoch": history.best_epoch,
        "wall_time_s": round(wall, 3),
        "train_images": n_train,
        "test_images": n_test,
        "test_accuracy": result["pixel_accuracy"],
        "test_mean_iou": result["mean_iou"],
        "test_loss": result["loss"],
        "history": history.records,
    }


def _net(args: argparse.Namespace, root: Path, classes: list[str], rng) -> tuple:
    """``(net, input_shape, recipe name, base)``: the zoo model or architecture file
    built for the folder, or a segmentation model file (``base``) to train further:
    its weights, input size and normalisation; ``--num-classes`` replaces its
    closing 1x1 convolution when the folder's classes differ."""
    from clearconv import zoo
    from clearconv.cli._common import load_model_file, resolve_model_spec
    from clearconv.cli.train import build_net, is_model_file

    given = parse_shape(args.input_shape)
    if is_model_file(args.model):
        base = load_model_file(args.model)
        if not base.per_pixel:
            raise CLIError(
                f"{args.model} gives one class per image; train a segmentation model file "
                "(made from unet or fcn) on a segmentation folder"
            )
        if given is not None and given != tuple(base.input_shape):
            raise CLIError(
                f"--input-shape {given} does not match {args.model}'s {base.input_shape}"
            )
        net, shape, _ = build_net(args.model, base, None, None, classes, str(root), args, rng)
        return net, shape, str(base.meta.get("model", "")), base
    spec = resolve_model_spec(args.model)
    shape = _data_shape(root, given)
    net, shape = zoo.build(spec, input_shape=shape, num_classes=len(classes), rng=rng)
    if len(net.output_shape((1, *shape))) != 4:
        raise CLIError(f"{args.model} gives one class per image; segmentation needs unet or fcn")
    return net, tuple(shape), spec, None


def _meta(args: argparse.Namespace, name: str, root: Path, held_out, cfg, augment, base) -> dict:
    """What the model file records of how it was trained (before the run's figures)."""
    from clearconv.cli import train as cli

    meta = {
        "model": name or args.model,
        "task": "segmentation",
        "dataset": "segmentation-folder",
        "data": str(root.resolve()),
        "held_out": held_out,
        "seed": args.seed,
        "settings": {**cfg, "augment": None if augment is None else vars(augment)},
        "command": cli.command_line(args),
    }
    if base is not None:  # as a classifier's model file records it
        meta["fine_tuned_from"] = cli.fine_tuned_from(args, base)
    return meta


def train(args: argparse.Namespace, dist: Any = None) -> int:
    """``clearconv train --data SEGFOLDER``: fit (over the ranks of ``dist`` when
    given), print mean IoU per epoch, save. Rank 0 alone prints and writes."""
    from clearconv import segmentation
    from clearconv.cli import train as cli
    from clearconv.data import train_val_split
    from clearconv.data.segment import segmentation_classes

    if args.plots is not None:
        raise CLIError(
            "--plots draws a classifier's figures; for a segmentation model see "
            "`clearconv inspect MODEL IMAGE` and `clearconv evaluate MODEL --data FOLDER`"
        )
    root = Path(args.data)
    is_root = dist is None or dist.is_root
    rng = np.random.default_rng(args.seed)
    classes = segmentation_classes(root)
    net, shape, name, base = _net(args, root, classes, rng)
    train_ds, test_ds, held_out = _train_test(root, shape, classes, args, loud=is_root)
    cfg = cli.settings(name, args)
    val_ds = None
    if args.val_split > 0:
        tr, va = train_val_split(len(train_ds), args.val_split, rng)
        train_ds, val_ds = train_ds[tr], train_ds[va]
    model = cli._model(net, shape, train_ds, base)  # a model file's normalisation kept
    if args.find_lr:
        return cli._find_lr(model, train_ds, cfg, args)
    watch, watch_name = (val_ds, "val") if val_ds is not None else (test_ds, "test")
    say = print if is_root and not args.quiet else (lambda *a: None)
    say(
        f"training {args.model} on {args.data}: {len(train_ds):,} images {shape[1]}x{shape[2]}, "
        f"{len(classes)} classes, {cfg['epochs']} epoch(s), batch {cfg['batch_size']}, "
        f"{cfg['optimizer']} lr {cfg['lr']:g}"
    )

    def epoch_line(record: dict) -> None:  # the usual line, then the watched set's mean IoU
        r = segmentation.evaluate(model, watch.images, watch.labels, distributed=dist)
        if is_root:
            cli._epoch_line(record)
            iou, acc = r["mean_iou"], r["accuracy"]
            print(f"          {watch_name} mean IoU {iou:.4f}  pixel acc {acc:.2%}")

    augment = _augment(cfg["augment"])
    meta = _meta(args, name, root, held_out, cfg, augment, base)
    start = time.perf_counter()
    history = cli._train(
        args, model, train_ds, val_ds, cfg, meta, dist,
        augment=augment, on_epoch_end=None if args.quiet else epoch_line,
    )  # fmt: skip
    wall = time.perf_counter() - start
    result = cli.test_on_ranks(
        lambda: segmentation.evaluate(model, test_ds.images, test_ds.labels, distributed=dist),
        args, model, {**meta, "epochs": len(history)}, dist,
    )  # fmt: skip
    if result is None:  # a rank other than 0: rank 0 alone writes
        return 0
    model.meta = {**meta, **_run_meta(history, wall, len(train_ds), len(test_ds), result)}
    line = (
        f"test mean IoU {result['mean_iou']:.4f}, pixel accuracy {result['pixel_accuracy']:.2%} "
        f"on {len(test_ds):,} images after {len(history)} epoch(s) in {wall:.1f} s"
    )
    try:
        saved = cli.save_model(model, args.out)
    except CLIError:
        print(line)  # the result still counts: the error says where the model went
        raise
    print(f"{line}; wrote {saved}")
    return 0


def evaluate(args: argparse.Namespace, model) -> int:
    """``clearconv evaluate SEGMODEL --data FOLDER``: pixel accuracy, mean and per-class IoU."""
    from clearconv import segmentation
    from clearconv.data.segment import is_segmentation_folder

    if args.data is None or not is_segmentation_folder(args.data):
        raise CLIError(
            f"{args.model} labels pixels: give --data FOLDER with train/images and train/masks "
            "(and test/...)"
        )
    root = Path(args.data)
    if (root / "test").is_dir():
        ds, _ = load_split(root, "test", model.input_shape, model.class_names, skip_bad=False)
    else:
        ds, _ = load_split(root, "train", model.input_shape, model.class_names, skip_bad=False)
        held = (model.meta or {}).get("held_out")
        if held and model.meta.get("data") == str(root.resolve()) and held["images"] == len(ds):
            ds = ds[held_out_split(len(ds), int(held["seed"]))[1]]
    if args.limit is not None:
        ds = ds[: args.limit]
    r = segmentation.evaluate(model, ds.images, ds.labels, batch_size=args.batch_size)
    per_class = {c: (None if np.isnan(v) else v) for c, v in zip(model.class_names, r["iou"])}
    rep = {
        "pixel_accuracy": r["pixel_accuracy"],
        "mean_iou": r["mean_iou"],
        "per_class_iou": per_class,
        "loss": r["loss"],
        "n": r["n"],
        "classes": list(model.class_names),
        "confusion": r["confusion"].tolist(),
    }
    if args.json:
        print_json({"model": args.model, **rep})
        return 0
    print(
        f"mean IoU {rep['mean_iou']:.4f}, pixel accuracy {rep['pixel_accuracy']:.2%} on "
        f"{rep['n']:,} images (loss {rep['loss']:.4f})"
    )
    for name, v in per_class.items():
        print(f"  {name:<16} IoU {'-' if v is None else f'{v:.4f}'}")
    return 0


def _write_png(array: np.ndarray, path: Path) -> None:
    import os

    from PIL import Image

    if not path.parent.is_dir():
        raise CLIError(f"{path}: folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


def predict(args: argparse.Namespace, model, files: list[Path]) -> int:
    """``clearconv predict SEGMODEL image.png [--mask-out m.png] [--overlay-out o.png]``."""
    from PIL import Image

    from clearconv import segmentation
    from clearconv.data import load_image

    mask_out, overlay_out = getattr(args, "mask_out", None), getattr(args, "overlay_out", None)
    if (mask_out or overlay_out) and len(files) != 1:
        raise CLIError(f"--mask-out and --overlay-out take one image, got {len(files)}")
    c, h, w = model.input_shape
    results: list[dict[str, Any]] = []
    for f in files:  # one file at a time: each keeps its own size
        original = load_image(f, channels=c)
        mask = segmentation.predict_masks(model, load_image(f, (h, w), c)[None])[0]
        oh, ow = original.shape[1:]
        if (oh, ow) != (h, w):  # back to the file's size, nearest: indices stay indices
            img = Image.fromarray(mask.astype(np.uint8)).resize((ow, oh), Image.Resampling.NEAREST)
            mask = np.asarray(img).astype(np.int64)
        counts = np.bincount(mask.ravel(), minlength=model.num_classes)
        shares = {n: float(v / mask.size) for n, v in zip(model.class_names, counts)}
        results.append({"file": str(f), "size": [oh, ow], "class_shares": shares})
        if mask_out:
            _write_png(mask.astype(np.uint8), Path(mask_out))
        if overlay_out:
            _write_png(segmentation.overlay(original, mask), Path(overlay_out))
    if args.json:
        print_json({"model": args.model, "results": results})
        return 0
    for r in results:
        parts = ", ".join(f"{n} {v:.1%}" for n, v in r["class_shares"].items() if v > 0)
        print(f"{r['file']}: {parts}")
    written = {"mask": mask_out, "overlay": overlay_out}
    for flag, path in written.items():
        if path:
            print(f"wrote {flag} {path}")
    return 0
