"""A synthetic segmentation set: circles, squares and triangles on striped, noisy backgrounds.

Every pixel has a class: 0 background, 1 circle, 2 square, 3 triangle. Each
scene has 1 to 4 shapes (random size, rotation and colour, later ones on top)
over stripes of two random colours at a random angle and period, with
Gaussian noise over all. Scenes are drawn for the whole batch at once: each
shape slot is a boolean map ``(N, H, W)`` from broadcast coordinate tests.

Write the folder format :mod:`clearconv.data.segment` reads::

    python -m clearconv.data.shapes OUT [--train 600] [--test 150] [--size 64] [--seed 0]

gives ``OUT/train/images/00000.png``, ``OUT/train/masks/00000.png``, the same
under ``OUT/test/`` and ``OUT/classes.txt``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from clearconv._validate import check_int, check_rng

__all__ = ["SHAPE_CLASSES", "make_shapes", "write_shapes_folder"]

SHAPE_CLASSES = ("background", "circle", "square", "triangle")
#: Shapes per scene at most (at least one).
MAX_SHAPES = 4


def _stripes(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Backgrounds ``(N, 3, S, S)`` in [0, 1]: two colours in stripes of random angle and period."""
    angle = rng.uniform(0, np.pi, n)[:, None, None]
    period = rng.uniform(4, 14, n)[:, None, None]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) / period  # (N, S, S)
    soft = rng.uniform(0, 1, n)[:, None, None] < 0.5  # sine or hard-edged stripes
    t = np.where(soft, 0.5 + 0.5 * np.sin(2 * np.pi * phase), (phase % 1.0) < 0.5)
    c0, c1 = rng.uniform(0, 1, (2, n, 3, 1, 1))
    return c0 + (c1 - c0) * t[:, None]


def _shape_masks(kind: np.ndarray, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean maps ``(N, S, S)``: a shape of class ``kind[i]`` (1-3) in scene ``i``."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r = rng.uniform(0.09, 0.22, n)[:, None, None] * size  # radius / half-width / circumradius
    cy, cx = (rng.uniform(0.1, 0.9, (2, n))[:, :, None, None] * size) - 0.5
    theta = rng.uniform(0, 2 * np.pi, n)[:, None, None]
    dy, dx = yy - cy, xx - cx  # (N, S, S) offsets from the centre
    u = dx * np.cos(theta) + dy * np.sin(theta)  # rotated coordinates
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    circle = dy**2 + dx**2 <= r**2
    square = (np.abs(u) <= r * 0.8) & (np.abs(v) <= r * 0.8)
    # An equilateral triangle: inside three edges at 0.7 r from the centre (about the area
    # of the square).
    tri = np.ones_like(circle)
    for k in range(3):  # its three edges
        a = 2 * np.pi * k / 3
        tri &= u * np.cos(a) + v * np.sin(a) <= 0.7 * r
    kinds = kind[:, None, None]
    return np.where(kinds == 1, circle, np.where(kinds == 2, square, tri))


def make_shapes(
    n: int, rng: np.random.Generator, size: int = 64, noise: float = 0.08
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` scenes.

    Returns
    -------
    (images, masks)
        uint8 ``(N, 3, size, size)`` and uint8 ``(N, size, size)`` class indices
        in ``[0, 4)`` (:data:`SHAPE_CLASSES`).

    Example
    -------
    >>> images, masks = make_shapes(8, np.random.default_rng(0), size=32)
    >>> images.shape, masks.shape, sorted(set(np.unique(masks)) - {0}) != []
    ((8, 3, 32, 32), (8, 32, 32), True)
    """
    n = check_int("make_shapes", "n", n, 1)
    size = check_int("make_shapes", "size", size, 8)
    rng = check_rng("make_shapes", rng)
    images = _stripes(n, size, rng)
    masks = np.zeros((n, size, size), np.uint8)
    count = rng.integers(1, MAX_SHAPES + 1, n)
    for slot in range(MAX_SHAPES):  # a loop over shape slots; every scene at once
        kind = rng.integers(1, 4, n)
        inside = _shape_masks(kind, n, size, rng) & (slot < count)[:, None, None]
        colour = rng.uniform(0, 1, (n, 3, 1, 1))
        images = np.where(inside[:, None], colour, images)
        masks = np.where(inside, kind[:, None, None], masks).astype(np.uint8)
    images = images + rng.normal(0, noise, images.shape)
    return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8), masks


def _save_png(array: np.ndarray, path: Path) -> None:
    """Write one PNG atomically (a temporary file, then a rename)."""
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(array).save(tmp, format="PNG")
    os.replace(tmp, path)


def write_shapes_folder(
    root: str | os.PathLike, train: int = 600, test: int = 150, size: int = 64, seed: int = 0
) -> Path:
    """Write a segmentation folder of :func:`make_shapes` scenes; returns ``root``.

    Layout: ``root/{train,test}/images/NNNNN.png`` (RGB), ``.../masks/NNNNN.png``
    (8-bit grey, class indices) and ``root/classes.txt``. The test scenes come
    from a stream of their own (``[seed, 1]``), never the training one.
    """
    root = Path(root)
    for split, count in (("train", train), ("test", test)):
        images, masks = make_shapes(
            count, np.random.default_rng([seed, int(split == "test")]), size
        )
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(count):  # one file per scene
            _save_png(images[i].transpose(1, 2, 0), root / split / "images" / f"{i:05d}.png")
            _save_png(masks[i], root / split / "masks" / f"{i:05d}.png")
    tmp = root / ".classes.txt.tmp"
    tmp.write_text("\n".join(SHAPE_CLASSES) + "\n", encoding="utf-8")
    os.replace(tmp, root / "classes.txt")
    return root


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m clearconv.data.shapes",
        description="Write a synthetic segmentation folder (circles, squares, triangles).",
    )
    p.add_argument("out", help="folder to write (created)")
    p.add_argument("--train", type=int, default=600, help="training scenes (default 600)")
    p.add_argument("--test", type=int, default=150, help="test scenes (default 150)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        root = write_shapes_folder(args.out, args.train, args.test, args.size, args.seed)
    except (ValueError, TypeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.train} training and {args.test} test scenes to {root}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
