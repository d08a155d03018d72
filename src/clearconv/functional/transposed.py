"""Transposed convolution and upsampling, written to be read (plain NumPy).

Both grow a map. A transposed convolution spreads every input value, times
the kernel, over the output (a convolution's backward pass run forward);
upsampling interpolates between neighbours, one interpolation matrix per axis.
"""

from __future__ import annotations

import numpy as np


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def conv_transpose2d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """Transposed 2-D convolution, as ``torch.nn.functional.conv_transpose2d``.

    ``y[n, o, s*h + d*i - p, s*w + d*j - p] += sum_c x[n, c, h, w] * W[c, o, i, j] (+ b[o])``

    Shape: ``input`` (N, C_in, H, W), ``weight`` (C_in, C_out/groups, kH, kW),
    ``bias`` (C_out,) -> (N, C_out, OH, OW), ``OH = (H-1)*sH - 2*pH + dH*(kH-1) + opH + 1``.

    >>> x = np.ones((1, 1, 2, 2))
    >>> conv_transpose2d(x, np.ones((1, 1, 2, 2)), stride=2).shape
    (1, 1, 4, 4)
    >>> conv_transpose2d(x, np.ones((1, 1, 2, 2)))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    (s_h, s_w), (p_h, p_w), (o_h, o_w), (d_h, d_w) = map(
        _pair, (stride, padding, output_padding, dilation)
    )
    n, c_in, h, w = input.shape
    _, c_out_g, kh, kw = weight.shape
    # Channels split into groups: x (N, G, C_in/G, H, W), W (G, C_in/G, C_out/G, kH, kW).
    xg = input.reshape(n, groups, c_in // groups, h, w)
    wg = weight.reshape(groups, c_in // groups, c_out_g, kh, kw)
    full_h = (h - 1) * s_h + d_h * (kh - 1) + 1 + o_h  # before the padding is cut off
    full_w = (w - 1) * s_w + d_w * (kw - 1) + 1 + o_w
    y = np.zeros((n, groups, c_out_g, full_h, full_w), dtype=input.dtype)
    for i in range(kh):  # each kernel offset adds the whole input, spread by the stride
        for j in range(kw):
            rows = slice(d_h * i, d_h * i + s_h * (h - 1) + 1, s_h)
            cols = slice(d_w * j, d_w * j + s_w * (w - 1) + 1, s_w)
            y[:, :, :, rows, cols] += np.einsum("ngchw,gco->ngohw", xg, wg[:, :, :, i, j])
    y = y.reshape(n, groups * c_out_g, full_h, full_w)
    y = y[:, :, p_h : full_h - p_h, p_w : full_w - p_w]
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


def conv_transpose2d_backward(
    grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """Gradients ``(dx, dW, db)`` of :func:`conv_transpose2d`: every add of the forward read back.

    ``dx[n, c, h, w] = sum_{o,i,j} dY_full[n, o, s*h + d*i, s*w + d*j] * W[c, o, i, j]``,
    ``dW[c, o, i, j] = sum_{n,h,w} x[n, c, h, w] * dY_full[n, o, s*h + d*i, s*w + d*j]``,
    ``db = sum_{n,h,w} dY``, with ``dY_full`` the gradient padded back by ``p``.

    >>> x, w = np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2))
    >>> dx, dw, db = conv_transpose2d_backward(np.ones((1, 1, 3, 3)), x, w)
    >>> dx[0, 0].tolist(), db.tolist()
    ([[4.0, 4.0], [4.0, 4.0]], [9.0])
    """
    (s_h, s_w), (p_h, p_w), (o_h, o_w), (d_h, d_w) = map(
        _pair, (stride, padding, output_padding, dilation)
    )
    n, c_in, h, w = input.shape
    _, c_out_g, kh, kw = weight.shape
    full_h = (h - 1) * s_h + d_h * (kh - 1) + 1 + o_h
    full_w = (w - 1) * s_w + d_w * (kw - 1) + 1 + o_w
    g = np.zeros((n, groups * c_out_g, full_h, full_w), dtype=grad_output.dtype)
    g[:, :, p_h : full_h - p_h, p_w : full_w - p_w] = grad_output
    gg = g.reshape(n, groups, c_out_g, full_h, full_w)
    xg = input.reshape(n, groups, c_in // groups, h, w)
    wg = weight.reshape(groups, c_in // groups, c_out_g, kh, kw)
    dx = np.zeros_like(xg)
    dw = np.zeros_like(wg)
    for i in range(kh):
        for j in range(kw):
            rows = slice(d_h * i, d_h * i + s_h * (h - 1) + 1, s_h)
            cols = slice(d_w * j, d_w * j + s_w * (w - 1) + 1, s_w)
            gij = gg[:, :, :, rows, cols]  # (N, G, C_out/G, H, W)
            dx += np.einsum("ngohw,gco->ngchw", gij, wg[:, :, :, i, j])
            dw[:, :, :, i, j] = np.einsum("ngchw,ngohw->gco", xg, gij)
    return dx.reshape(input.shape), dw.reshape(weight.shape), grad_output.sum(axis=(0, 2, 3))


def _interp_matrix(n_in, n_out, scale, mode, align_corners):
    """``A`` (n_out, n_in): output position ``t`` reads ``sum_i A[t, i] * x[i]``."""
    a = np.zeros((n_out, n_in))
    t = np.arange(n_out)
    if mode == "nearest":  # the input cell the output position falls in
        a[t, np.minimum(np.floor(t * (1.0 / scale)).astype(int), n_in - 1)] = 1
        return a
    if align_corners:  # the corner pixels' centres line up
        src = t * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:  # the pixels' areas line up: centre t + 1/2 maps to (t + 1/2)/scale
        src = np.maximum((t + 0.5) * (1.0 / scale) - 0.5, 0)
    lo = np.minimum(np.floor(src).astype(int), n_in - 1)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    a[t, lo] += 1 - frac
    a[t, hi] += frac  # lo == hi at the last pixel: the two shares add up to 1
    return a


def upsample(input, scale_factor, mode="nearest", align_corners=False):
    """Upsample (N, C, H, W) -> (N, C, floor(H*s), floor(W*s)), as ``F.interpolate``.

    ``y[n, c] = A_h @ x[n, c] @ A_w.T``, ``A`` one 1 a row (nearest) or the two
    neighbours' shares (bilinear).

    >>> upsample(np.array([[[[0.0, 1.0]]]]), 2, "bilinear")[0, 0, 0].tolist()
    [0.0, 0.25, 0.75, 1.0]
    """
    s_h, s_w = _pair(scale_factor)
    h, w = input.shape[2:]
    ah = _interp_matrix(h, int(np.floor(h * s_h)), s_h, mode, align_corners)
    aw = _interp_matrix(w, int(np.floor(w * s_w)), s_w, mode, align_corners)
    return np.einsum("ph,nchw,qw->ncpq", ah, input, aw).astype(input.dtype)


def upsample_backward(grad_output, input_shape, scale_factor, mode="nearest", align_corners=False):
    """Gradient of :func:`upsample`: ``dx[n, c] = A_h.T @ dY[n, c] @ A_w``.

    >>> upsample_backward(np.ones((1, 1, 2, 4)), (1, 1, 1, 2), 2)[0, 0].tolist()
    [[4.0, 4.0]]
    """
    s_h, s_w = _pair(scale_factor)
    h, w = input_shape[2:]
    ah = _interp_matrix(h, grad_output.shape[2], s_h, mode, align_corners)
    aw = _interp_matrix(w, grad_output.shape[3], s_w, mode, align_corners)
    return np.einsum("ph,ncpq,qw->nchw", ah, grad_output, aw).astype(grad_output.dtype)
