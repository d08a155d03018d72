"""Per-channel normalisation and the MNIST preprocessing of a person's digit photo.

Units: uint8 images are scaled to ``[0, 1]`` (divided by 255) before anything
else, by :func:`channel_stats` and :func:`normalize` alike, so the stored mean
and std are in ``[0, 1]`` units and apply to uint8 and float images the same
way. Float images are taken as already in ``[0, 1]``.
"""

from __future__ import annotations

import numpy as np

from clearconv._validate import check_int
from clearconv.backend import quiet_products

__all__ = ["channel_stats", "mnist_preprocess", "normalize", "resize_linear", "to_float"]


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in ``[0, 1]``; float arrays -> float32 unchanged in value."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.astype(np.float32) * np.float32(1 / 255)
    if images.dtype.kind != "f":
        raise TypeError(f"expected uint8 or float images, got dtype {images.dtype}")
    return images.astype(np.float32, copy=False)


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation, computed in chunks.

    .. math:: \\mu_c = \\frac{1}{NHW}\\sum_{n,h,w} x_{nchw}, \\quad
              \\sigma_c = \\sqrt{\\frac{1}{NHW}\\sum_{n,h,w} x_{nchw}^2 - \\mu_c^2}

    Sums are float64 accumulators over ``chunk`` samples at a time, so memory
    stays bounded for large uint8 sets. A constant channel gets std 1 (so
    normalising it stays finite).

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, C, H, W)`` or ``(N, H, W)`` (one channel); uint8 is scaled by 1/255.
    chunk : int
        Samples per step.

    Returns
    -------
    (mean, std) : two float64 arrays of shape ``(C,)``

    Example
    -------
    >>> x = np.array([[[[0, 255]]], [[[0, 255]]]], np.uint8)  # (2, 1, 1, 2)
    >>> channel_stats(x)
    (array([0.5]), array([0.5]))
    """
    chunk = check_int("channel_stats", "chunk", chunk, minimum=1)
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(
            f"channel_stats: expected images of shape (N, C, H, W) or (N, H, W) with N > 0, "
            f"got {images.shape}"
        )
    c = images.shape[1]
    total = np.zeros(c)
    total_sq = np.zeros(c)
    for start in range(0, len(images), chunk):  # chunks of samples, not samples
        x = images[start : start + chunk].astype(np.float64)
        if images.dtype == np.uint8:
            x *= 1 / 255
        total += x.sum(axis=(0, 2, 3))
        total_sq += np.einsum("nchw,nchw->c", x, x)
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std[std < 1e-12] = 1.0
    return mean, std


def normalize(images: np.ndarray, mean, std) -> np.ndarray:
    """``(x - mean_c) / std_c`` per channel, as float32 (uint8 scaled to ``[0, 1]`` first).

    Parameters
    ----------
    images : numpy.ndarray
        Channel axis at ``-3``: ``(N, C, H, W)``, ``(C, H, W)``; or any
        ``(..., H, W)`` when there is one channel.
    mean, std : array_like of shape ``(C,)``
        From :func:`channel_stats` (``[0, 1]`` units); std must be positive.

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``images``.

    Example
    -------
    >>> normalize(np.array([[[0, 255]]], np.uint8), [0.5], [0.5])
    array([[[-1.,  1.]]], dtype=float32)
    """
    x = to_float(images)
    mean = np.asarray(mean, dtype=np.float32).reshape(-1)
    std = np.asarray(std, dtype=np.float32).reshape(-1)
    if mean.shape != std.shape or mean.size == 0:
        raise ValueError(
            f"normalize: mean and std must have the same shape (C,), "
            f"got {mean.shape} and {std.shape}"
        )
    if not np.all(std > 0):
        raise ValueError(f"normalize: std must be positive, got {std.tolist()}")
    c = mean.size
    if c != 1 and (x.ndim < 3 or x.shape[-3] != c):
        raise ValueError(
            f"normalize: expected images with {c} channels at axis -3, got shape {x.shape}"
        )
    return ((x - mean[:, None, None]) / std[:, None, None]).astype(np.float32, copy=False)


def _linear_weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` matrix resampling a 1-D signal with a triangle filter.

    The filter widens by ``n_in / n_out`` when shrinking (anti-aliasing, like
    Pillow's bilinear), so it averages all covered pixels.
    """
    scale = n_out / n_in
    support = max(1.0, 1.0 / scale)
    centre = (np.arange(n_out) + 0.5) / scale - 0.5  # output pixel centres in input coordinates
    w = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None, :] - centre[:, None]) / support)
    return w / w.sum(axis=1, keepdims=True)


def resize_linear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D float image with anti-aliased linear interpolation (two matrix products)."""
    h, w = image.shape
    with quiet_products():
        return _linear_weights(h, size[0]) @ image @ _linear_weights(w, size[1]).T


def mnist_preprocess(img: np.ndarray, threshold: float = 0.2) -> np.ndarray:
    """Turn a photo or scan of one digit into an MNIST-like 28x28 image.

    Steps (as for the original MNIST): grey; invert when the background
    (median of the border pixels) is light; stretch so background is 0 and
    the strongest ink 1, zeroing values below ``threshold``; crop to the ink's
    bounding box; resize to fit 20x20 keeping the aspect ratio; paste into
    28x28 so the centre of mass falls at the centre.

    Parameters
    ----------
    img : numpy.ndarray
        ``(H, W)``, ``(1, H, W)``, ``(3, H, W)`` or ``(H, W, 3)``; uint8, or
        float in ``[0, 1]``.
    threshold : float
        Ink level (after stretching) below which a pixel counts as background.

    Returns
    -------
    numpy.ndarray
        uint8 ``(28, 28)``, 0 = background, 255 = ink (all zeros if no ink).

    Example
    -------
    >>> page = np.full((60, 40), 230, np.uint8)   # light paper
    >>> page[10:50, 18:22] = 20                    # a dark "1"
    >>> out = mnist_preprocess(page)
    >>> out.shape, out.dtype, int(out[14, 14]) > 200, int(out[0, 0])
    ((28, 28), dtype('uint8'), True, 0)
    """
    x = np.asarray(img)
    if x.ndim == 3 and x.shape[-1] == 3 and x.shape[0] not in (1, 3):
        x = np.moveaxis(x, -1, 0)  # (H, W, 3) -> (3, H, W)
    if x.ndim == 3 and x.shape[0] in (1, 3):
        x = to_float(x)
        # ITU-R 601 luma, as Pillow's "L" conversion
        grey = x[0] if x.shape[0] == 1 else np.tensordot([0.299, 0.587, 0.114], x, axes=1)
    elif x.ndim == 2:
        grey = to_float(x)
    else:
        raise ValueError(
            f"mnist_preprocess: expected an image of shape (H, W), (C, H, W) or (H, W, 3), "
            f"got {x.shape}"
        )
    grey = grey.astype(np.float64)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 0.5:
        grey = 1.0 - grey
        border = 1.0 - border
    background = np.median(border)
    peak = grey.max()
    out = np.zeros((28, 28), np.uint8)
    if peak - background < 1e-6:
        return out
    ink = np.clip((grey - background) / (peak - background), 0.0, 1.0)
    ink[ink < threshold] = 0.0
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return out
    ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = ink.shape
    scale = 20.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.clip(resize_linear(ink, (nh, nw)), 0.0, 1.0)
    mass = small.sum()
    if mass <= 0:
        return out
    cy = (small.sum(axis=1) @ np.arange(nh)) / mass
    cx = (small.sum(axis=0) @ np.arange(nw)) / mass
    # put the centre of mass at pixel centre 13.5 (the middle of 0..27), inside the frame
    top = int(np.clip(round(13.5 - cy), 0, 28 - nh))
    left = int(np.clip(round(13.5 - cx), 0, 28 - nw))
    out[top : top + nh, left : left + nw] = np.round(small * 255).astype(np.uint8)
    return out
