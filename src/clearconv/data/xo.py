"""The tutorials' X/O toy: 9x9 images of +1 (ink) and -1 (background) pixels.

:func:`xo_canonical` gives the two exact images of Brandon Rohrer's "How
convolutional neural networks work": the X is the two diagonals of the 9x9 grid
from (1, 1) to (7, 7) and from (1, 7) to (7, 1), leaving a one-pixel border of
-1; the O is a ring inside the same border (three pixels flat on each side,
cut corners). :func:`make_xo` draws random variants (shift, scale, aspect,
rotation, stroke thickness, wobbly strokes) so that comparing pixels with the
two templates fails while the classes stay clearly distinct.
"""

from __future__ import annotations

import numpy as np

from clearconv._validate import check_int, check_rng
from clearconv.data.loader import Dataset

__all__ = ["XO_CLASSES", "make_xo", "xo_canonical"]

XO_CLASSES = ["X", "O"]

_O_RING = """
.........
...###...
..#...#..
.#.....#.
.#.....#.
.#.....#.
..#...#..
...###...
.........
"""


def xo_canonical() -> np.ndarray:
    """The tutorial's exact X and O as float32 ``(2, 1, 9, 9)`` of +1/-1 (X first).

    Example
    -------
    >>> x, o = xo_canonical()[:, 0]
    >>> int((x > 0).sum()), int((o > 0).sum()), x[4, 4], o[4, 4]
    (13, 16, np.float32(1.0), np.float32(-1.0))
    """
    i = np.arange(9)
    x = np.full((9, 9), -1.0, np.float32)
    inner = i[1:8]
    x[inner, inner] = 1.0
    x[inner, 8 - inner] = 1.0
    rows = [line for line in _O_RING.strip().splitlines()]
    o = np.where(np.array([list(r) for r in rows]) == "#", 1.0, -1.0).astype(np.float32)
    return np.stack([x, o])[:, None]


def _rotation(theta: np.ndarray) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)  # (n, 2, 2)


def _segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from points ``p`` (Q, 2) to segments ``a -> b`` (n, S, 2): (n, S, Q)."""
    ab = b - a  # (n, S, 2)
    ap = p[None, None] - a[:, :, None]  # (n, S, Q, 2)
    t = np.einsum("nsqd,nsd->nsq", ap, ab) / np.maximum((ab**2).sum(-1), 1e-9)[..., None]
    t = np.clip(t, 0.0, 1.0)
    closest = a[:, :, None] + t[..., None] * ab[:, :, None]
    return np.linalg.norm(p[None, None] - closest, axis=-1)


def make_xo(n: int, rng: np.random.Generator | None = None, size: int = 9) -> Dataset:
    """Draw ``n`` random X and O images (balanced, shuffled).

    Each shape gets a random centre shift (up to two pixels, kept in frame),
    scale (0.75-1.1 of the tutorial's), aspect (0.85-1.15), rotation (+-25
    degrees), stroke half-width (0.4-0.7 pixels) and deformation (X: each
    stroke end moved by about 0.3 pixels; O: radius varied by up to 10% around
    the ring). A pixel is ink (+1) when its centre lies within the stroke
    half-width of the shape (distance to the X's two segments, or to the O's
    ellipse), all samples at once.

    Parameters
    ----------
    n : int
        Number of images.
    rng : numpy.random.Generator, optional
    size : int
        Image side (>= 7); shapes scale with it.

    Returns
    -------
    Dataset
        ``images`` float32 ``(n, 1, size, size)`` of +1/-1, ``labels`` int64
        (0 = X, 1 = O), ``class_names`` ``["X", "O"]``.

    Example
    -------
    >>> ds = make_xo(4, np.random.default_rng(0))
    >>> ds.images.shape, sorted(ds.labels.tolist()), ds.class_names
    ((4, 1, 9, 9), [0, 0, 1, 1], ['X', 'O'])
    """
    n = check_int("make_xo", "n", n, minimum=0)
    size = check_int("make_xo", "size", size, minimum=7)
    rng = check_rng("make_xo", rng)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int64)
    half = (size - 3) / 2  # the tutorial's shapes reach +-3 pixels from the centre of a 9x9 grid
    unit = size / 9
    scale = rng.uniform(0.75, 1.1, n) * half
    aspect = rng.uniform(0.85, 1.15, n)
    hx, hy = scale * np.sqrt(aspect), scale / np.sqrt(aspect)
    theta = np.deg2rad(rng.uniform(-25, 25, n))
    width = rng.uniform(0.4, 0.7, n) * unit
    room = np.maximum((size - 1) / 2 - np.maximum(hx, hy) - 0.2 * unit, 0.0)  # keep it in frame
    centre = rng.uniform(-1.0, 1.0, (n, 2)) * np.minimum(room, 2.0 * unit)[:, None]
    rot = _rotation(theta)  # (n, 2, 2)

    coords = np.arange(size) - (size - 1) / 2
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    p = np.stack([xx.ravel(), yy.ravel()], -1)  # (Q, 2) as (x, y)

    # X: two segments, ends jittered, then scaled, rotated and shifted.
    ends = np.array([[[-1, -1], [1, 1]], [[-1, 1], [1, -1]]], float)  # (S=2, 2 ends, 2)
    ends = ends[None] * np.stack([hx, hy], -1)[:, None, None]  # (n, 2, 2, 2)
    ends = ends + rng.normal(0.0, 0.3 * unit, ends.shape)
    ends = np.einsum("nij,nsej->nsei", rot, ends) + centre[:, None, None]
    dist_x = _segment_distance(p, ends[:, :, 0], ends[:, :, 1]).min(axis=1)  # (n, Q)

    # O: an ellipse with a wobbly radius, in each sample's own frame.
    local = np.einsum("nji,nqj->nqi", rot, p[None] - centre[:, None])  # R^T (p - c): (n, Q, 2)
    rx = hx * rng.uniform(0.9, 1.1, n)
    ry = hy * rng.uniform(0.9, 1.1, n)
    u, v = local[..., 0] / rx[:, None], local[..., 1] / ry[:, None]
    phi = np.arctan2(v, u)
    amp = rng.uniform(0.0, 0.1, (n, 2))
    phase = rng.uniform(0.0, 2 * np.pi, (n, 2))
    radius = (
        1.0 + amp[:, :1] * np.cos(phi + phase[:, :1]) + amp[:, 1:] * np.cos(2 * phi + phase[:, 1:])
    )
    dist_o = np.abs(np.hypot(u, v) - radius) * ((rx + ry) / 2)[:, None]

    dist = np.where(labels[:, None] == 0, dist_x, dist_o)
    ink = dist <= width[:, None]
    images = np.where(ink, 1.0, -1.0).astype(np.float32).reshape(n, 1, size, size)
    return Dataset(images, labels, list(XO_CLASSES))
