"""Max and average pooling, forward and backward, on NCHW arrays.

Two paths give the same numbers:

- the fast path, when windows tile the input (stride == kernel, no padding,
  no dilation): a reshape ``(N, C, OH, kH, OW, kW)`` and one reduction;
- the general path (overlap, padding, ceil_mode, dilation): one strided slice
  per kernel offset, ``kH*kW`` whole-array operations, no loop over pixels.

Max pooling routes the gradient to the first maximum of each window in
row-major order, as PyTorch does; padding never wins (it is ``-inf``).
"""

from __future__ import annotations

from convnet.backend import Array, xp_of

Geometry = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]


def pool_out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output length.

    ``floor_or_ceil((size + 2p - d*(k-1) - 1) / s) + 1``; with ``ceil_mode`` the
    last window must start inside the input or the left padding.
    """
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _tiles(x_shape: tuple[int, ...], k, s, p, d) -> bool:
    """True when the windows tile the input without overlap or padding."""
    return k == s and p == (0, 0) and d == (1, 1)


def _padded(x: Array, k, s, p, d, out_hw, value: float) -> Array:
    """Pad so that every window of the output lies inside: (N, C, Hp, Wp).

    Left/top by ``p``; right/bottom by whatever the last window needs (>= 0),
    which covers ceil_mode. Rows and columns no window reaches are cropped.
    """
    xp = xp_of(x)
    n, c, h, w = x.shape
    need_h = (out_hw[0] - 1) * s[0] + d[0] * (k[0] - 1) + 1
    need_w = (out_hw[1] - 1) * s[1] + d[1] * (k[1] - 1) + 1
    if p == (0, 0) and need_h <= h and need_w <= w:
        return x[:, :, :need_h, :need_w]
    out = xp.full((n, c, need_h, need_w), value, dtype=x.dtype)
    hh, ww = min(h, need_h - p[0]), min(w, need_w - p[1])
    out[:, :, p[0] : p[0] + hh, p[1] : p[1] + ww] = x[:, :, :hh, :ww]
    return out


def _window(a: Array, i: int, j: int, s, d, out_hw) -> Array:
    """The strided slice of ``a`` seen by kernel offset (i, j): (N, C, OH, OW)."""
    r0, c0 = i * d[0], j * d[1]
    return a[
        :,
        :,
        r0 : r0 + s[0] * (out_hw[0] - 1) + 1 : s[0],
        c0 : c0 + s[1] * (out_hw[1] - 1) + 1 : s[1],
    ]


def _unpad(dpad: Array, x_shape, p) -> Array:
    """Adjoint of :func:`_padded`: crop or zero-extend back to ``x_shape``."""
    xp = xp_of(dpad)
    n, c, h, w = x_shape
    hh, ww = min(h, dpad.shape[2] - p[0]), min(w, dpad.shape[3] - p[1])
    if (hh, ww) == (h, w) and p == (0, 0) and dpad.shape[2:] == (h, w):
        return dpad
    dx = xp.zeros(x_shape, dtype=dpad.dtype)
    dx[:, :, :hh, :ww] = dpad[:, :, p[0] : p[0] + hh, p[1] : p[1] + ww]
    return dx


def max_pool2d_forward(x: Array, k, s, p, d, ceil_mode: bool) -> tuple[Array, Array]:
    """Max over each window.

    Shape: ``x`` (N, C, H, W) -> ``y`` (N, C, OH, OW) and ``argmax`` (N, C, OH, OW),
    the row-major offset ``i*kW + j`` of the winner inside its window.
    """
    xp = xp_of(x)
    n, c, h, w = x.shape
    oh = pool_out_size(h, k[0], s[0], p[0], d[0], ceil_mode)
    ow = pool_out_size(w, k[1], s[1], p[1], d[1], ceil_mode)
    if _tiles(x.shape, k, s, p, d) and oh * k[0] <= h and ow * k[1] <= w:
        # (N, C, OH*kH, OW*kW) -> (N, C, OH, OW, kH*kW), one copy, one argmax.
        t = x[:, :, : oh * k[0], : ow * k[1]].reshape(n, c, oh, k[0], ow, k[1])
        t = t.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh, ow, k[0] * k[1])
        idx = t.argmax(axis=-1)
        y = xp.take_along_axis(t, idx[..., None], axis=-1)[..., 0]
        return y, idx.astype(xp.int32)
    xpad = _padded(x, k, s, p, d, (oh, ow), -xp.inf)
    y = _window(xpad, 0, 0, s, d, (oh, ow)).copy()
    idx = xp.zeros((n, c, oh, ow), dtype=xp.int32)
    for i in range(k[0]):
        for j in range(k[1]):
            if i == j == 0:
                continue
            win = _window(xpad, i, j, s, d, (oh, ow))
            better = win > y  # strict: the first maximum keeps the gradient
            xp.copyto(idx, i * k[1] + j, where=better)
            xp.maximum(y, win, out=y)
    return y, idx


def max_pool2d_backward(grad_out: Array, idx: Array, x_shape, k, s, p, d) -> Array:
    """Route each output gradient to its window's winner.

    Shape: ``grad_out``, ``idx`` (N, C, OH, OW) -> ``dx`` (N, C, H, W).
    """
    xp = xp_of(grad_out)
    n, c, oh, ow = grad_out.shape
    h, w = x_shape[2:]
    if _tiles(x_shape, k, s, p, d) and oh * k[0] <= h and ow * k[1] <= w:
        kk = k[0] * k[1]
        onehot = idx[..., None] == xp.arange(kk, dtype=idx.dtype)  # (N, C, OH, OW, kH*kW)
        d6 = (onehot * grad_out[..., None]).reshape(n, c, oh, ow, k[0], k[1])
        # (N, C, OH, OW, kH, kW) -> (N, C, OH, kH, OW, kW) -> (N, C, OH*kH, OW*kW)
        tiled = d6.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, oh * k[0], ow * k[1])
        if tiled.shape[2:] == (h, w):
            return tiled
        dx = xp.zeros(x_shape, dtype=grad_out.dtype)
        dx[:, :, : oh * k[0], : ow * k[1]] = tiled
        return dx
    need_h = (oh - 1) * s[0] + d[0] * (k[0] - 1) + 1
    need_w = (ow - 1) * s[1] + d[1] * (k[1] - 1) + 1
    dpad = xp.zeros((n, c, need_h, need_w), dtype=grad_out.dtype)
    zero = xp.zeros((), dtype=grad_out.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            _window(dpad, i, j, s, d, (oh, ow))[...] += xp.where(
                idx == i * k[1] + j, grad_out, zero
            )
    return _unpad(dpad, x_shape, p)


def _divisor(size: int, k: int, s: int, p: int, out: int, count_include_pad: bool) -> Array:
    """Per-output count of the elements PyTorch divides by, along one axis: (out,).

    With ``count_include_pad`` a window counts the zero padding but not what
    lies past it (ceil_mode's overhang); without, only real input elements.
    """
    import numpy as np

    start = np.arange(out) * s - p  # in input coordinates
    end = start + k
    if count_include_pad:
        return (np.minimum(end, size + p) - np.maximum(start, -p)).astype(np.int64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.int64)


def avg_pool2d_forward(x: Array, k, s, p, ceil_mode: bool, count_include_pad: bool) -> Array:
    """Mean over each window (PyTorch's divisor rules).

    Shape: ``x`` (N, C, H, W) -> (N, C, OH, OW).
    """
    xp = xp_of(x)
    n, c, h, w = x.shape
    d = (1, 1)
    oh = pool_out_size(h, k[0], s[0], p[0], 1, ceil_mode)
    ow = pool_out_size(w, k[1], s[1], p[1], 1, ceil_mode)
    if _tiles(x.shape, k, s, p, d) and oh * k[0] <= h and ow * k[1] <= w:
        t = x[:, :, : oh * k[0], : ow * k[1]].reshape(n, c, oh, k[0], ow, k[1])
        return t.mean(axis=(3, 5), dtype=x.dtype)
    xpad = _padded(x, k, s, p, d, (oh, ow), 0.0)
    acc = _window(xpad, 0, 0, s, d, (oh, ow)).copy()
    for i in range(k[0]):
        for j in range(k[1]):
            if i or j:
                acc += _window(xpad, i, j, s, d, (oh, ow))
    div = _divisor_2d(xp, (h, w), k, s, p, (oh, ow), count_include_pad, x.dtype)
    acc /= div
    return acc


def _divisor_2d(xp, hw, k, s, p, out_hw, count_include_pad, dtype) -> Array:
    dh = _divisor(hw[0], k[0], s[0], p[0], out_hw[0], count_include_pad)
    dw = _divisor(hw[1], k[1], s[1], p[1], out_hw[1], count_include_pad)
    return xp.asarray((dh[:, None] * dw[None, :]).astype(dtype))  # (OH, OW)


def avg_pool2d_backward(grad_out: Array, x_shape, k, s, p, count_include_pad: bool) -> Array:
    """Spread each output gradient evenly over its window.

    Shape: ``grad_out`` (N, C, OH, OW) -> ``dx`` (N, C, H, W).
    """
    xp = xp_of(grad_out)
    n, c, oh, ow = grad_out.shape
    h, w = x_shape[2:]
    d = (1, 1)
    if _tiles(x_shape, k, s, p, d) and oh * k[0] <= h and ow * k[1] <= w:
        g = grad_out / (k[0] * k[1])
        # (N, C, OH, 1, OW, 1) broadcast over each window -> (N, C, OH*kH, OW*kW)
        tiled = xp.broadcast_to(g[:, :, :, None, :, None], (n, c, oh, k[0], ow, k[1]))
        tiled = tiled.reshape(n, c, oh * k[0], ow * k[1])
        if tiled.shape[2:] == (h, w):
            return tiled
        dx = xp.zeros(x_shape, dtype=grad_out.dtype)
        dx[:, :, : oh * k[0], : ow * k[1]] = tiled
        return dx
    g = grad_out / _divisor_2d(xp, (h, w), k, s, p, (oh, ow), count_include_pad, grad_out.dtype)
    need_h = (oh - 1) * s[0] + k[0]
    need_w = (ow - 1) * s[1] + k[1]
    dpad = xp.zeros((n, c, need_h, need_w), dtype=grad_out.dtype)
    for i in range(k[0]):
        for j in range(k[1]):
            _window(dpad, i, j, s, d, (oh, ow))[...] += g
    return _unpad(dpad, x_shape, p)


def adaptive_matrix(size: int, out: int, dtype) -> Array:
    """Averaging matrix of adaptive pooling along one axis: (out, size).

    Row ``o`` averages ``[floor(o*size/out), ceil((o+1)*size/out))``, PyTorch's bins.
    """
    import numpy as np

    o = np.arange(out)
    start = (o * size) // out
    end = -((-(o + 1) * size) // out)
    cols = np.arange(size)
    inside = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)
