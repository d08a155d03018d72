"""Max and average pooling, forward and backward, on NCHW arrays.

Windows are reduced separably, along W and then along H: ``kH + kW``
whole-array operations on strided views, no loop over pixels. Windows that
tile the input (stride = kernel, no padding, floor mode: the common 2x2) are
reduced over their ``kH*kW`` taps instead, each a phase of the input, with
no padded copy.

Max pooling routes the gradient to the first maximum of each window in
row-major order, as PyTorch does; padding never wins (it is ``-inf``).

Every (sample, channel) plane is pooled on its own, so large inputs are
pooled in slices of the batch or channel axis (whichever is outermost in
memory), shared among the engine's threads (:func:`_in_slices`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from clearconv.backend import Array, along, xp_of
from clearconv.engine.core import DEFAULT, Engine


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


def _padded(x: Array, k, s, p, d, out_hw, value: float, eng: Engine) -> Array:
    """Pad so that every window of the output lies inside: (N, C, Hp, Wp).

    Left/top by ``p``; right/bottom by whatever the last window needs (>= 0),
    which covers ceil_mode. Rows and columns no window reaches are cropped.
    """
    n, c, h, w = x.shape
    need_h = (out_hw[0] - 1) * s[0] + d[0] * (k[0] - 1) + 1
    need_w = (out_hw[1] - 1) * s[1] + d[1] * (k[1] - 1) + 1
    if p == (0, 0) and need_h <= h and need_w <= w:
        return x[:, :, :need_h, :need_w]
    out = eng.empty_like((n, c, need_h, need_w), x)
    out[...] = value
    hh, ww = min(h, need_h - p[0]), min(w, need_w - p[1])
    out[:, :, p[0] : p[0] + hh, p[1] : p[1] + ww] = x[:, :, :hh, :ww]
    return out


def _unpad(dpad: Array, x_shape, p, eng: Engine) -> Array:
    """Adjoint of :func:`_padded`: crop or zero-extend back to ``x_shape``."""
    n, c, h, w = x_shape
    hh, ww = min(h, dpad.shape[2] - p[0]), min(w, dpad.shape[3] - p[1])
    if (hh, ww) == (h, w) and p == (0, 0) and dpad.shape[2:] == (h, w):
        return dpad
    dx = eng.zeros_like(x_shape, dpad)
    dx[:, :, :hh, :ww] = dpad[:, :, p[0] : p[0] + hh, p[1] : p[1] + ww]
    return dx


def _cols(a: Array, j: int, s: int, d: int, ow: int) -> Array:
    """Columns ``ow*s + j*d`` of ``a``: the tap ``j`` of every window along W."""
    c0 = j * d
    return a[..., c0 : c0 + s * (ow - 1) + 1 : s]


def _rows(a: Array, i: int, s: int, d: int, oh: int) -> Array:
    """Rows ``oh*s + i*d`` of ``a`` (axis 2): the tap ``i`` of every window along H."""
    r0 = i * d
    return a[:, :, r0 : r0 + s * (oh - 1) + 1 : s]


def _in_slices(fn, arrays: list[Array], outs, like: Array, eng: Engine, work: int | None = None):
    """``fn(*arrays, out=None)`` in slices of axis 0 or 1, shared among the engine's threads.

    ``work`` counts the values the call touches (``like.size`` by default);
    a backward pass, which writes the input gradient, counts the input's.

    Each slice's ``fn`` writes its results straight into its slice of the
    arrays that ``outs()`` makes (the results' full-size arrays, in the
    memory order the whole call would give them), passed as the tuple
    ``out``; with one slice (little work, one thread) ``fn`` runs on the
    whole arrays with ``out=None`` and makes its own.

    Shape: every array (N, C, ...); ``fn`` maps slices of them to one array
    or a tuple of arrays (n, c, ...), sliced the same way.
    """
    axis = 0 if abs(like.strides[0]) >= abs(like.strides[1]) else 1
    work = like.size if work is None else work
    if eng.slice_count(like.shape[axis], like, work) < 2:
        return fn(*arrays, out=None)
    full = outs()
    targets = full if isinstance(full, tuple) else (full,)

    def part(sl: slice) -> None:
        i = along(axis, sl)
        fn(*[a[i] for a in arrays], out=tuple(t[i] for t in targets))

    eng.slices(part, like.shape[axis], like, work)
    return full


def max_pool2d_forward(
    x: Array, k, s, p, d, ceil_mode: bool, *, eng: Engine = DEFAULT
) -> tuple[Array, Any]:
    """Max over each window, in slices (:func:`_in_slices`).

    Windows that tile the input, of at most ``Tuning.taps_max`` taps
    (:func:`_by_taps`), are reduced over their ``kH*kW`` taps
    (:func:`_tiled_max_pool2d`), others separably (:func:`_max_pool2d`).

    Shape: ``x`` (N, C, H, W) -> ``y`` (N, C, OH, OW) and the winners, as
    :func:`max_pool2d_backward` takes them: for tiles ``code`` (N, C, OH, OW),
    the tap ``i*kW + j`` of each window's winner; otherwise a pair ``col``
    (N, C, Hp, OW), the tap along W of each row segment, and ``row``
    (N, C, OH, OW), the tap along H; all int8.
    """
    n, c, h, w = x.shape
    oh = pool_out_size(h, k[0], s[0], p[0], d[0], ceil_mode)
    ow = pool_out_size(w, k[1], s[1], p[1], d[1], ceil_mode)
    int8 = xp_of(x).int8
    if _by_taps(k, s, p, d, (h, w), (oh, ow), eng):

        def tiles() -> tuple[Array, Array]:
            return eng.empty_like((n, c, oh, ow), x), eng.empty_like((n, c, oh, ow), x, int8)

        def tiled(xs: Array, out: tuple[Array, ...] | None) -> tuple[Array, Array]:
            return _tiled_max_pool2d(xs, k, (oh, ow), eng, out)

        return _in_slices(tiled, [x], tiles, x, eng)
    hp = (oh - 1) * s[0] + d[0] * (k[0] - 1) + 1

    def outs() -> tuple[Array, Array, Array]:
        return (
            eng.empty_like((n, c, oh, ow), x),
            eng.empty_like((n, c, hp, ow), x, int8),
            eng.empty_like((n, c, oh, ow), x, int8),
        )

    def pool(xs: Array, out: tuple[Array, ...] | None) -> tuple[Array, Array, Array]:
        y, (col, row) = _max_pool2d(xs, k, s, p, d, ceil_mode, eng, out)
        return y, col, row

    y, col, row = _in_slices(pool, [x], outs, x, eng)
    return y, (col, row)


def max_pool2d(x: Array, k, s, p, d, ceil_mode: bool, *, eng: Engine = DEFAULT) -> Array:
    """The max over each window without its winners: ``y`` of :func:`max_pool2d_forward`.

    For inference, where no backward follows: no winner indices, no copies.
    Tiling windows (:func:`_by_taps`) take a running max over their taps
    read in place (the copies that pay for the winners' two passes a tap do
    not pay for one: 160 against 175 us for LeNet-5's first pooling at batch
    64), others the separable max of :func:`_max_pool2d`. In slices
    (:func:`_in_slices`).

    Shape: ``x`` (N, C, H, W) -> ``y`` (N, C, OH, OW).
    """
    xp = xp_of(x)
    n, c, h, w = x.shape
    oh = pool_out_size(h, k[0], s[0], p[0], d[0], ceil_mode)
    ow = pool_out_size(w, k[1], s[1], p[1], d[1], ceil_mode)
    taps = _by_taps(k, s, p, d, (h, w), (oh, ow), eng)

    def pool(xs: Array, out: tuple[Array, ...] | None) -> Array:
        y = eng.empty_like((*xs.shape[:2], oh, ow), xs) if out is None else out[0]
        if taps:
            return _max_of(_tap_views(xs, k, (oh, ow)), y)
        xpad = _padded(xs, k, s, p, d, (oh, ow), -xp.inf, eng)
        m = _max_of([_cols(xpad, j, s[1], d[1], ow) for j in range(k[1])])
        return _max_of([_rows(m, i, s[0], d[0], oh) for i in range(k[0])], y)

    return _in_slices(pool, [x], lambda: eng.empty_like((n, c, oh, ow), x), x, eng)


def _max_of(taps: list[Array], out: Array | None = None) -> Array:
    """Elementwise max over ``taps`` (NaN wins, as in :func:`_running_max`); into ``out``."""
    xp = xp_of(taps[0])
    if len(taps) == 1:
        return taps[0].copy(order="K") if out is None else _into(taps[0], out)
    best = xp.maximum(taps[0], taps[1], out=out)
    for tap in taps[2:]:
        xp.maximum(best, tap, out=best)
    return best


def _tap_views(x: Array, k, out_hw) -> list[Array]:
    """The ``kH*kW`` taps of windows that tile ``x``: tap ``(i, j)`` is ``x[:, :, i::kH, j::kW]``.

    Shape: ``x`` (N, C, H, W) -> views (N, C, OH, OW), in row-major tap order.
    """
    (kh, kw), (oh, ow) = k, out_hw
    return [x[:, :, i : oh * kh : kh, j : ow * kw : kw] for i in range(kh) for j in range(kw)]


def _tiled_max_pool2d(x: Array, k, out_hw, eng: Engine, out=None) -> tuple[Array, Array]:
    """Max over windows that tile ``x``: a running max over their ``kH*kW`` taps.

    Tap ``(i, j)`` is the phase ``x[:, :, i::kH, j::kW]`` (:func:`_tap_views`).
    When W is the innermost axis in memory (channel-major maps) the taps are
    read with a stride of ``kW`` values, and NumPy's loops run several times
    slower on such inputs than on contiguous ones (a max over two stride-2
    halves of 102k values: 39 against 6 us), so each tap is first copied
    into a contiguous plane of a work buffer: LeNet-5's first pooling at
    batch 64 321 -> 221 us, its second 175 -> 131 us (one thread). The first
    maximum in row-major order wins, as in :func:`_max_pool2d`.

    Shape: ``x`` (N, C, H, W) -> ``y`` (N, C, OH, OW) and ``code`` (N, C, OH,
    OW) int8, the winning tap ``i*kW + j``; into ``out``, a tuple ``(y,
    code)``, when given.
    """
    taps = _tap_views(x, k, out_hw)
    if k[1] > 1 and x.strides[3] == x.itemsize:  # W innermost: contiguous copies of the taps
        n, t = x.shape[0], len(taps)
        buf = eng.scratch("pool taps", t * taps[0].size, x)
        stack = eng.empty_like((t * n, *taps[0].shape[1:]), x, buffer=buf)
        planes = [stack[i * n : (i + 1) * n] for i in range(t)]  # each dense within a channel
        for plane, tap in zip(planes, taps, strict=True):
            plane[...] = tap
        taps = planes
    y, code = (None, None) if out is None else out
    return _running_max(taps, y, code)


def _max_pool2d(
    x: Array, k, s, p, d, ceil_mode: bool, eng: Engine, out=None
) -> tuple[Array, Array]:
    """Max over each window, separably: along W first, then along H.

    Reducing each row of a window first and then the rows keeps PyTorch's tie
    rule (the first maximum in row-major order wins) and costs ``kH + kW``
    whole-array operations instead of ``kH * kW``.

    Shape: ``x`` (N, C, H, W) -> ``y`` (N, C, OH, OW) and the winners:
    ``col`` (N, C, Hp, OW), the tap along W of each row segment, and ``row``
    (N, C, OH, OW), the tap along H, both int8; written into ``out``, a
    tuple ``(y, col, row)`` of arrays of those shapes, when given.
    """
    xp = xp_of(x)
    y_out, col_out, row_out = (None, None, None) if out is None else out
    h, w = x.shape[2:]
    oh = pool_out_size(h, k[0], s[0], p[0], d[0], ceil_mode)
    ow = pool_out_size(w, k[1], s[1], p[1], d[1], ceil_mode)
    # No copy when the windows fit inside x (tiles, floor mode): views only.
    xpad = _padded(x, k, s, p, d, (oh, ow), -xp.inf, eng)
    m, col = _running_max([_cols(xpad, j, s[1], d[1], ow) for j in range(k[1])], None, col_out)
    y, row = _running_max([_rows(m, i, s[0], d[0], oh) for i in range(k[0])], y_out, row_out)
    return y, (col, row)


def _running_max(
    taps: list[Array], best: Array | None = None, idx: Array | None = None
) -> tuple[Array, Array]:
    """Elementwise max over ``taps`` and the index of the first maximum (int8).

    Into ``best`` and ``idx`` when given.
    """
    xp = xp_of(taps[0])
    if best is None:
        best = xp.empty_like(taps[0])
    if idx is None:
        idx = xp.empty_like(taps[0], dtype=xp.int8)
    if len(taps) == 1:
        best[...] = taps[0]
        idx[...] = 0
        return best, idx
    # Strict ">": an equal later value loses, so the first maximum wins.
    xp.greater(taps[1], taps[0], out=idx.view(xp.bool_))  # bool as 0/1 in the int8 memory
    xp.maximum(taps[0], taps[1], out=best)
    for t, tap in enumerate(taps[2:], start=2):
        # Where tap t beats the best so far the index becomes t, larger than any
        # index yet: a max with t*(tap > best) (int8 work, no masked copy).
        won = (tap > best).view(xp.int8)
        won *= t
        xp.maximum(idx, won, out=idx)
        xp.maximum(best, tap, out=best)
    return best, idx


def max_pool2d_backward(
    grad_out: Array, winners, x_shape, k, s, p, d, *, eng: Engine = DEFAULT
) -> Array:
    """Route each output gradient to its window's winner (adjoint of the forward).

    In slices (:func:`_in_slices`) of :func:`_tiled_max_pool2d_backward` or
    :func:`_max_pool2d_backward`, as the forward chose (:func:`_by_taps`).

    Shape: ``grad_out`` (N, C, OH, OW), ``winners`` as
    :func:`max_pool2d_forward` made them -> ``dx`` (N, C, H, W).
    """
    x_hw = tuple(x_shape[2:])

    def out() -> Array:
        return eng.empty_like(tuple(x_shape), grad_out)

    work = math.prod(x_shape)  # the input gradient's values, written
    if _by_taps(k, s, p, d, x_hw, grad_out.shape[2:], eng):
        return _in_slices(
            lambda g, code, out: _tiled_max_pool2d_backward(
                g, code, x_hw, k, eng, None if out is None else out[0]
            ),
            [grad_out, winners],
            out,
            grad_out,
            eng,
            work,
        )
    col, row = winners
    return _in_slices(
        lambda g, cl, rw, out: _max_pool2d_backward(g, (cl, rw), x_hw, k, s, p, d, eng, out),
        [grad_out, col, row],
        out,
        grad_out,
        eng,
        work,
    )


def _max_pool2d_backward(
    grad_out: Array, winners, x_hw, k, s, p, d, eng: Engine, out=None
) -> Array:
    """:func:`max_pool2d_backward` on one slice, separably; into ``out[0]`` when given."""
    col, row = winners
    n, c, oh, ow = grad_out.shape
    dx = None if out is None else out[0]
    hp = col.shape[2]
    need_w = (ow - 1) * s[1] + d[1] * (k[1] - 1) + 1
    # Back through the H stage: (N, C, OH, OW) -> (N, C, Hp, OW).
    dm = eng.zeros_like((n, c, hp, ow), grad_out)
    for i in range(k[0]):
        _rows(dm, i, s[0], d[0], oh)[...] += grad_out * (row == i)
    # Back through the W stage: (N, C, Hp, OW) -> (N, C, Hp, Wp).
    dpad = eng.zeros_like((n, c, hp, need_w), grad_out)
    for j in range(k[1]):
        _cols(dpad, j, s[1], d[1], ow)[...] += dm * (col == j)
    return _into(_unpad(dpad, (n, c, *x_hw), p, eng), dx)


def _into(result: Array, out: Array | None) -> Array:
    """``result``, copied into ``out`` when given."""
    if out is None:
        return result
    out[...] = result
    return out


def _tiled_max_pool2d_backward(
    grad_out: Array, code: Array, x_hw, k, eng: Engine, dx=None
) -> Array:
    """:func:`max_pool2d_backward` when whole windows tile the input (:func:`_by_taps`).

    Each input position lies in at most one window, so each tap's phase of
    ``dx`` is written once, the gradient times that tap's winner mask: no zero
    fills, no read-modify-write. Positions past the last window (floor mode)
    are set to zero. Into ``dx`` when given.

    Shape: ``grad_out`` (N, C, OH, OW), ``code`` (N, C, OH, OW) as
    :func:`_tiled_max_pool2d` made it -> (N, C, H, W).
    """
    xp = xp_of(grad_out)
    n, c, oh, ow = grad_out.shape
    kh, kw = k
    if dx is None:
        dx = eng.empty_like((n, c, *x_hw), grad_out)
    for i in range(kh):
        for j in range(kw):
            phase = dx[:, :, i : oh * kh : kh, j : ow * kw : kw]
            xp.multiply(grad_out, code == i * kw + j, out=phase)
    dx[:, :, oh * kh :] = 0
    dx[:, :, : oh * kh, ow * kw :] = 0
    return dx


def _tiled(k, s, p, d, hw, out_hw) -> bool:
    """True when whole, undilated windows tile the input with no overhang."""
    return (
        d == (1, 1)
        and k == s
        and p == (0, 0)
        and out_hw[0] * k[0] <= hw[0]
        and out_hw[1] * k[1] <= hw[1]
    )


def _by_taps(k, s, p, d, hw, out_hw, eng: Engine) -> bool:
    """True when max pooling goes by taps: tiling windows of at most ``Tuning.taps_max``."""
    return _tiled(k, s, p, d, hw, out_hw) and k[0] * k[1] <= eng.tuning.taps_max


def _divisor(size: int, k: int, s: int, p: int, out: int, count_include_pad: bool) -> Array:
    """Per-output count of the elements PyTorch divides by, along one axis: (out,).

    With ``count_include_pad`` a window counts the zero padding but not what
    lies past it (ceil_mode's overhang); without, only real input elements.
    """
    start = np.arange(out) * s - p  # in input coordinates
    end = start + k
    if count_include_pad:
        return (np.minimum(end, size + p) - np.maximum(start, -p)).astype(np.int64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.int64)


def avg_pool2d_forward(
    x: Array, k, s, p, ceil_mode: bool, count_include_pad: bool, *, eng: Engine = DEFAULT
) -> Array:
    """Mean over each window (PyTorch's divisor rules), summed separably, in slices.

    Shape: ``x`` (N, C, H, W) -> (N, C, OH, OW).
    """
    n, c, h, w = x.shape
    oh = pool_out_size(h, k[0], s[0], p[0], 1, ceil_mode)
    ow = pool_out_size(w, k[1], s[1], p[1], 1, ceil_mode)
    return _in_slices(
        lambda xs, out: _avg_pool2d(xs, k, s, p, (h, w), (oh, ow), count_include_pad, eng, out),
        [x],
        lambda: eng.empty_like((n, c, oh, ow), x),
        x,
        eng,
    )


def _avg_pool2d(
    x: Array, k, s, p, hw, out_hw, count_include_pad: bool, eng: Engine, out=None
) -> Array:
    """:func:`avg_pool2d_forward` on one slice; into ``out[0]`` when given."""
    xp = xp_of(x)
    (h, w), (oh, ow) = hw, out_hw
    d = (1, 1)
    xpad = _padded(x, k, s, p, d, (oh, ow), 0.0, eng)
    rowsum = _cols(xpad, 0, s[1], 1, ow).copy(order="K")  # (N, C, Hp, OW)
    for j in range(1, k[1]):
        rowsum += _cols(xpad, j, s[1], 1, ow)
    first = _rows(rowsum, 0, s[0], 1, oh)  # (N, C, OH, OW)
    acc = first.copy(order="K") if out is None else _into(first, out[0])
    for i in range(1, k[0]):
        acc += _rows(rowsum, i, s[0], 1, oh)
    if _tiled(k, s, p, (1, 1), (h, w), (oh, ow)):
        acc *= xp.asarray(1.0 / (k[0] * k[1]), dtype=x.dtype)
    else:
        acc /= _divisor_2d(xp, (h, w), k, s, p, (oh, ow), count_include_pad, x.dtype)
    return acc


def _divisor_2d(xp, hw, k, s, p, out_hw, count_include_pad, dtype) -> Array:
    dh = _divisor(hw[0], k[0], s[0], p[0], out_hw[0], count_include_pad)
    dw = _divisor(hw[1], k[1], s[1], p[1], out_hw[1], count_include_pad)
    return xp.asarray((dh[:, None] * dw[None, :]).astype(dtype))  # (OH, OW)


def avg_pool2d_backward(
    grad_out: Array, x_shape, k, s, p, count_include_pad: bool, *, eng: Engine = DEFAULT
) -> Array:
    """Spread each output gradient evenly over its window (adjoint of the forward), in slices.

    Shape: ``grad_out`` (N, C, OH, OW) -> ``dx`` (N, C, H, W).
    """
    return _in_slices(
        lambda g, out: _avg_pool2d_backward(
            g, (*g.shape[:2], *x_shape[2:]), k, s, p, count_include_pad, eng, out
        ),
        [grad_out],
        lambda: eng.empty_like(tuple(x_shape), grad_out),
        grad_out,
        eng,
        math.prod(x_shape),  # the input gradient's values, written
    )


def _avg_pool2d_backward(
    grad_out: Array, x_shape, k, s, p, count_include_pad: bool, eng: Engine, out=None
) -> Array:
    """:func:`avg_pool2d_backward` on one slice; into ``out[0]`` when given."""
    xp = xp_of(grad_out)
    n, c, oh, ow = grad_out.shape
    h, w = x_shape[2:]
    if _tiled(k, s, p, (1, 1), (h, w), (oh, ow)):
        g = grad_out * xp.asarray(1.0 / (k[0] * k[1]), dtype=grad_out.dtype)
    else:
        div = _divisor_2d(xp, (h, w), k, s, p, (oh, ow), count_include_pad, grad_out.dtype)
        g = grad_out / div
    need_h = (oh - 1) * s[0] + k[0]
    need_w = (ow - 1) * s[1] + k[1]
    drow = eng.zeros_like((n, c, need_h, ow), grad_out)
    for i in range(k[0]):
        _rows(drow, i, s[0], 1, oh)[...] += g
    dpad = eng.zeros_like((n, c, need_h, need_w), grad_out)
    for j in range(k[1]):
        _cols(dpad, j, s[1], 1, ow)[...] += drow
    return _into(_unpad(dpad, x_shape, p, eng), None if out is None else out[0])


def adaptive_matrix(size: int, out: int, dtype) -> Array:
    """Averaging matrix of adaptive pooling along one axis: (out, size).

    Row ``o`` averages ``[floor(o*size/out), ceil((o+1)*size/out))``, PyTorch's bins.
    """
    o = np.arange(out)
    start = (o * size) // out
    end = -((-(o + 1) * size) // out)
    cols = np.arange(size)
    inside = (cols[None, :] >= start[:, None]) & (cols[None, :] < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)
