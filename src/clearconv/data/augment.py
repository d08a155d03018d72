"""Random augmentation of whole batches ``(N, C, H, W)`` in NumPy, one gather per step.

Every function takes an explicit ``rng`` and returns float32. Apply them
*before* :func:`~clearconv.data.normalize`, on images in ``[0, 1]``, so that the
fill value 0 of uncovered pixels is the background (black) as for MNIST.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from clearconv._validate import check_float, check_int, check_rng, check_tuple

__all__ = ["Augment", "random_affine", "random_crop", "random_flip", "random_shift", "shift_images"]


def _batch(owner: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{owner} expected a batch of shape (N, C, H, W), got {x.shape}")
    if x.dtype.kind not in "uif":
        raise TypeError(f"{owner} expected a numeric array, got dtype {x.dtype}")
    return x.astype(np.float32, copy=False)


def shift_images(x: np.ndarray, dy, dx, fill: float = 0.0) -> np.ndarray:
    """Move each image by whole pixels: ``out[n, c, i, j] = x[n, c, i - dy[n], j - dx[n]]``.

    Pixels shifted in from outside are ``fill``.

    Parameters
    ----------
    x : numpy.ndarray
        ``(N, C, H, W)``.
    dy, dx : array_like of int, shape ``(N,)``
        Down and right shifts (negative: up and left).
    fill : float

    Returns
    -------
    numpy.ndarray
        float32 ``(N, C, H, W)``.

    Example
    -------
    >>> x = np.zeros((1, 1, 3, 3), np.float32); x[0, 0, 1, 1] = 1
    >>> shift_images(x, [1], [-1])[0, 0]
    array([[0., 0., 0.],
           [0., 0., 0.],
           [1., 0., 0.]], dtype=float32)
    """
    x = _batch("shift_images", x)
    n, _, h, w = x.shape
    dy = np.asarray(dy, dtype=np.int64).reshape(-1)
    dx = np.asarray(dx, dtype=np.int64).reshape(-1)
    if dy.shape != (n,) or dx.shape != (n,):
        raise ValueError(
            f"shift_images: dy and dx must have shape ({n},), got {dy.shape}, {dx.shape}"
        )
    py = int(min(np.abs(dy).max(initial=0), h))
    px = int(min(np.abs(dx).max(initial=0), w))
    padded = np.pad(x, ((0, 0), (0, 0), (py, py), (px, px)), constant_values=fill)
    # window (py - dy, px - dx) of the padded image is the image moved by (dy, dx)
    oy = np.clip(py - dy, 0, 2 * py)
    ox = np.clip(px - dx, 0, 2 * px)
    return _windows(padded, (h, w), oy, ox)


def _windows(padded: np.ndarray, size: tuple[int, int], oy, ox) -> np.ndarray:
    # (N, C, Hp, Wp) -> view (N, C, Hp-h+1, Wp-w+1, h, w); the advanced indices on axes 0, 2, 3
    # are split by a slice, so their broadcast axis (N,) goes first: result (N, C, h, w).
    views = sliding_window_view(padded, size, axis=(2, 3))
    return np.ascontiguousarray(views[np.arange(len(padded)), :, oy, ox])


def random_crop(
    x: np.ndarray,
    size: tuple[int, int] | int,
    rng: np.random.Generator,
    padding: int = 0,
    fill: float = 0.0,
) -> np.ndarray:
    """Pad every image by ``padding`` and cut a random ``size`` window from each.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, C, size[0], size[1])``.

    Example
    -------
    >>> random_crop(np.ones((2, 3, 8, 8)), 6, np.random.default_rng(0), padding=1).shape
    (2, 3, 6, 6)
    """
    x = _batch("random_crop", x)
    rng = check_rng("random_crop", rng)
    size = check_tuple("random_crop", "size", size, 2, 1)
    padding = check_int("random_crop", "padding", padding, minimum=0)
    n, _, h, w = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    if size[0] > hp or size[1] > wp:
        raise ValueError(f"random_crop: size {size} is larger than the padded image ({hp}, {wp})")
    padded = np.pad(
        x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), constant_values=fill
    )
    oy = rng.integers(0, hp - size[0] + 1, n)
    ox = rng.integers(0, wp - size[1] + 1, n)
    return _windows(padded, size, oy, ox)


def random_shift(
    x: np.ndarray, max_shift: int, rng: np.random.Generator, fill: float = 0.0
) -> np.ndarray:
    """Shift each image by a random whole number of pixels in ``[-max_shift, max_shift]`` per axis.

    Same as ``random_crop(x, (H, W), rng, padding=max_shift)``.
    """
    x = _batch("random_shift", x)
    return random_crop(x, x.shape[2:], rng, padding=max_shift, fill=fill)


def random_flip(x: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right with probability ``p`` (not for digits or text)."""
    x = _batch("random_flip", x)
    rng = check_rng("random_flip", rng)
    p = check_float("random_flip", "p", p, 0.0, 1.0)
    flip = rng.random(len(x)) < p
    return np.where(flip[:, None, None, None], x[..., ::-1], x).astype(np.float32, copy=False)


def random_affine(
    x: np.ndarray,
    rng: np.random.Generator,
    rotate: float = 10.0,
    scale: float = 0.1,
    fill: float = 0.0,
) -> np.ndarray:
    """Rotate each image by ``U(-rotate, rotate)`` degrees and scale by ``U(1-scale, 1+scale)``.

    About the image centre, bilinear sampling, ``fill`` outside. Each output
    pixel ``p`` reads the input at ``A_n^{-1} (p - c) + c``; the four
    neighbours of all samples are fetched with one gather each.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, C, H, W)``.

    Example
    -------
    >>> x = np.random.default_rng(0).random((2, 1, 5, 5)).astype(np.float32)
    >>> bool(np.allclose(random_affine(x, np.random.default_rng(1), 0.0, 0.0), x))
    True
    """
    x = _batch("random_affine", x)
    rng = check_rng("random_affine", rng)
    rotate = check_float("random_affine", "rotate", rotate, 0.0, 180.0)
    scale = check_float("random_affine", "scale", scale, 0.0, 1.0, open_max=True)
    n, c, h, w = x.shape
    theta = np.deg2rad(rng.uniform(-rotate, rotate, n))
    zoom = rng.uniform(1.0 - scale, 1.0 + scale, n)
    # inverse map: rotate by -theta, divide by zoom
    cos, sin = np.cos(theta) / zoom, np.sin(theta) / zoom
    cy, cx = (h - 1) / 2, (w - 1) / 2
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")  # (H, W)
    src_y = cos[:, None, None] * yy[None] - sin[:, None, None] * xx[None] + cy  # (N, H, W)
    src_x = sin[:, None, None] * yy[None] + cos[:, None, None] * xx[None] + cx
    # pad one ring of fill and clamp coordinates to it, so outside reads give fill
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=fill)
    sy = np.clip(src_y, -1.0, h) + 1.0
    sx = np.clip(src_x, -1.0, w) + 1.0
    y0 = np.floor(sy).astype(np.int64)
    x0 = np.floor(sx).astype(np.int64)
    wy = (sy - y0).astype(np.float32)[:, None]  # (N, 1, H, W)
    wx = (sx - x0).astype(np.float32)[:, None]
    y1 = np.minimum(y0 + 1, h + 1)
    x1 = np.minimum(x0 + 1, w + 1)
    idx = np.arange(n)[:, None, None]

    def gather(yi, xi):
        # advanced indices on axes 0, 2, 3 split by a slice: (N, H, W) first, then C
        return padded[idx, :, yi, xi].transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)

    top = gather(y0, x0) * (1 - wx) + gather(y0, x1) * wx
    bottom = gather(y1, x0) * (1 - wx) + gather(y1, x1) * wx
    return np.ascontiguousarray(top * (1 - wy) + bottom * wy, dtype=np.float32)


@dataclass(frozen=True)
class Augment:
    """Batch augmentation: random affine (rotation, scaling), shift, optional flip.

    Parameters
    ----------
    shift : int
        Largest shift in pixels per axis (0: none).
    rotate : float
        Largest rotation in degrees (0: none).
    scale : float
        Largest relative zoom change (0: none).
    flip : bool
        Random left-right mirror; leave off for digits.
    fill : float
        Value of uncovered pixels (0: black, for images in ``[0, 1]``).

    Example
    -------
    >>> aug = Augment(shift=2, rotate=10, scale=0.1)
    >>> aug(np.zeros((4, 1, 28, 28), np.float32), np.random.default_rng(0)).shape
    (4, 1, 28, 28)
    """

    shift: int = 2
    rotate: float = 10.0
    scale: float = 0.1
    flip: bool = False
    fill: float = 0.0

    def __post_init__(self) -> None:
        check_int("Augment", "shift", self.shift, minimum=0)
        check_float("Augment", "rotate", self.rotate, 0.0, 180.0)
        check_float("Augment", "scale", self.scale, 0.0, 1.0, open_max=True)
        check_float("Augment", "fill", self.fill)
        if not isinstance(self.flip, bool):
            raise TypeError(f"Augment: flip must be a bool, got {self.flip!r}")

    def __call__(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment a batch ``(N, C, H, W)``; float32 out."""
        x = _batch("Augment", x)
        rng = check_rng("Augment", rng)
        if self.rotate or self.scale:
            x = random_affine(x, rng, self.rotate, self.scale, self.fill)
        if self.shift:
            x = random_shift(x, self.shift, rng, self.fill)
        if self.flip:
            x = random_flip(x, rng)
        return x
