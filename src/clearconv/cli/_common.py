"""Helpers shared by the subcommands: data roots, loading data sets, shapes, tables.

Everything here is a thin client of :mod:`clearconv.data`, :mod:`clearconv.zoo`
and :mod:`clearconv.io`; user errors raise :class:`~clearconv.cli.CLIError` (one
line, exit status 2).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from clearconv._extras import install_hint
from clearconv.cli import CLIError

__all__ = [
    "ARCH_SUFFIXES",
    "DATASETS",
    "DATASET_SHAPES",
    "add_command",
    "add_data_dir",
    "as_batch",
    "check_out_file",
    "confusion_table",
    "data_root",
    "folder_classes",
    "format_table",
    "held_out_split",
    "install_hint",
    "load_folder",
    "load_model_file",
    "load_named",
    "one_line_errors",
    "parse_shape",
    "print_json",
    "resolve_model_spec",
    "skipped_line",
    "write_text_file",
]

#: Data sets known by name, and one sample's shape ``(C, H, W)`` for each.
DATASET_SHAPES = {
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
    "xo": (1, 9, 9),
}
#: fsdd's shape depends on the model: log-mel images, or the waveform for audio1d.
DATASETS = (*DATASET_SHAPES, "fsdd")
#: How many X/O images ``--dataset xo`` draws for training and for testing.
XO_SIZES = {"train": 2000, "test": 1000}
ARCH_SUFFIXES = (".toml", ".json")
#: Share of an image folder without FOLDER/test held out for testing.
HELD_OUT_FRACTION = 0.2


def add_command(
    subparsers, name: str, run: Callable[[argparse.Namespace], int], *, help: str, description: str
) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``, whose ``func`` is ``run``.

    :func:`clearconv.cli.build_parser` then gives every subcommand the common
    options (after its own, so ``--help`` lists them last) and one-line errors.
    """
    p = subparsers.add_parser(name, help=help, description=description)
    p.set_defaults(func=run)
    return p


def one_line_errors(parser: argparse.ArgumentParser) -> None:
    """Make ``parser`` report usage errors in one stderr line (no usage block), exit 2."""
    prog = parser.prog

    def error(message: str):
        sys.stderr.write(f"{prog}: error: {message} (see {prog} --help)\n")
        sys.exit(2)

    parser.error = error  # type: ignore[method-assign]


def add_data_dir(parser: argparse.ArgumentParser) -> None:
    """``--data-dir ROOT`` (the root holding ``mnist/``, ``cifar10/``, ``fsdd/``, ...)."""
    parser.add_argument(
        "--data-dir",
        metavar="ROOT",
        default=None,
        help="data root with mnist/, fashion-mnist/, cifar10/, fsdd/ "
        "(default: $CLEARCONV_DATA or ~/.cache/clearconv)",
    )


def data_root(args: argparse.Namespace) -> Path:
    """The data root: ``--data-dir``, else ``$CLEARCONV_DATA``, else ``~/.cache/clearconv``."""
    from clearconv.data import resolve_root

    return resolve_root(getattr(args, "data_dir", None))


def parse_shape(text: str | None, what: str = "--input-shape") -> tuple[int, ...] | None:
    """``"1,28,28"`` -> ``(1, 28, 28)``; ``None`` stays ``None``.

    Example
    -------
    >>> parse_shape("3, 32,32")
    (3, 32, 32)
    """
    if text is None:
        return None
    parts = [p.strip() for p in str(text).replace("x", ",").split(",")]
    shape: tuple[int, ...] = ()
    if all(p.isdigit() for p in parts):
        shape = tuple(int(p) for p in parts)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise CLIError(
            f"{what} must be C,H,W (or C,L) with positive integers, e.g. 1,28,28; got {text!r}"
        )
    return shape


def as_batch(images: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` grey images -> ``(N, 1, H, W)``; ``(N, C, H, W)`` unchanged."""
    return images[:, None] if images.ndim == 3 else images


def load_named(
    name: str,
    root: Path,
    split: str,
    *,
    seed: int = 0,
    download: bool = True,
    limit: int | None = None,
    fetching: bool = False,
):
    """Load a data set by name as a :class:`~clearconv.data.Dataset` of ``(N, C, H, W)`` images.

    ``xo`` is drawn on the spot (training and test sets from different seeds);
    the others are read from ``root/NAME/`` (downloaded when missing and
    ``download``). ``limit`` keeps the first ``limit`` images. ``fetching``:
    called by ``clearconv datasets fetch``, whose failure message must not
    suggest running it again.
    """
    from clearconv import data

    try:
        ds = _load_named(name, root, split, seed, download, limit)
    except data.DataMissingError as exc:
        raise CLIError(_missing_message(name, root, str(exc), fetching)) from exc
    ds = data.Dataset(as_batch(ds.images), ds.labels, ds.class_names)
    return ds if limit is None else ds[:limit]


def _missing_message(name: str, root: Path, original: str, fetching: bool = False) -> str:
    """One line: which files to put where, the data root options, or how to fetch them.

    Example
    -------
    >>> msg = _missing_message("mnist", Path("/nowhere"), "downloads are off")
    >>> "--data-dir" in msg and "$CLEARCONV_DATA" in msg and "datasets fetch mnist" in msg
    True
    >>> "datasets fetch" in _missing_message("mnist", Path("/nowhere"), "", fetching=True)
    False
    """
    fetch = "" if fetching else f", or run `clearconv datasets fetch {name}` with network access"
    if name not in ("mnist", "fashion-mnist"):
        return original + fetch.replace(", or", "; or", 1)
    from clearconv.data import verify_mnist
    from clearconv.data.mnist import FASHION_MIRRORS, MNIST_MIRRORS

    report = verify_mnist(root, fashion=name == "fashion-mnist")
    missing = [f for f, status in report.items() if status == "missing"] or list(report)
    title, mirror = (
        ("MNIST", MNIST_MIRRORS[0]) if name == "mnist" else ("Fashion-MNIST", FASHION_MIRRORS[0])
    )
    failed = re.search(r"download failed \((.*)\): put", original)
    head = f"{title} not found under {root / name}"
    if failed:
        head += f" and could not be downloaded ({failed.group(1)})"
    return (
        f"{head}: put {', '.join(missing)} into {root / name}/ (from {mirror}), or point "
        f"--data-dir (or $CLEARCONV_DATA) at a folder that has {name}/{fetch}"
    )


def _load_named(name: str, root: Path, split: str, seed: int, download: bool, limit):
    from clearconv import data

    if name == "xo":
        n = XO_SIZES[split] if limit is None else min(limit, XO_SIZES[split])
        # distinct streams for the two splits, so the test images are never trained on
        ds = data.make_xo(n, np.random.default_rng([seed, 0 if split == "train" else 1]))
    elif name == "mnist":
        ds = data.load_mnist(root, split, download=download)
    elif name == "fashion-mnist":
        ds = data.load_fashion_mnist(root, split, download=download)
    elif name == "cifar10":
        ds = data.load_cifar10(root, split, download=download)
    else:
        raise CLIError(f"unknown dataset {name!r}: choose from {', '.join(DATASETS)}")
    return ds


def folder_classes(root: Path) -> list[str]:
    """Class names of an image folder (its training part): sorted sub-folder names."""
    from clearconv.data import image_folder_split

    folder = image_folder_split(root, "train")
    if not folder.is_dir():
        raise CLIError(f"{root}: no such folder (expected FOLDER/CLASS/*.png|jpg)")
    names = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if folder == Path(root):
        names = [n for n in names if n not in ("train", "test")]
    if not names:
        raise CLIError(f"{folder}: no class folders found (expected {folder}/CLASS/*.png|jpg)")
    return names


def load_folder(
    root: Path,
    split: str | None,
    input_shape: Sequence[int],
    class_names: Sequence[str] | None = None,
    skipped: list | None = None,
):
    """Images of ``root`` (its ``split`` sub-folder when present), resized to ``input_shape``.

    With a ``skipped`` list, unreadable files are left out and listed there
    (see :func:`skipped_line`) instead of stopping the command.
    """
    from clearconv.data import load_image_folder

    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise CLIError(
            f"image folders need a model input of 1 or 3 channels (C, H, W), "
            f"got {tuple(input_shape)}"
        )
    return load_image_folder(
        root,
        (input_shape[1], input_shape[2]),
        input_shape[0],
        split=split,
        class_names=class_names,
        skipped=skipped,
    )


def skipped_line(skipped: Sequence[tuple[Path, str]], shown: int = 10) -> str:
    """One line naming the files that could not be read (the first ``shown`` of them).

    Example
    -------
    >>> skipped_line([(Path("a.png"), "bad"), (Path("b.jpg"), "bad")])
    'skipped 2 unreadable files: a.png, b.jpg'
    """
    names = [str(p) for p, _ in skipped[:shown]]
    more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
    noun = "file" if len(skipped) == 1 else "files"
    return f"skipped {len(skipped)} unreadable {noun}: {', '.join(names)}{more}"


def held_out_split(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, test_idx)`` of a folder without ``FOLDER/test``: the same for the same seed.

    Stratified: each class gives :data:`HELD_OUT_FRACTION` of its images.
    ``evaluate`` calls it again to test on exactly the images ``train`` held out.
    """
    from clearconv.data import stratified_split

    return stratified_split(labels, HELD_OUT_FRACTION, np.random.default_rng([seed, 2]))


def resolve_model_spec(spec: str) -> str:
    """A zoo name as is, or the path of an existing architecture file; else :class:`CLIError`."""
    from clearconv import zoo

    if spec in zoo.NAMES:
        return spec
    path = Path(spec)
    if path.suffix.lower() in ARCH_SUFFIXES:
        if not path.is_file():
            raise CLIError(f"{spec}: architecture file not found")
        return str(path)
    raise CLIError(
        f"unknown model {spec!r}: choose from {', '.join(zoo.NAMES)} "
        "or give a .toml/.json architecture file"
    )


def load_model_file(path: str):
    """:func:`clearconv.load` with a one-line error for a missing file."""
    from clearconv import io

    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{path}: model file not found")
    return io.load(p)


def check_out_file(path: str | Path, option: str | None = "--out") -> Path:
    """The file ``option`` names, checked before any work: its folder exists and is writable,
    and it is not itself a folder; else :class:`CLIError` saying which and what to give.

    Example
    -------
    >>> check_out_file("/no/such/folder/r.html")
    Traceback (most recent call last):
    ...
    clearconv.cli.CLIError: --out /no/such/folder/r.html: the folder /no/such/folder does not exist
    """
    import os

    p = Path(path)
    folder = p.parent
    what = f"{option} {path}" if option else str(path)  # None: a positional argument
    if p.is_dir():
        raise CLIError(f"{what}: is a folder; give a file name, e.g. {p / 'out'}{p.suffix}")
    if not folder.is_dir():
        raise CLIError(f"{what}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(f"{what}: no permission to write in {folder}")
    return p


def write_text_file(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically: a temporary file beside it, then a rename.

    The temporary file is created like any other (permissions follow the umask)
    and removed if the write fails, so ``path`` is either the old file or the new one.
    """
    import os

    p = Path(path)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned.

    Example
    -------
    >>> print(format_table(["class", "n"], [["cat", 3], ["dog", 12]]))
    class   n
    cat     3
    dog    12
    """
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [
        all(isinstance(row[i], (int, float, np.number)) for row in rows) and bool(rows)
        for i in range(len(headers))
    ]
    lines = []
    for r in cells:
        parts = [
            c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric, strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def confusion_table(classes: Sequence[str], confusion: Sequence[Sequence[int]]) -> str:
    """The confusion matrix as text, rows (true class) and columns (predicted) labelled alike.

    Short class names label both; longer ones are replaced by their index on
    both sides, with a key line after the table.

    Example
    -------
    >>> print(confusion_table(["cat", "dog"], [[3, 1], [0, 4]]))
    true\\pred  cat  dog
    cat          3    1
    dog          0    4
    >>> print(confusion_table(["T-shirt/top", "Trouser"], [[5, 0], [1, 6]]))
    true\\pred  0  1
    0          5  0
    1          1  6
    classes: 0 = T-shirt/top, 1 = Trouser
    """
    names = [str(c) for c in classes]
    short = max((len(n) for n in names), default=0) <= 6
    labels = names if short else [str(i) for i in range(len(names))]
    text = format_table(
        ["true\\pred", *labels], [[lab, *row] for lab, row in zip(labels, confusion)]
    )
    if not short:
        text += "\nclasses: " + ", ".join(f"{i} = {n}" for i, n in enumerate(names))
    return text


def _default(obj):
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def print_json(obj) -> None:
    """Print ``obj`` as ONE JSON object on stdout (NumPy values converted)."""
    sys.stdout.write(json.dumps(obj, default=_default) + "\n")
