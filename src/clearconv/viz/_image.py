"""Arrays to pictures: colour maps, mosaics and PNG bytes (Pillow), no plotting library.

The arrays behind every picture live in the other modules; this one only turns
a ``[0, 1]`` (or signed) array into RGB pixels and PNG bytes, so the HTML
reports and the web page work with Pillow alone.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

__all__ = ["colorize", "data_uri", "mosaic", "normalize01", "png_bytes", "save_png"]

# A few stops of viridis (dark blue -> green -> yellow), linearly interpolated.
_VIRIDIS = np.array(
    [
        [68, 1, 84],
        [59, 82, 139],
        [33, 145, 140],
        [94, 201, 98],
        [253, 231, 37],
    ],
    np.float64,
)
# Diverging: blue (-1) -> white (0) -> red (+1), as the tutorial's colour tables.
_DIVERGING = np.array([[33, 102, 172], [247, 247, 247], [178, 24, 43]], np.float64)


def normalize01(a: np.ndarray, axis: tuple[int, ...] | None = None) -> np.ndarray:
    """Min-max scale to ``[0, 1]`` over ``axis`` (all when None); constant parts give 0.5.

    Example
    -------
    >>> normalize01(np.array([2.0, 4.0, 6.0])).tolist()
    [0.0, 0.5, 1.0]
    """
    a = np.asarray(a, dtype=np.float32)
    lo = a.min(axis=axis, keepdims=True)
    hi = a.max(axis=axis, keepdims=True)
    span = hi - lo
    flat = span <= 1e-12
    out = (a - lo) / np.where(flat, 1.0, span)
    return np.where(flat, np.float32(0.5), out).astype(np.float32)


def _interp(stops: np.ndarray, t: np.ndarray) -> np.ndarray:
    pos = np.clip(t, 0.0, 1.0) * (len(stops) - 1)
    i = np.minimum(pos.astype(np.int64), len(stops) - 2)
    f = (pos - i)[..., None]
    return stops[i] * (1 - f) + stops[i + 1] * f


def colorize(
    a: np.ndarray, cmap: str = "gray", vmin: float | None = None, vmax: float | None = None
) -> np.ndarray:
    """Map a 2-D array to uint8 RGB ``(H, W, 3)``.

    ``cmap`` is ``"gray"`` or ``"viridis"`` (values scaled from ``[vmin, vmax]``,
    default the array's range) or ``"diverging"`` (symmetric around 0: blue
    negative, white zero, red positive; ``vmax`` defaults to ``max |a|``).
    An ``(H, W, 3)`` array in ``[0, 1]`` is taken as RGB already.

    Raises
    ------
    ValueError
        For an unknown colour map or a shape other than (H, W) / (H, W, 3).
    """
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 3 and a.shape[-1] == 3:
        return np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)
    if a.ndim != 2:
        raise ValueError(f"colorize expected an array of shape (H, W) or (H, W, 3), got {a.shape}")
    if cmap == "diverging":
        m = float(np.abs(a).max()) if vmax is None else float(vmax)
        t = 0.5 + 0.5 * a / (m if m > 1e-12 else 1.0)
        rgb = _interp(_DIVERGING, t)
    elif cmap in ("gray", "viridis"):
        lo = float(a.min()) if vmin is None else float(vmin)
        hi = float(a.max()) if vmax is None else float(vmax)
        t = (a - lo) / (hi - lo) if hi - lo > 1e-12 else np.full_like(a, 0.5)
        if cmap == "gray":
            rgb = np.repeat(np.clip(t, 0, 1)[..., None] * 255, 3, -1)
        else:
            rgb = _interp(_VIRIDIS, t)
    else:
        raise ValueError(f"colorize: cmap must be 'gray', 'viridis' or 'diverging', got {cmap!r}")
    return np.round(rgb).astype(np.uint8)


def mosaic(
    tiles: np.ndarray, cols: int | None = None, pad: int = 1, fill: float = 1.0
) -> np.ndarray:
    """Arrange ``(N, h, w)`` or ``(N, h, w, 3)`` tiles in a grid with ``pad`` pixels between.

    Returns ``(rows*(h+pad)-pad, cols*(w+pad)-pad[, 3])``; empty cells and gaps
    hold ``fill``.

    Example
    -------
    >>> mosaic(np.zeros((3, 2, 2)), cols=2).shape
    (5, 5)
    """
    tiles = np.asarray(tiles, dtype=np.float32)
    n, h, w = tiles.shape[:3]
    if n == 0:
        raise ValueError("mosaic: no tiles")
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    extra = tiles.shape[3:]
    grid = np.full((rows * cols, h + pad, w + pad, *extra), fill, np.float32)
    grid[:n, :h, :w] = tiles
    # (rows*cols, h+pad, w+pad, ...) -> (rows, h+pad, cols, w+pad, ...) -> image
    grid = grid.reshape(rows, cols, h + pad, w + pad, *extra).swapaxes(1, 2)
    img = grid.reshape(rows * (h + pad), cols * (w + pad), *extra)
    return img[: rows * (h + pad) - pad, : cols * (w + pad) - pad]


def png_bytes(rgb: np.ndarray, scale: int = 1) -> bytes:
    """PNG bytes of a uint8 ``(H, W, 3)`` (or 2-D grey) image, enlarged by ``scale`` (nearest)."""
    from PIL import Image

    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = colorize(rgb)
    if scale > 1:
        rgb = rgb.repeat(scale, axis=0).repeat(scale, axis=1)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def save_png(rgb: np.ndarray, path: str | Path, scale: int = 1) -> Path:
    """Write :func:`png_bytes` to ``path``; returns the path."""
    path = Path(path)
    path.write_bytes(png_bytes(rgb, scale))
    return path


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for inlining a PNG in HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def auto_scale(h: int, w: int, target: int = 112) -> int:
    """An integer zoom that makes a small map about ``target`` pixels on its long side."""
    return max(1, min(16, target // max(h, w, 1)))
