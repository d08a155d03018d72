"""Convolution as windowed views plus one matrix product (im2col + GEMM).

Layout: activations NCHW, weights ``(O, C, kH, kW)`` as in PyTorch. The
forward pass gathers every receptive field into a column matrix

    cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*sH + i*dH, ow*sW + j*dW]

of shape ``(C*kH*kW, N*OH*OW)`` with one strided-view copy, then computes

    out = W.reshape(O, C*kH*kW) @ cols + b          # one GEMM

The backward pass is two GEMMs, ``dW = dY @ cols.T`` and ``dcols = W.T @ dY``,
and ``col2im`` scatters ``dcols`` back with one strided slice-add per kernel
offset (``kH*kW`` adds over whole arrays, no ``np.add.at``).

Memory order: results are NCHW arrays (shape and indexing as PyTorch) stored
channel-major, the order the GEMM writes them in, so no step copies an
activation just to transpose it.
"""

from __future__ import annotations

from convnet.backend import Array, as_strided, empty_like_layout, xp_of

Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def out_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    """Output length along one axis: ``floor((size + pad - d*(k-1) - 1) / s) + 1``."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def pad2d(x: Array, pads: Pads, value: float = 0.0) -> Array:
    """Pad the last two axes of ``x`` (N, C, H, W) -> (N, C, H+t+b, W+l+r).

    Returns ``x`` itself when every pad is zero (no copy).
    """
    (t, b), (lf, r) = pads
    if t == b == lf == r == 0:
        return x
    n, c, h, w = x.shape
    out = empty_like_layout((n, c, h + t + b, w + lf + r), x)  # same memory order as x
    out[...] = value
    out[:, :, t : t + h, lf : lf + w] = x
    return out


def im2col(
    xpad: Array,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> Array:
    """Gather receptive fields of a padded input into columns.

    Shape: ``xpad`` (N, C, Hp, Wp) -> ``(C*kH*kW, N*OH*OW)``.
    """
    n, c = xpad.shape[:2]
    kh, kw = kernel
    oh, ow = out_hw
    s_n, s_c, s_h, s_w = xpad.strides
    # A (C, kH, kW, N, OH, OW) view: no copy yet; the copy below is the im2col.
    view = as_strided(
        xpad,
        (c, kh, kw, n, oh, ow),
        (s_c, dilation[0] * s_h, dilation[1] * s_w, s_n, stride[0] * s_h, stride[1] * s_w),
    )
    xp = xp_of(xpad)
    return xp.ascontiguousarray(view).reshape(c * kh * kw, n * oh * ow)


def col2im(
    dcols: Array,
    x_shape: tuple[int, int, int, int],
    pads: Pads,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> Array:
    """Scatter-add columns back to an input-shaped array (the adjoint of im2col).

    Shape: ``dcols`` (C*kH*kW, N*OH*OW) -> (N, C, H, W).
    """
    xp = xp_of(dcols)
    n, c, h, w = x_shape
    (t, b), (lf, r) = pads
    kh, kw = kernel
    oh, ow = out_hw
    sh, sw = stride
    dh, dw = dilation
    dxpad = xp.zeros((c, n, h + t + b, w + lf + r), dtype=dcols.dtype)
    d6 = dcols.reshape(c, kh, kw, n, oh, ow)
    for i in range(kh):  # loops over kernel offsets only
        r0 = i * dh
        for j in range(kw):
            c0 = j * dw
            dxpad[:, :, r0 : r0 + sh * (oh - 1) + 1 : sh, c0 : c0 + sw * (ow - 1) + 1 : sw] += d6[
                :, i, j
            ]
    # (C, N, Hp, Wp) -> (N, C, H, W): crop the padding; a view, kept channel-major.
    return dxpad[:, :, t : t + h, lf : lf + w].transpose(1, 0, 2, 3)


def conv2d_forward(
    x: Array,
    weight: Array,
    bias: Array | None,
    stride: tuple[int, int],
    pads: Pads,
    dilation: tuple[int, int],
) -> tuple[Array, Array]:
    """2-D cross-correlation, PyTorch's ``conv2d`` (groups=1).

    ``y[n, o] = b[o] + sum_{c,i,j} W[o, c, i, j] * x_pad[n, c, s*oh + d*i, s*ow + d*j]``

    Shape: ``x`` (N, C, H, W), ``weight`` (O, C, kH, kW), ``bias`` (O,) ->
    ``y`` (N, O, OH, OW) with ``OH = floor((H + t + b - dH*(kH-1) - 1)/sH) + 1``;
    also returns the columns ``(C*kH*kW, N*OH*OW)`` for the backward pass.
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh = out_size(h, kh, stride[0], sum(pads[0]), dilation[0])
    ow = out_size(w, kw, stride[1], sum(pads[1]), dilation[1])
    cols = im2col(pad2d(x, pads), (kh, kw), stride, dilation, (oh, ow))
    out = weight.reshape(o, -1) @ cols  # (O, N*OH*OW)
    if bias is not None:
        out += bias[:, None]
    # (O, N*OH*OW) -> (N, O, OH, OW): a view. The output stays channel-major
    # ("CNHW") in memory; the next layers work in that order and the next
    # convolution's im2col reads it as it is, so no transposing copy is made.
    y = out.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)
    return y, cols


def conv2d_backward(
    grad_out: Array,
    cols: Array,
    weight: Array,
    x_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    pads: Pads,
    dilation: tuple[int, int],
    need_bias: bool,
    input_grad: bool = True,
) -> tuple[Array | None, Array, Array | None]:
    """Gradients of :func:`conv2d_forward`.

    Shape: ``grad_out`` (N, O, OH, OW), ``cols`` (C*kH*kW, N*OH*OW) ->
    ``dx`` (N, C, H, W) or None when not ``input_grad``, ``dW`` (O, C, kH, kW),
    ``db`` (O,) or None.
    """
    n, o, oh, ow = grad_out.shape
    kh, kw = weight.shape[2:]
    # (N, O, OH, OW) -> (O, N*OH*OW), the layout of the forward's GEMM output:
    # a free view when grad_out is channel-major, as the layers above leave it.
    g2 = grad_out.transpose(1, 0, 2, 3).reshape(o, -1)
    dw = (g2 @ cols.T).reshape(weight.shape)
    db = g2.sum(axis=1) if need_bias else None
    if not input_grad:
        return None, dw, db
    dcols = weight.reshape(o, -1).T @ g2  # (C*kH*kW, N*OH*OW)
    dx = col2im(dcols, x_shape, pads, (kh, kw), stride, dilation, (oh, ow))
    return dx, dw, db
