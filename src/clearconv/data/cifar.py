"""CIFAR-10, binary version: plain bytes, no pickle.

Files under ``ROOT/cifar10/cifar-10-batches-bin/`` (or directly in
``ROOT/cifar10/``): ``data_batch_1.bin`` .. ``data_batch_5.bin``,
``test_batch.bin`` and ``batches.meta.txt``. Each record is 3073 bytes: the
label, then 3072 pixel bytes in CHW order (1024 red, 1024 green, 1024 blue,
rows of 32).
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path, PurePosixPath

import numpy as np

from clearconv.data.download import (
    DataMissingError,
    FileSpec,
    download,
    network_reason,
    resolve_root,
)
from clearconv.data.idx import DataError
from clearconv.data.loader import Dataset

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_SPEC",
    "CIFAR10_URL",
    "load_cifar10",
    "safe_extract",
    "verify_cifar10",
]

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
#: Published MD5 of the archive (the authors' page).
CIFAR10_SPEC = FileSpec("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
_RECORD = 1 + 3 * 32 * 32
_SUBDIR = "cifar-10-batches-bin"
_FILES = {
    "train": [f"data_batch_{i}.bin" for i in range(1, 6)],
    "test": ["test_batch.bin"],
}


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract the regular files and folders of a tar archive into ``dest``.

    Refuses (with :class:`DataError`, before writing anything) absolute
    paths, ``..`` components, links, devices and any member that would land
    outside ``dest``.

    Returns
    -------
    list of pathlib.Path
        The extracted files.
    """
    dest = Path(dest).resolve()
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for m in members:
            p = PurePosixPath(m.name)
            target = (dest / m.name).resolve()
            if (
                p.is_absolute()
                or ".." in p.parts
                or not (m.isfile() or m.isdir())
                or (target != dest and dest not in target.parents)
            ):
                raise DataError(
                    f"{archive}: refusing unsafe archive member {m.name!r} "
                    "(absolute path, '..', link or special file)"
                )
        if hasattr(tarfile, "data_filter"):  # Python 3.11.4+: tarfile's own check as well
            tar.extractall(dest, members=members, filter="data")
        else:  # older 3.11 (Debian 12's 3.11.2): the check above is the guard
            tar.extractall(dest, members=members)
    return [dest / m.name for m in members if m.isfile()]


def _folder(root) -> Path:
    base = resolve_root(root) / "cifar10"
    sub = base / _SUBDIR
    return sub if sub.is_dir() else base


def _class_names(folder: Path) -> list[str]:
    meta = folder / "batches.meta.txt"
    if meta.is_file():
        try:
            text = meta.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{meta}: not UTF-8 text ({exc})") from exc
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if names:
            return names
    return list(CIFAR10_CLASSES)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    size = path.stat().st_size
    if size == 0 or size % _RECORD:
        raise DataError(
            f"{path}: expected a whole number of {_RECORD}-byte CIFAR-10 records, "
            f"found {size} bytes"
        )
    records = np.fromfile(path, dtype=np.uint8).reshape(-1, _RECORD)
    labels = records[:, 0].astype(np.int64)
    images = records[:, 1:].reshape(-1, 3, 32, 32)  # (N, 3072) -> (N, C, H, W)
    return images, labels


def load_cifar10(
    root: str | os.PathLike | None = None, split: str = "train", download: bool = True
) -> Dataset:
    """Load CIFAR-10 (binary version) from ``ROOT/cifar10/``.

    Parameters
    ----------
    root : str or PathLike, optional
        Data root (default ``$CLEARCONV_DATA`` or ``~/.cache/clearconv``).
    split : {"train", "test"}
        50,000 training images (5 batches) or 10,000 test images.
    download : bool
        Fetch and extract :data:`CIFAR10_URL` (MD5-checked) when files are missing.

    Returns
    -------
    Dataset
        ``images`` uint8 ``(N, 3, 32, 32)``, ``labels`` int64 ``(N,)``,
        ``class_names`` from ``batches.meta.txt`` (the 10 standard names if absent).

    Raises
    ------
    DataMissingError
        Files absent and not downloadable (the message says what to put where).
    DataError
        A batch file whose length is not a multiple of 3073 bytes, or a label
        out of range.
    """
    if split not in _FILES:
        raise ValueError(f"load_cifar10: split must be 'train' or 'test', got {split!r}")
    folder = _folder(root)
    missing = [n for n in _FILES[split] if not (folder / n).is_file()]
    if missing and download:
        base = resolve_root(root) / "cifar10"
        try:
            archive = download_archive(base)
            safe_extract(archive, base)
        except tarfile.TarError as exc:
            raise DataError(f"{base / CIFAR10_SPEC.name}: corrupt archive ({exc})") from exc
        except OSError as exc:
            reason = network_reason(exc, CIFAR10_URL)
            raise DataMissingError(
                _missing_message(base, missing, f"download failed ({reason})")
            ) from exc
        folder = _folder(root)
        missing = [n for n in _FILES[split] if not (folder / n).is_file()]
    if missing:
        raise DataMissingError(
            _missing_message(resolve_root(root) / "cifar10", missing, "downloads are off")
        )
    parts = [_read_batch(folder / n) for n in _FILES[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    names = _class_names(folder)
    if labels.size and labels.max() >= len(names):
        raise DataError(f"{folder}: labels must be in [0, {len(names)}), found {labels.max()}")
    return Dataset(images, labels, names)


def verify_cifar10(root: str | os.PathLike | None = None) -> dict[str, str]:
    """Report on the six batch files: ``{name: "ok" | "missing" | "bad size"}``.

    A batch is "ok" when its length is a whole, non-zero number of 3073-byte
    records (the binary files have no published per-file checksum).
    """
    folder = _folder(root)
    report = {}
    for name in _FILES["train"] + _FILES["test"]:
        path = folder / name
        if not path.is_file():
            report[name] = "missing"
        else:
            size = path.stat().st_size
            report[name] = "ok" if size and size % _RECORD == 0 else "bad size"
    return report


def download_archive(base: Path) -> Path:
    """Download the CIFAR-10 binary archive into ``base`` (verified, resumable)."""
    dest = base / CIFAR10_SPEC.name
    if dest.is_file():
        return dest
    return download(CIFAR10_URL, dest, CIFAR10_SPEC, timeout=60.0)


def _missing_message(base: Path, missing: list[str], why: str) -> str:
    return (
        f"CIFAR-10 not found and {why}: put {', '.join(missing)} (from {CIFAR10_URL}, "
        f"extracted) into {base / _SUBDIR}/ (or point --data-dir / $CLEARCONV_DATA at a folder "
        "that has cifar10/)"
    )
