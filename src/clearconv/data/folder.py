"""Image folders ``ROOT/CLASS/*.png|jpg|jpeg|bmp|gif`` decoded with Pillow (optional extra).

Pillow is imported inside the functions, so ``clearconv.data`` works without it
until an image is read; then a missing Pillow raises
:class:`MissingDependencyError` with the pip command (:func:`clearconv._extras.install_hint`).
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from clearconv._validate import check_tuple
from clearconv.data.idx import DataError
from clearconv.data.loader import Dataset

__all__ = [
    "IMAGE_EXTENSIONS",
    "MissingDependencyError",
    "image_folder_split",
    "load_image",
    "load_image_folder",
    "read_images",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
#: Largest image file :func:`load_image` reads (256 MiB).
MAX_IMAGE_FILE_BYTES = 1 << 28


class MissingDependencyError(ImportError):
    """An optional dependency (Pillow) is needed and not installed."""


def _pil():
    try:
        from PIL import Image, ImageOps
    except ImportError as exc:
        from clearconv._extras import install_hint

        raise MissingDependencyError(f"reading images needs Pillow: {install_hint('cli')}") from exc
    return Image, ImageOps


def _check_channels(owner: str, channels) -> int:
    if channels not in (1, 3) or isinstance(channels, bool):
        raise ValueError(f"{owner}: channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    return int(channels)


def load_image(
    path: str | os.PathLike, size: tuple[int, int] | None = None, channels: int = 3
) -> np.ndarray:
    """Decode one image file to uint8 ``(C, H, W)``.

    The image is turned upright by its EXIF orientation, composited on white
    when it has transparency, converted to grey (``"L"``) or RGB, and resized
    (stretched, no crop) with Lanczos filtering when ``size`` is given.

    Parameters
    ----------
    path : str or PathLike
    size : (H, W), optional
        Output size; ``None`` keeps the file's size.
    channels : {1, 3}

    Returns
    -------
    numpy.ndarray
        uint8 ``(channels, H, W)``.

    Raises
    ------
    DataError
        Unreadable or truncated file, a file over :data:`MAX_IMAGE_FILE_BYTES`,
        or more pixels than ``PIL.Image.MAX_IMAGE_PIXELS`` (a decompression
        bomb); names the file.
    FileNotFoundError
        No file at ``path``.
    MissingDependencyError
        Pillow is not installed.

    Example
    -------
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "red.png"
    >>> Image.new("RGB", (5, 4), (255, 0, 0)).save(p)
    >>> x = load_image(p, size=(2, 3))
    >>> x.shape, x[:, 0, 0].tolist()
    ((3, 2, 3), [255, 0, 0])
    """
    _pil()  # a missing Pillow is said before anything about the file
    channels = _check_channels("load_image", channels)
    if size is not None:
        size = check_tuple("load_image", "size", size, 2, 1)
    path = Path(path)
    arr = _decode(_read_capped(path), path, size, channels)
    # (H, W) -> (1, H, W); (H, W, 3) -> (3, H, W)
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def _read_capped(path: Path) -> bytes:
    """The bytes of ``path``; a file over :data:`MAX_IMAGE_FILE_BYTES` raises DataError."""
    try:
        with open(path, "rb") as f:
            # read(n) reserves n bytes before reading: ask for what the file
            # holds (one more byte shows a file over the limit)
            held = os.fstat(f.fileno()).st_size or MAX_IMAGE_FILE_BYTES
            data = f.read(min(held, MAX_IMAGE_FILE_BYTES) + 1)
    except IsADirectoryError as exc:
        raise DataError(f"{path}: cannot read image ({exc})") from exc
    if len(data) > MAX_IMAGE_FILE_BYTES:
        raise DataError(f"{path}: image file larger than {MAX_IMAGE_FILE_BYTES} bytes")
    return data


def _decode(data: bytes, path: Path, size: tuple[int, int] | None, channels: int) -> np.ndarray:
    """Decode ``data`` (the file ``path``) to uint8 ``(H, W)`` or ``(H, W, 3)``.

    Upright by EXIF, composited on white, converted and resized as
    :func:`load_image` says; every failure is a DataError naming ``path``.
    """
    Image, ImageOps = _pil()
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that:
            # refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Decoded from memory: Pillow trusts chunk lengths in the file and
            # reads them from a real file with one allocation of that size
            # (2 GB for a crafted PNG); from BytesIO a read stops at the end.
            with Image.open(io.BytesIO(data)) as im:
                im = ImageOps.exif_transpose(im)
                if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                    rgba = im.convert("RGBA")
                    im = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    im.alpha_composite(rgba)
                im = im.convert("L" if channels == 1 else "RGB")
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.Resampling.LANCZOS)
                return np.asarray(im, dtype=np.uint8)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(f"{path}: refusing a possible decompression bomb ({exc})") from exc
    except Image.UnidentifiedImageError as exc:  # its text names an internal BytesIO object
        raise DataError(
            f"{path}: cannot read image: not a known format (expected PNG, JPEG, GIF, BMP, "
            f"TIFF or WebP; the file starts with {data[:8]!r})"
        ) from exc
    except (OSError, ValueError, SyntaxError, MemoryError) as exc:
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc


def image_folder_split(root: str | os.PathLike, split: str | None) -> Path:
    """The folder of class folders for ``split``.

    ``ROOT/train`` for ``"train"`` and ``ROOT/test`` for ``"test"`` when they
    exist, else ``ROOT`` itself; ``None`` means ``ROOT``.
    """
    root = Path(root)
    if split is None:
        return root
    if split not in ("train", "test"):
        raise ValueError(
            f"image_folder_split: split must be None, 'train' or 'test', got {split!r}"
        )
    sub = root / split
    return sub if sub.is_dir() else root


def load_image_folder(
    root: str | os.PathLike,
    size: tuple[int, int],
    channels: int = 3,
    *,
    split: str | None = None,
    class_names: Sequence[str] | None = None,
    skipped: list[tuple[Path, str]] | None = None,
) -> Dataset:
    """Load ``ROOT/CLASS/*.png|jpg|jpeg|bmp|gif`` as one array, resized to ``size``.

    Parameters
    ----------
    root : str or PathLike
        Folder of class folders, or of ``train/`` and ``test/`` holding them.
    size : (H, W)
        Every image is resized (stretched) to this size.
    channels : {1, 3}
        Grey or RGB.
    split : {None, "train", "test"}
        Read ``ROOT/split`` when it exists (see :func:`image_folder_split`).
    class_names : sequence of str, optional
        Fix the label order (e.g. a model's classes when evaluating); folders
        not in it are an error. Default: sorted names of the class folders.
    skipped : list, optional
        When given, an unreadable image is left out and ``(path, reason)`` is
        appended to this list, so that one damaged file does not stop a
        whole folder; by default it raises :class:`DataError`.

    Returns
    -------
    Dataset
        ``images`` uint8 ``(N, C, H, W)``, ``labels`` int64 ``(N,)``,
        ``class_names``. Files are ordered by class, then by name.

    Raises
    ------
    DataError
        No class folders, no images, an unknown class, or an unreadable image
        (without ``skipped``).
    MissingDependencyError
        Pillow is not installed.

    Example
    -------
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for c in ("cat", "dog"):
    ...     (root / c).mkdir()
    ...     Image.new("L", (8, 6)).save(root / c / "a.png")
    >>> ds = load_image_folder(root, size=(4, 4), channels=1)
    >>> ds.images.shape, ds.labels.tolist(), ds.class_names
    ((2, 1, 4, 4), [0, 1], ['cat', 'dog'])
    """
    _pil()
    channels = _check_channels("load_image_folder", channels)
    size = check_tuple("load_image_folder", "size", size, 2, 1)
    folder = image_folder_split(root, split)
    files, labels, names = _class_files(folder, class_names)
    images, ok = read_images(files, size, channels, skipped)
    return Dataset(images, np.asarray(labels, dtype=np.int64)[ok], names)


def _class_files(
    folder: Path, class_names: Sequence[str] | None
) -> tuple[list[Path], list[int], list[str]]:
    """The image files of ``folder/CLASS/``, their labels and the class names.

    Files are ordered by class folder, then by name; the labels index
    ``class_names`` when given (a folder not in it is a DataError), else the
    sorted folder names.
    """
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder (expected ROOT/CLASS/image files)")
    dirs = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not dirs:
        raise DataError(f"{folder}: no class folders found (expected ROOT/CLASS/*.png|jpg)")
    names = list(dirs) if class_names is None else [str(c) for c in class_names]
    index = {c: i for i, c in enumerate(names)}
    unknown = [d for d in dirs if d not in index]
    if unknown:
        raise DataError(f"{folder}: class folders {unknown} are not among the classes {names}")
    files: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        found = sorted(
            p
            for p in (folder / d).iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        files += found
        labels += [index[d]] * len(found)
    if not files:
        raise DataError(
            f"{folder}: no images found (expected {'|'.join(IMAGE_EXTENSIONS)} in class folders)"
        )
    return files, labels, names


def read_images(
    files: Sequence[str | os.PathLike],
    size: tuple[int, int],
    channels: int = 3,
    skipped: list[tuple[Path, str]] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``files`` into one uint8 batch ``(N, channels, *size)``.

    Returns ``(images, kept)``: ``kept`` is the int64 index into ``files`` of
    each decoded image. With a ``skipped`` list, an unreadable file is left
    out and ``(path, reason)`` appended to the list; without, it raises.

    Raises
    ------
    DataError
        An unreadable file (when ``skipped`` is None), naming it.

    Example
    -------
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("L", (3, 3)).save(d / "a.png")
    >>> _ = (d / "b.png").write_bytes(b"not a png")
    >>> bad = []
    >>> images, kept = read_images([d / "a.png", d / "b.png"], (2, 2), 1, bad)
    >>> images.shape, kept.tolist(), [p.name for p, _ in bad]
    ((1, 1, 2, 2), [0], ['b.png'])
    """
    channels = _check_channels("read_images", channels)
    images = np.empty((len(files), channels, *size), dtype=np.uint8)
    kept: list[int] = []
    for i, p in enumerate(files):  # one decode per file: Pillow works image by image
        try:
            images[len(kept)] = load_image(p, size, channels)
        except (DataError, OSError) as exc:
            if skipped is None:
                raise
            skipped.append((Path(p), str(exc)))
            continue
        kept.append(i)
    return images[: len(kept)], np.asarray(kept, dtype=np.int64)
