"""Growing maps back: transposed convolution and upsampling (the decoder of a U-Net).

A transposed convolution is the input gradient of a convolution: every input
value spreads its kernel, scaled, over the output, which is exactly what a
convolution's backward pass does with ``dY``. So it is computed with
:mod:`clearconv.engine.conv`'s machinery and no new loops:

- forward, stride 1: a convolution of the input padded by ``d*(k-1) - pad``
  with the kernel flipped and its channels swapped (one gather and one GEMM
  per block, :func:`clearconv.engine.conv.conv2d_forward`);
- forward, stride > 1: ``rows = x @ W2`` and a scatter of one strided
  slice-add per kernel offset (the convolution's ``_dx_rows``);
- backward: ``dx`` is the plain convolution of ``dY`` with ``W`` (its
  forward pass), ``dW`` the convolution's weight gradient with the roles of
  input and output swapped, ``db`` a sum.

Upsampling by ``s`` is ``y = A_h @ x @ A_w.T`` per map, with ``A`` an
``(out, in)`` interpolation matrix per axis (one 1 a row for nearest, two
weights a row for bilinear); its backward is ``A_h.T @ dY @ A_w``. Both are
two batched matmuls over small matrices. Nearest upsampling by an integer
factor skips the products: a broadcast view of ``x`` copied once (forward)
and a reshape summed over the repeats (backward).
"""

from __future__ import annotations

import numpy as np

from clearconv.backend import Array, xp_of
from clearconv.engine import conv as C
from clearconv.engine.core import DEFAULT, Engine


def conv_transpose_out_size(size: int, k: int, s: int, pad: int, out_pad: int, d: int) -> int:
    """Output length along one axis: ``(size - 1)*s - 2*pad + d*(k - 1) + out_pad + 1``."""
    return (size - 1) * s - 2 * pad + d * (k - 1) + out_pad + 1


def _per_group(fn, x: Array, weight: Array, groups: int, *rest: Array) -> list:
    """Run ``fn`` on each group's slice of the channels (a loop over groups, usually one)."""
    cin, cout = weight.shape[0] // groups, weight.shape[1]
    out = []
    for g in range(groups):
        xs = x[:, g * cin : (g + 1) * cin]
        ws = weight[g * cin : (g + 1) * cin]
        out.append(fn(xs, ws, *(r[:, g * cout : (g + 1) * cout] for r in rest)))
    return out


def conv_transpose2d_forward(
    x: Array,
    weight: Array,
    bias: Array | None,
    stride: tuple[int, int],
    padding: tuple[int, int],
    output_padding: tuple[int, int],
    groups: int,
    dilation: tuple[int, int],
    *,
    eng: Engine = DEFAULT,
) -> Array:
    """PyTorch's ``conv_transpose2d``.

    ``y[n, o, s*h + d*i - p, s*w + d*j - p] += sum_c x[n, c, h, w] * W[c, o, i, j]``

    Shape: ``x`` (N, C_in, H, W), ``weight`` (C_in, C_out/groups, kH, kW),
    ``bias`` (C_out,) -> ``y`` (N, C_out, OH, OW),
    ``OH = (H - 1)*sH - 2*pH + dH*(kH - 1) + opH + 1``.
    """
    xp = xp_of(x)
    n, _, h, w = x.shape
    kh, kw = weight.shape[2:]
    oh = conv_transpose_out_size(h, kh, stride[0], padding[0], output_padding[0], dilation[0])
    ow = conv_transpose_out_size(w, kw, stride[1], padding[1], output_padding[1], dilation[1])

    def one(xs: Array, ws: Array) -> Array:
        cout = ws.shape[1]
        if stride == (1, 1):
            # Full padding d*(k-1) - p on each side, the output padding at the end;
            # a negative pad (p > d*(k-1)) is a crop of the result instead.
            lo = [d * (k - 1) - p for k, p, d in zip((kh, kw), padding, dilation, strict=True)]
            hi = [a + op for a, op in zip(lo, output_padding, strict=True)]
            pads = ((max(lo[0], 0), max(hi[0], 0)), (max(lo[1], 0), max(hi[1], 0)))
            flipped = ws[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C_out, C_in, kH, kW): a view
            y = C.conv2d_forward(xs, flipped, None, (1, 1), pads, dilation, eng=eng)
            t, lf = max(-lo[0], 0), max(-lo[1], 0)
            return y[:, :, t : t + oh, lf : lf + ow]
        # The scatter of a convolution's input gradient, with x in the place of dY:
        # x as (N*H*W, C_in), channels-last.
        g = xp.ascontiguousarray(xs.transpose(0, 2, 3, 1)).reshape(n * h * w, -1)
        pads = ((padding[0], padding[0]), (padding[1], padding[1]))
        blk = C.block_size(n, ws[0].size, h * w, x.dtype.itemsize, x, g.size, eng)
        return C._dx_rows(g, ws, (n, cout, oh, ow), pads, stride, dilation, (h, w), blk, eng)

    parts = _per_group(one, x, weight, groups)
    y = parts[0] if groups == 1 else xp.concatenate(parts, axis=1)
    if bias is not None:
        y = y + bias.reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    stride: tuple[int, int],
    padding: tuple[int, int],
    groups: int,
    dilation: tuple[int, int],
    need_bias: bool,
    input_grad: bool = True,
    *,
    eng: Engine = DEFAULT,
) -> tuple[Array | None, Array, Array | None]:
    """Gradients of :func:`conv_transpose2d_forward`.

    ``dx = conv2d(dY, W)`` (stride, padding and dilation as given), ``dW`` is
    the weight gradient of that same convolution with ``dY`` as its input and
    ``x`` as its output gradient, ``db = sum_{n, h, w} dY``.

    Shape: ``grad_out`` (N, C_out, OH, OW), ``x`` (N, C_in, H, W) -> ``dx``
    like ``x`` (None when not ``input_grad``), ``dW`` like ``weight``, ``db`` (C_out,).
    """
    xp = xp_of(grad_out)
    pads = ((padding[0], padding[0]), (padding[1], padding[1]))

    def one(xs: Array, ws: Array, gs: Array) -> tuple[Array | None, Array]:
        # The convolution maps grad_out (its input, C_out channels) to x's size
        # (its output, C_in channels); weight (C_in, C_out, kH, kW) is its (O, C, kH, kW).
        _, dw, _ = C.conv2d_backward(xs, gs, ws, stride, pads, dilation, False, False, eng=eng)
        dx = C.conv2d_forward(gs, ws, None, stride, pads, dilation, eng=eng) if input_grad else None
        return dx, dw

    parts = _per_group(one, x, weight, groups, grad_out)
    dw = xp.concatenate([p[1] for p in parts], axis=0).reshape(weight.shape)
    db = grad_out.sum(axis=(0, 2, 3)) if need_bias else None
    if not input_grad:
        return None, dw, db
    dxs = [p[0] for p in parts]
    dx = dxs[0] if groups == 1 else xp.concatenate(dxs, axis=1)
    # With stride 1 an output padding (< dilation) leaves extra rows the input never had.
    return dx[:, :, : x.shape[2], : x.shape[3]], dw, db


def interpolation_matrix(
    n_in: int, n_out: int, scale: float, mode: str, align_corners: bool
) -> np.ndarray:
    """``A`` (n_out, n_in) with ``y = A @ x`` along one axis, as PyTorch's ``interpolate``.

    nearest: ``src = floor(dst * (1/scale))``. bilinear: ``src = (dst + 0.5)*(1/scale) - 0.5``
    clamped at 0 (``align_corners=False``) or ``dst * (n_in - 1)/(n_out - 1)``
    (``True``), shared between the two neighbours ``floor(src)`` and the next by
    the fraction.
    """
    dst = np.arange(n_out, dtype=np.float64)
    a = np.zeros((n_out, n_in))
    if mode == "nearest":
        a[
            np.arange(n_out), np.minimum(np.floor(dst * (1.0 / scale)).astype(np.int64), n_in - 1)
        ] = 1
        return a
    if mode != "bilinear":
        raise ValueError(f"interpolation mode must be 'nearest' or 'bilinear', got {mode!r}")
    if align_corners:
        src = dst * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        src = np.maximum((dst + 0.5) * (1.0 / scale) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    rows = np.arange(n_out)
    a[rows, i0] += 1 - frac  # one (row, column) pair a statement: += adds each once
    a[rows, i1] += frac  # i0 == i1 at the last pixel: the shares add up to 1
    return a


def upsample_out_size(size: int, scale: float) -> int:
    """``floor(size * scale)``, as PyTorch."""
    return int(np.floor(size * scale))


def upsample_forward(
    x: Array, scale: tuple[float, float], mode: str, align_corners: bool
) -> tuple[Array, tuple[Array, Array] | None]:
    """Upsample ``x`` (N, C, H, W) -> (N, C, floor(H*sH), floor(W*sW)).

    Returns ``(y, mats)``; ``mats`` (``A_h``, ``A_w``) are what the backward
    pass needs, or None on the integer-nearest fast path.
    """
    xp = xp_of(x)
    n, c, h, w = x.shape
    oh, ow = upsample_out_size(h, scale[0]), upsample_out_size(w, scale[1])
    sh, sw = int(scale[0]), int(scale[1])
    if mode == "nearest" and (sh, sw) == scale:
        # Each value repeated sH x sW times: a broadcast view (N, C, H, sH, W, sW)
        # of x, copied once into (N, C, OH, OW).
        view = xp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw))
        return xp.ascontiguousarray(view).reshape(n, c, oh, ow), None
    ah = xp.asarray(interpolation_matrix(h, oh, scale[0], mode, align_corners), dtype=x.dtype)
    aw = xp.asarray(interpolation_matrix(w, ow, scale[1], mode, align_corners), dtype=x.dtype)
    # (N, C, H, W) @ (W, OW) -> (N, C, H, OW); (OH, H) @ that -> (N, C, OH, OW)
    return xp.matmul(ah, xp.matmul(x, aw.T)), (ah, aw)


def upsample_backward(
    grad_out: Array, scale: tuple[float, float], mats: tuple[Array, Array] | None
) -> Array:
    """Gradient of :func:`upsample_forward`: ``A_h.T @ dY @ A_w``, or a sum over the repeats."""
    xp = xp_of(grad_out)
    if mats is None:
        n, c, oh, ow = grad_out.shape
        sh, sw = int(scale[0]), int(scale[1])
        # (N, C, OH, OW) -> (N, C, H, sH, W, sW), summed over the repeats
        return grad_out.reshape(n, c, oh // sh, sh, ow // sw, sw).sum(axis=(3, 5))
    ah, aw = mats
    return xp.matmul(ah.T, xp.matmul(grad_out, aw))
