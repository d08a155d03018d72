"""MNIST and Fashion-MNIST: the four IDX files under ``ROOT/mnist/`` and ``ROOT/fashion-mnist/``.

Files may be gzip-compressed (``.gz``, as published) or not. Checksums: see
:mod:`clearconv.data.download` (published MD5 of the archives, or for MNIST the
MD5 of the uncompressed content, which accepts any recompressed copy).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from clearconv.data.download import FileSpec, fetch_files, resolve_root, verify_files
from clearconv.data.idx import DataError, read_idx
from clearconv.data.loader import Dataset

__all__ = [
    "FASHION_CLASSES",
    "FASHION_MIRRORS",
    "FASHION_SPECS",
    "MNIST_CLASSES",
    "MNIST_MIRRORS",
    "MNIST_SPECS",
    "load_fashion_mnist",
    "load_mnist",
    "verify_mnist",
]

MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

# Published MD5 of the .gz files (torchvision's table) and, for MNIST, the MD5
# of the uncompressed content (../shared/datasets/mnist/README.md).
MNIST_SPECS = {
    "train-images-idx3-ubyte.gz": FileSpec(
        "train-images-idx3-ubyte.gz",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "6bbc9ace898e44ae57da46a324031adb",
        47_040_016,
    ),
    "train-labels-idx1-ubyte.gz": FileSpec(
        "train-labels-idx1-ubyte.gz",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "a25bea736e30d166cdddb491f175f624",
        60_008,
    ),
    "t10k-images-idx3-ubyte.gz": FileSpec(
        "t10k-images-idx3-ubyte.gz",
        "9fb629c4189551a2d022fa330f9573f3",
        "2646ac647ad5339dbf082846283269ea",
        7_840_016,
    ),
    "t10k-labels-idx1-ubyte.gz": FileSpec(
        "t10k-labels-idx1-ubyte.gz",
        "ec29112dd5afa0611ce80d1b7f02629c",
        "27ae3e4e09519cfbb04c329615203637",
        10_008,
    ),
}
FASHION_SPECS = {
    "train-images-idx3-ubyte.gz": FileSpec(
        "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"
    ),
    "train-labels-idx1-ubyte.gz": FileSpec(
        "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"
    ),
    "t10k-images-idx3-ubyte.gz": FileSpec(
        "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"
    ),
    "t10k-labels-idx1-ubyte.gz": FileSpec(
        "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"
    ),
}

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

# dataset name -> (folder, specs, mirrors, class names)
_SETS = {
    "MNIST": ("mnist", MNIST_SPECS, MNIST_MIRRORS, MNIST_CLASSES),
    "Fashion-MNIST": ("fashion-mnist", FASHION_SPECS, FASHION_MIRRORS, FASHION_CLASSES),
}


def _load(dataset: str, root, split: str, download: bool) -> Dataset:
    folder_name, specs, mirrors, classes = _SETS[dataset]
    if split not in _NAMES:
        raise ValueError(
            f"load_{folder_name.replace('-', '_')}: split must be 'train' or 'test', got {split!r}"
        )
    folder = resolve_root(root) / folder_name
    image_name, label_name = _NAMES[split]
    paths = fetch_files(
        folder, [specs[image_name], specs[label_name]], mirrors, dataset, download_ok=download
    )
    images = read_idx(paths[image_name], max_bytes=1 << 30)
    labels = read_idx(paths[label_name], max_bytes=1 << 30)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(
            f"{paths[image_name]}: expected uint8 images of shape (N, 28, 28), "
            f"found {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{paths[label_name]}: expected {len(images)} labels (one per image), "
            f"found shape {labels.shape}"
        )
    if labels.size and labels.max() >= len(classes):
        raise DataError(
            f"{paths[label_name]}: labels must be in [0, {len(classes)}), found {labels.max()}"
        )
    return Dataset(images, labels.astype(np.int64), list(classes))


def load_mnist(
    root: str | os.PathLike | None = None, split: str = "train", download: bool = True
) -> Dataset:
    """Load MNIST from ``ROOT/mnist/``, downloading missing files when allowed.

    Parameters
    ----------
    root : str or PathLike, optional
        Data root; default :func:`~clearconv.data.default_data_root`
        (``$CLEARCONV_DATA`` or ``~/.cache/clearconv``).
    split : {"train", "test"}
        60,000 training or 10,000 test images.
    download : bool
        Fetch missing files from :data:`MNIST_MIRRORS` (verified, atomic).

    Returns
    -------
    Dataset
        ``images`` uint8 ``(N, 28, 28)`` (0 = background, 255 = ink),
        ``labels`` int64 ``(N,)``, ``class_names`` ``["0", ..., "9"]``;
        unpacks as ``images, labels, class_names``.

    Raises
    ------
    DataMissingError
        Files absent and not downloadable: the message says what to put where.
    DataError
        A file is corrupt (see :func:`~clearconv.data.read_idx`).

    Example
    -------
    A three-image test split written to a temporary folder under the real
    names (images gzip-compressed as published, labels not: both are read):

    >>> import tempfile
    >>> from pathlib import Path
    >>> from clearconv.data import write_idx
    >>> with tempfile.TemporaryDirectory() as root:
    ...     folder = Path(root) / "mnist"
    ...     folder.mkdir()
    ...     images = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    ...     write_idx(folder / "t10k-images-idx3-ubyte.gz", images, gzip=True)
    ...     write_idx(folder / "t10k-labels-idx1-ubyte", np.array([7, 2, 1], np.uint8))
    ...     test = load_mnist(root, "test", download=False)
    >>> test.images.shape, test.images.dtype, test.labels.tolist()
    ((3, 28, 28), dtype('uint8'), [7, 2, 1])
    >>> bool((test.images == images).all()), test.class_names[7]
    (True, '7')
    """
    return _load("MNIST", root, split, download)


def load_fashion_mnist(
    root: str | os.PathLike | None = None, split: str = "train", download: bool = True
) -> Dataset:
    """Load Fashion-MNIST from ``ROOT/fashion-mnist/`` (same format as :func:`load_mnist`).

    Returns
    -------
    Dataset
        ``images`` uint8 ``(N, 28, 28)``, ``labels`` int64, ``class_names``
        :data:`FASHION_CLASSES` (``"T-shirt/top"``, ..., ``"Ankle boot"``).

    Raises
    ------
    DataMissingError, DataError
        As :func:`load_mnist`.
    """
    return _load("Fashion-MNIST", root, split, download)


def verify_mnist(root: str | os.PathLike | None = None, fashion: bool = False) -> dict[str, str]:
    """Checksum report for the four files: ``{name: "ok" | "missing" | "bad checksum"}``."""
    folder_name, specs, _, _ = _SETS["Fashion-MNIST" if fashion else "MNIST"]
    return verify_files(Path(resolve_root(root)) / folder_name, list(specs.values()))
