"""Segmentation folders (an image and a mask of class indices per scene) and paired augmentation.

Layout::

    FOLDER/train/images/NAME.png|jpg    the scenes (RGB or grey)
    FOLDER/train/masks/NAME.png         8-bit single-channel PNG, pixel value = class index
    FOLDER/test/...                     the same (optional)
    FOLDER/classes.txt                  one class name a line, in index order (optional;
                                        else "0", "1", ... up to the largest mask value)

A mask whose size differs from its image, a value beyond the classes or a
missing mask is a :class:`~clearconv.data.DataError` naming the file; with
``skip_bad=True`` (training) such pairs are left out and listed instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clearconv._validate import check_float, check_int, check_rng
from clearconv.data.augment import _windows
from clearconv.data.folder import IMAGE_EXTENSIONS, _pil, load_image
from clearconv.data.idx import DataError
from clearconv.data.loader import Dataset

__all__ = [
    "PairedAugment",
    "is_segmentation_folder",
    "load_mask",
    "load_segmentation_folder",
    "segmentation_classes",
]

#: Mask value for pixels an augmentation uncovered: the loss ignores them
#: (``CrossEntropyLoss``'s default ``ignore_index``).
IGNORE = -100


def is_segmentation_folder(root: str | os.PathLike) -> bool:
    """True when ``root`` has ``train/images`` and ``train/masks`` (the layout above)."""
    root = Path(root)
    return (root / "train" / "images").is_dir() and (root / "train" / "masks").is_dir()


def load_mask(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an 8-bit single-channel mask PNG as uint8 ``(H, W)``; resized by nearest neighbour.

    Raises
    ------
    DataError
        Unreadable, or not single-channel 8-bit (a colour or 16-bit PNG); names the file.
    """
    image_mod, _ = _pil()
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: mask not found")
    try:
        with image_mod.open(path) as im:
            if im.mode not in ("L", "P", "1"):
                raise DataError(
                    f"{path}: a mask must be an 8-bit single-channel PNG of class indices, "
                    f"got mode {im.mode}"
                )
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), image_mod.Resampling.NEAREST)
            return np.asarray(im.convert("L") if im.mode == "1" else im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read mask ({type(exc).__name__}: {exc})") from exc


def _pairs(folder: Path) -> list[tuple[Path, Path]]:
    images = folder / "images"
    if not images.is_dir():
        raise DataError(f"{folder}: no images/ folder (expected {folder}/images/NAME.png|jpg)")
    files = sorted(
        p for p in images.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise DataError(f"{images}: no images found (expected NAME.png|jpg)")
    return [(p, folder / "masks" / (p.stem + ".png")) for p in files]


def segmentation_classes(root: str | os.PathLike) -> list[str]:
    """The class names: ``classes.txt``, else ``"0" .. str(max value)`` of the training masks."""
    root = Path(root)
    names_file = root / "classes.txt"
    if names_file.is_file():
        names = [ln.strip() for ln in names_file.read_text(encoding="utf-8").splitlines()]
        names = [n for n in names if n]
        if len(names) < 2:
            raise DataError(f"{names_file}: expected at least two class names, one a line")
        return names
    top = 0
    for _, mask in _pairs(root / "train"):
        if mask.is_file():
            top = max(top, int(load_mask(mask).max()))
    return [str(i) for i in range(max(top, 1) + 1)]


def load_segmentation_folder(
    root: str | os.PathLike,
    split: str,
    class_names: Sequence[str],
    size: tuple[int, int] | None = None,
    channels: int = 3,
    *,
    skip_bad: bool = False,
) -> tuple[Dataset, list[str]]:
    """Load ``root/split`` as images and masks.

    Parameters
    ----------
    root : path
    split : {"train", "test"}
    class_names : sequence of str
        Mask values must be below ``len(class_names)``.
    size : (H, W), optional
        Resize images (Lanczos) and masks (nearest) to this size; by default
        every image must have the size of the first.
    channels : {1, 3}
    skip_bad : bool
        Leave out bad pairs (and list them) instead of raising.

    Returns
    -------
    (Dataset, skipped)
        ``images`` uint8 ``(N, C, H, W)``, ``labels`` int64 masks ``(N, H, W)``;
        ``skipped``: one line per pair left out, naming the file and why.

    Raises
    ------
    DataError
        A missing mask, a mask of another size than its image, a value beyond
        the classes, an unreadable file (naming it); no images at all.
    """
    folder = Path(root) / split
    k = len(class_names)
    images: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    skipped: list[str] = []
    for img_path, mask_path in _pairs(folder):  # one decode per file
        try:
            img = load_image(img_path, size, channels)
            shape = img.shape[1:]
            if size is None and images and shape != images[0].shape[1:]:
                raise DataError(
                    f"{img_path}: image of size {shape[1]}x{shape[0]}, the others are "
                    f"{images[0].shape[2]}x{images[0].shape[1]} (give --input-shape to resize)"
                )
            if not mask_path.is_file():
                raise DataError(f"{img_path}: no mask {mask_path}")
            mask = load_mask(mask_path)
            if mask.shape != shape and size is None:
                raise DataError(
                    f"{mask_path}: mask of size {mask.shape[1]}x{mask.shape[0]} for an image of "
                    f"{shape[1]}x{shape[0]}"
                )
            if size is not None:
                mask = load_mask(mask_path, size)
            if mask.max() >= k:
                raise DataError(
                    f"{mask_path}: mask value {int(mask.max())} is beyond the {k} classes "
                    f"(0..{k - 1})"
                )
        except DataError as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
            continue
        images.append(img)
        masks.append(mask)
    if not images:
        raise DataError(f"{folder}: no usable image and mask pairs ({len(skipped)} skipped)")
    data = Dataset(np.stack(images), np.stack(masks).astype(np.int64), list(class_names))
    return data, skipped


def _affine_coords(n, h, w, rng, rotate, scale):
    """Source coordinates ``(N, H, W)`` of a random rotation and zoom about the centre."""
    theta = np.deg2rad(rng.uniform(-rotate, rotate, n))
    zoom = rng.uniform(1.0 - scale, 1.0 + scale, n)
    cos, sin = (np.cos(theta) / zoom)[:, None, None], (np.sin(theta) / zoom)[:, None, None]
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    return cos * yy - sin * xx + cy, sin * yy + cos * xx + cx


@dataclass(frozen=True)
class PairedAugment:
    """The same random flips, quarter turns, rotations and shifts for images and their masks.

    Images are sampled bilinearly, masks by nearest neighbour (a class index
    is never blended); pixels uncovered by a rotation or a shift get
    ``fill`` in the image and :data:`IGNORE` (-100) in the mask, which
    ``CrossEntropyLoss`` leaves out.

    Parameters
    ----------
    flip : bool
        Random left-right and up-down mirrors.
    rot90 : bool
        Random quarter turns (square images).
    rotate : float
        Largest free rotation in degrees (0: none).
    scale : float
        Largest relative zoom change (0: none).
    shift : int
        Largest shift in pixels per axis (0: none).
    fill : float

    Example
    -------
    >>> x, m = np.zeros((2, 3, 8, 8), np.float32), np.zeros((2, 8, 8), np.int64)
    >>> xa, ma = PairedAugment(rotate=10, shift=1)(x, m, np.random.default_rng(0))
    >>> xa.shape, ma.shape, ma.dtype
    ((2, 3, 8, 8), (2, 8, 8), dtype('int64'))
    """

    flip: bool = True
    rot90: bool = False
    rotate: float = 0.0
    scale: float = 0.0
    shift: int = 0
    fill: float = 0.0

    def __post_init__(self) -> None:
        check_float("PairedAugment", "rotate", self.rotate, 0.0, 180.0)
        check_float("PairedAugment", "scale", self.scale, 0.0, 1.0, open_max=True)
        check_int("PairedAugment", "shift", self.shift, minimum=0)

    def __call__(
        self, x: np.ndarray, masks: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment ``x`` (N, C, H, W) and ``masks`` (N, H, W) alike; float32 and int64 out."""
        rng = check_rng("PairedAugment", rng)
        if x.ndim != 4 or masks.shape != (x.shape[0], *x.shape[2:]):
            raise ValueError(
                f"PairedAugment expected images (N, C, H, W) and masks (N, H, W), "
                f"got {x.shape} and {masks.shape}"
            )
        x = x.astype(np.float32, copy=False)
        masks = masks.astype(np.int64, copy=False)
        n, _, h, w = x.shape
        if self.flip:
            lr = rng.random((n, 1, 1)) < 0.5
            ud = rng.random((n, 1, 1)) < 0.5
            x = np.where(lr[:, None], x[..., ::-1], x)
            masks = np.where(lr, masks[..., ::-1], masks)
            x = np.where(ud[:, None], x[..., ::-1, :], x)
            masks = np.where(ud, masks[..., ::-1, :], masks)
        if self.rot90 and h == w:
            turn = rng.random((n, 1, 1)) < 0.5  # with the flips: all 8 symmetries
            x = np.where(turn[:, None], x.swapaxes(2, 3), x)
            masks = np.where(turn, masks.swapaxes(1, 2), masks)
        if self.rotate or self.scale:
            x, masks = self._affine(x, masks, rng)
        if self.shift:
            s = self.shift
            pad = ((0, 0), (s, s), (s, s))
            xp = np.pad(x, ((0, 0), *pad), constant_values=self.fill)
            mp = np.pad(masks, pad, constant_values=IGNORE)[:, None]
            oy, ox = rng.integers(0, 2 * s + 1, (2, n))
            x, masks = _windows(xp, (h, w), oy, ox), _windows(mp, (h, w), oy, ox)[:, 0]
        return np.ascontiguousarray(x), np.ascontiguousarray(masks)

    def _affine(self, x, masks, rng):
        n, _, h, w = x.shape
        sy, sx = _affine_coords(n, h, w, rng, self.rotate, self.scale)
        idx = np.arange(n)[:, None, None]
        # Masks: the nearest source pixel, IGNORE outside the image.
        ny, nx = np.round(sy).astype(np.int64), np.round(sx).astype(np.int64)
        inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        m = np.where(inside, masks[idx, np.clip(ny, 0, h - 1), np.clip(nx, 0, w - 1)], IGNORE)
        # Images: bilinear from a copy padded by one ring of fill.
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=self.fill)
        py, px = np.clip(sy, -1.0, h) + 1.0, np.clip(sx, -1.0, w) + 1.0
        y0, x0 = np.floor(py).astype(np.int64), np.floor(px).astype(np.int64)
        y1, x1 = np.minimum(y0 + 1, h + 1), np.minimum(x0 + 1, w + 1)
        wy = (py - y0).astype(np.float32)[:, None]
        wx = (px - x0).astype(np.float32)[:, None]

        def gather(yi, xi):  # (N, H, W, C) -> (N, C, H, W)
            return padded[idx, :, yi, xi].transpose(0, 3, 1, 2)

        top = gather(y0, x0) * (1 - wx) + gather(y0, x1) * wx
        bottom = gather(y1, x0) * (1 - wx) + gather(y1, x1) * wx
        return (top * (1 - wy) + bottom * wy).astype(np.float32), m
