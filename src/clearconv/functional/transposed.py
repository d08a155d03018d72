"""Transposed convolution and upsampling, written to be read (plain NumPy).

Both grow a map. A transposed convolution spreads every input value, times
the kernel, over the output (a convolution's backward pass run forward);
upsampling interpolates between neighbours, one interpolation matrix per axis.
"""

from __future__ import annotations

import numpy as np

from clearconv.functional.conv import _pair, conv2d, conv2d_backward


def conv_transpose2d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """Transposed 2-D convolution, as ``torch.nn.functional.conv_transpose2d``.

    The adjoint of :func:`conv2d` from (N, C_out, OH, OW) to (N, C_in, H, W), with
    ``weight`` (C_in, C_out/groups, kH, kW) as that convolution's: its input
    gradient, with ``input`` in the place of the output gradient. Output size
    ``OH = (H-1)*sH - 2*pH + dH*(kH-1) + opH + 1``.

    >>> x = np.ones((1, 1, 2, 2))
    >>> conv_transpose2d(x, np.ones((1, 1, 2, 2)))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    (s_h, s_w), (p_h, p_w), (o_h, o_w), (d_h, d_w) = map(
        _pair, (stride, padding, output_padding, dilation)
    )
    n, _, h, w = input.shape
    kh, kw = weight.shape[2:]
    oh = (h - 1) * s_h - 2 * p_h + d_h * (kh - 1) + o_h + 1
    ow = (w - 1) * s_w - 2 * p_w + d_w * (kw - 1) + o_w + 1
    big = np.zeros((n, weight.shape[1] * groups, oh, ow), dtype=input.dtype)
    y = conv2d_backward(input, big, weight, stride, padding, dilation, groups)[0]
    return y if bias is None else y + bias.reshape(1, -1, 1, 1)


def conv_transpose2d_backward(
    grad_output, input, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1
):
    """Gradients ``(dx, dW, db)`` of :func:`conv_transpose2d`, by the same adjoint:
    ``dx = conv2d(dY, W)`` and ``dW`` is that convolution's weight gradient for
    the output gradient ``x``.

    >>> x, w = np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2))
    >>> dx, dw, db = conv_transpose2d_backward(np.ones((1, 1, 3, 3)), x, w)
    >>> dx[0, 0].tolist(), db.tolist()
    ([[4.0, 4.0], [4.0, 4.0]], [9.0])
    """
    dx = conv2d(grad_output, weight, None, stride, padding, dilation, groups)
    dx = dx[:, :, : input.shape[2], : input.shape[3]]  # output padding: rows x never had
    dw = conv2d_backward(input, grad_output, weight, stride, padding, dilation, groups)[1]
    return dx, dw, grad_output.sum(axis=(0, 2, 3))


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
    s_h, s_w = np.broadcast_to(scale_factor, 2)  # a number or a pair
    h, w = input.shape[2:]
    ah = _interp_matrix(h, int(np.floor(h * s_h)), s_h, mode, align_corners)
    aw = _interp_matrix(w, int(np.floor(w * s_w)), s_w, mode, align_corners)
    return np.einsum("ph,nchw,qw->ncpq", ah, input, aw).astype(input.dtype)


def upsample_backward(grad_output, input_shape, scale_factor, mode="nearest", align_corners=False):
    """Gradient of :func:`upsample`: ``dx[n, c] = A_h.T @ dY[n, c] @ A_w``.

    >>> upsample_backward(np.ones((1, 1, 2, 4)), (1, 1, 1, 2), 2)[0, 0].tolist()
    [[4.0, 4.0]]
    """
    s_h, s_w = np.broadcast_to(scale_factor, 2)  # a number or a pair
    h, w = input_shape[2:]
    ah = _interp_matrix(h, grad_output.shape[2], s_h, mode, align_corners)
    aw = _interp_matrix(w, grad_output.shape[3], s_w, mode, align_corners)
    return np.einsum("ph,ncpq,qw->nchw", ah, grad_output, aw).astype(grad_output.dtype)
