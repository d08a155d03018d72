"""``clearconv predict m.npz IMAGE...``: the top-k classes of image files (or folders of them),
of recordings (``x.wav``) for a sound model, or of sentences (``--text "..."``) for a text model.

Folders are searched recursively for image files. A file that cannot be read
is skipped and named in one line on stderr; only when none can be read is it
an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from clearconv.cli import CLIError
from clearconv.cli import soundtext as st
from clearconv.cli._common import (
    add_command,
    format_table,
    load_model_file,
    print_json,
    skipped_line,
)


def add_parser(subparsers) -> None:
    p = add_command(
        subparsers,
        "predict",
        run,
        help="classify image files with a model file (top-k with probabilities)",
        description="Classify images with a model file. Each IMAGE is a file or a folder "
        "(its image files and those of its sub-folders, sorted). Files that cannot be read are "
        "skipped and named on one line. Digit models (1x28x28, trained on MNIST or with classes "
        "0..9) get the usual MNIST "
        "preprocessing: grey, inverted when the background is light, cropped, fitted "
        "into 20x20 and centred by mass in 28x28; other models resize to their input.",
    )
    p.add_argument("model", metavar="MODEL.npz", help="model file written by `clearconv train`")
    p.add_argument(
        "images", metavar="IMAGE", nargs="*",
        help="image files or folders (for a sound model: .wav recordings or folders of them)",
    )  # fmt: skip
    p.add_argument(
        "--text", action="append", metavar="SENTENCE",
        help="for a text model: a sentence to classify (repeat for several)",
    )  # fmt: skip
    p.add_argument("--top-k", type=int, default=3, help="classes to show per image (default 3)")
    p.add_argument(
        "--no-mnist-preprocess",
        action="store_true",
        help="for digit models, only resize to 28x28 (for images already MNIST-like)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--mask-out", metavar="PNG", help="segmentation models: write the predicted class mask"
    )
    p.add_argument(
        "--overlay-out", metavar="PNG", help="segmentation models: write the image, mask over it"
    )


def image_files(items: list[str]) -> list[Path]:
    """Files as given; folders expanded to the image files in them and their sub-folders
    (sorted, hidden ones left out); errors name the path."""
    from clearconv.data import IMAGE_EXTENSIONS

    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                raise CLIError(f"{path}: no image files ({'|'.join(IMAGE_EXTENSIONS)}) in folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise CLIError(f"{path}: no such file or folder")
    return files


def load_images(
    model, files: list[Path], mnist: bool, skipped: list | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``files`` into the model's raw input batch ``(N, *input_shape)``.

    Returns ``(images, kept)``, ``kept`` indexing ``files``. With a ``skipped``
    list, unreadable files are left out and ``(path, reason)`` appended to it.
    """
    from clearconv.data import DataError, load_image, mnist_preprocess, read_images

    shape = tuple(model.input_shape)
    if len(shape) != 3 or shape[0] not in (1, 3):
        raise CLIError(f"predict reads images, but this model takes input {shape}")
    c, h, w = shape
    if mnist:
        # one photo at a time: each needs its own crop and centring
        batch, kept = [], []
        for i, f in enumerate(files):
            try:
                batch.append(mnist_preprocess(load_image(f, channels=1)[0])[None])
            except (DataError, OSError) as exc:
                if skipped is None:
                    raise
                skipped.append((f, str(exc)))
                continue
            kept.append(i)
        images = np.stack(batch) if batch else np.zeros((0, *shape), np.uint8)
        index = np.asarray(kept, dtype=np.int64)
    else:
        images, index = read_images(files, (h, w), c, skipped)
    if len(index) and (model.meta or {}).get("dataset") == "xo":
        images = _as_xo(images)
    return images, index


def _as_xo(images: np.ndarray) -> np.ndarray:
    """uint8 pictures -> the X/O set's +1 (ink) / -1 (background) floats.

    Ink is the darker side when the border is light (a drawing on paper).
    """
    x = images.astype(np.float32) / 255  # (N, 1, H, W)
    border = np.concatenate(
        [x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], axis=-1
    )  # (N, 1, 2H + 2W)
    light = np.median(border, axis=(1, 2)) > 0.5
    x = np.where(light[:, None, None, None], 1 - x, x)
    return np.where(x > 0.5, 1.0, -1.0).astype(np.float32)


def wav_files(items: list[str]) -> list[Path]:
    """Files as given; folders expanded to the ``.wav`` files in them (sorted)."""
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*.wav") if p.is_file())
            if not found:
                raise CLIError(f"{path}: no .wav files in folder")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise CLIError(f"{path}: no such file or folder")
    return files


def _inputs(model, args: argparse.Namespace, skipped: list) -> tuple[list, np.ndarray, bool]:
    """``(names, inputs, mnist)``: what to classify, as the model's raw input batch."""
    from clearconv.viz.inputs import is_digit_model

    feats = st.model_features(model)
    if args.text:
        if args.images:
            raise CLIError("give sentences with --text or files, not both")
        return list(args.text), st.text_inputs(model, args.text), False
    if not args.images:
        what = "sentences: --text" if st.model_vocab(model) else "files to classify"
        raise CLIError(f"nothing to classify: give {what}")
    if st.model_vocab(model) is not None:
        raise CLIError(f"{args.model} classifies sentences: give them with --text")
    if feats is not None:
        files = wav_files(args.images)
        inputs, kept = st.read_recordings(files, feats, skipped)
        return [files[i] for i in kept], inputs, False
    files = image_files(args.images)
    mnist = is_digit_model(model) and not args.no_mnist_preprocess
    images, kept = load_images(model, files, mnist, skipped)
    return [files[i] for i in kept], images, mnist


def run(args: argparse.Namespace) -> int:
    model = load_model_file(args.model)
    k = len(model.class_names)
    if args.top_k < 1:
        raise CLIError(f"--top-k must be >= 1, got {args.top_k}")
    top_k = min(args.top_k, k)
    if model.per_pixel:  # a class for every pixel: masks, not top-k
        from clearconv.cli import _segment

        return _segment.predict(args, model, image_files(args.images))
    if args.mask_out or args.overlay_out:
        raise CLIError(
            f"--mask-out and --overlay-out need a segmentation model; {args.model} "
            "labels whole images"
        )
    skipped: list = []
    files, images, mnist = _inputs(model, args, skipped)
    if len(files) == 0:  # nothing to show: the reason is the answer
        if len(skipped) == 1:
            raise CLIError(skipped[0][1])
        what = "recordings" if st.model_features(model) else "image files"
        raise CLIError(f"none of the {len(skipped)} {what} could be read ({skipped[0][1]})")
    if skipped:
        print(f"clearconv predict: warning: {skipped_line(skipped)}", file=sys.stderr)
    proba = model.predict_proba(images)  # (N, K)
    order = np.argsort(-proba, axis=1, kind="stable")[:, :top_k]  # (N, top_k)
    results: list[dict[str, Any]] = [
        {
            ("text" if args.text else "file"): str(f),
            "top": [
                {"class": model.class_names[j], "index": int(j), "probability": float(p[j])}
                for j in idx
            ],
        }
        for f, p, idx in zip(files, proba, order, strict=True)
    ]
    if args.json:
        bad = [{"file": str(f), "error": why} for f, why in skipped]
        print_json(
            {
                "model": args.model,
                "mnist_preprocess": mnist,
                "top_k": top_k,
                "results": results,
                "skipped": bad,
            }
        )
        return 0
    rows = []
    for r in results:
        best = r["top"]
        rows.append(
            [
                r.get("file", r.get("text")),
                best[0]["class"],
                f"{best[0]['probability']:.1%}",
                ", ".join(f"{t['class']} {t['probability']:.1%}" for t in best[1:]),
            ]
        )
    head = "text" if args.text else "recording" if st.model_features(model) else "image"
    print(format_table([head, "class", "prob", "next"], rows))
    return 0
