"""Convolution kernels as pictures: the first layer in colour, deeper ones as channel mosaics."""

from __future__ import annotations

import numpy as np

from clearconv.nn import Conv1d, Conv2d, Module
from clearconv.viz._image import colorize, mosaic, normalize01

__all__ = ["conv_layers", "filter_image", "filter_tiles"]


def conv_layers(model: Module) -> list[tuple[str, Conv1d | Conv2d]]:
    """``(dotted name, layer)`` of every convolution, in order."""
    net = getattr(model, "net", model)
    return [(n, m) for n, m in net.named_modules() if isinstance(m, (Conv1d, Conv2d))]


def filter_tiles(weight: np.ndarray, per_filter: bool = True) -> np.ndarray:
    """Kernels as tiles in ``[0, 1]``.

    Parameters
    ----------
    weight : numpy.ndarray
        ``(O, C, kH, kW)`` (Conv2d) or ``(O, C, kL)`` (Conv1d, shown as ``kH = 1``).
    per_filter : bool
        Scale each filter to its own range (default), else one range for all.

    Returns
    -------
    numpy.ndarray
        ``(O, kH, kW, 3)`` RGB when ``C == 3`` (the colour the filter looks
        for), else ``(O * C, kH, kW)`` grey tiles, filter by filter, channel by
        channel.

    Example
    -------
    >>> filter_tiles(np.arange(24.0).reshape(2, 3, 2, 2)).shape
    (2, 2, 2, 3)
    >>> t = filter_tiles(np.arange(16.0).reshape(2, 2, 2, 2)); t.shape, t.min(), t.max()
    ((4, 2, 2), np.float32(0.0), np.float32(1.0))
    """
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim == 3:
        w = w[:, :, None, :]  # (O, C, L) -> (O, C, 1, L)
    if w.ndim != 4:
        raise ValueError(
            f"filter_tiles expected weights (O, C, kH, kW) or (O, C, kL), got {w.shape}"
        )
    axis = (1, 2, 3) if per_filter else None
    w01 = normalize01(w, axis=axis)
    o, c, kh, kw = w01.shape
    if c == 3:
        return w01.transpose(0, 2, 3, 1)  # (O, 3, kH, kW) -> (O, kH, kW, 3)
    return w01.reshape(o * c, kh, kw)


def filter_image(weight: np.ndarray, per_filter: bool = True) -> np.ndarray:
    """One uint8 RGB mosaic of a layer's kernels (one row per filter for grey kernels)."""
    w = np.asarray(weight)
    tiles = filter_tiles(w, per_filter)
    c = w.shape[1]
    if tiles.ndim == 4:
        return colorize(mosaic(tiles, pad=1))
    cols = c if c <= 16 else None
    return colorize(mosaic(tiles, cols=cols, pad=1), "gray", 0.0, 1.0)
