"""Convolution, written to be read: pad, gather the windows, one matrix product.

The forward pass of ``conv2d`` is three steps:

1. pad the input with zeros;
2. im2col: look at every ``kH x kW`` window of the padded input through one
   strided view (no copy), then copy it once into a matrix with one row per
   output position and one column per (input channel, kernel offset);
3. multiply that matrix by the weights seen as a matrix: one product.

The backward pass reuses the gathered matrix: ``dW`` is one product, and the
input gradient is the product ``dY @ W`` scattered back onto the input, one
strided slice-add per kernel offset (col2im, the adjoint of step 2).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def _pair(v: Any) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; a pair stays a pair."""
    return (int(v), int(v)) if np.ndim(v) == 0 else (int(v[0]), int(v[1]))


def conv_padding(padding: Any, kernel: tuple[int, int], dilation: tuple[int, int]) -> Pads:
    """Pads per side from an int, a pair, ``"valid"`` (none) or ``"same"``.

    ``"same"`` pads ``d*(k-1)`` in all along an axis, the odd one at the end, as PyTorch.

    >>> conv_padding("same", (4, 3), (1, 1))
    ((1, 2), (1, 1))
    """
    if padding == "valid":
        return ((0, 0), (0, 0))
    if padding == "same":
        t = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return ((t[0] // 2, t[0] - t[0] // 2), (t[1] // 2, t[1] - t[1] // 2))
    ph, pw = _pair(padding)
    return ((ph, ph), (pw, pw))


def windows(xpad: np.ndarray, kernel: Any, stride: Any, dilation: Any) -> np.ndarray:
    """Every window of ``xpad`` as a read-only view (nothing is copied).

    ``win[n, c, i, j, p, q] = xpad[n, c, sH*i + dH*p, sW*j + dW*q]``

    Shape: ``xpad`` (N, C, Hp, Wp) -> (N, C, OH, OW, kH, kW) with
    ``OH = floor((Hp - dH*(kH-1) - 1) / sH) + 1``.

    >>> windows(np.arange(16.0).reshape(1, 1, 4, 4), 3, 1, 1)[0, 0, 1, 0]
    array([[ 4.,  5.,  6.],
           [ 8.,  9., 10.],
           [12., 13., 14.]])
    """
    (kh, kw), (sh, sw), (dh, dw) = _pair(kernel), _pair(stride), _pair(dilation)
    span = (dh * (kh - 1) + 1, dw * (kw - 1) + 1)  # the dilated window
    win = sliding_window_view(xpad, span, axis=(2, 3))  # (N, C, Hp-span+1, Wp-span+1, *span)
    return win[:, :, ::sh, ::sw, ::dh, ::dw]


def col2im(cols: np.ndarray, shape: tuple[int, ...], stride: Any, dilation: Any) -> np.ndarray:
    """The adjoint of :func:`windows`: add every window's values back where they came from.

    ``out[n, c, sH*i + dH*p, sW*j + dW*q] += cols[n, c, i, j, p, q]``, one
    strided slice-add per kernel offset ``(p, q)``.

    Shape: ``cols`` (N, C, OH, OW, kH, kW) -> ``out`` of ``shape`` (N, C, Hp, Wp).

    >>> col2im(np.ones((1, 1, 2, 2, 2, 2)), (1, 1, 3, 3), 1, 1)[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    oh, ow, kh, kw = cols.shape[2:]
    out = np.zeros(shape, dtype=cols.dtype)
    for p in range(kh):  # a loop over kernel offsets, each one whole-array add
        for q in range(kw):
            rows = slice(p * dh, p * dh + sh * (oh - 1) + 1, sh)
            cs = slice(q * dw, q * dw + sw * (ow - 1) + 1, sw)
            out[:, :, rows, cs] += cols[:, :, :, :, p, q]
    return out


def _im2col(input, weight_shape, stride, padding, dilation, groups):
    """The gathered matrix of :func:`conv2d`, per group, and the padded geometry.

    Shape: ``input`` (N, C, H, W) -> ``cols`` (G, N*OH*OW, C/G*kH*kW), ``pads``, ``(OH, OW)``.
    """
    n, c, h, w = input.shape
    o, cg, kh, kw = weight_shape
    if c != cg * groups or o % groups:
        raise ValueError(
            f"conv2d: input of {c} channels, weight {tuple(weight_shape)} and groups={groups} "
            "do not fit (expected C == weight.shape[1] * groups and O divisible by groups)"
        )
    if padding == "same" and _pair(stride) != (1, 1):
        raise ValueError(f"conv2d: padding='same' needs stride 1, got stride={stride}")
    pads = conv_padding(padding, (kh, kw), _pair(dilation))
    xpad = np.pad(input, ((0, 0), (0, 0), *pads))
    win = windows(xpad, (kh, kw), stride, dilation)  # (N, C, OH, OW, kH, kW): a view
    oh, ow = win.shape[2:4]
    # (N, G, C/G, OH, OW, kH, kW) -> (G, N, OH, OW, C/G, kH, kW) -> (G, N*OH*OW, C/G*kH*kW):
    # the one copy (im2col).
    win = win.reshape(n, groups, cg, oh, ow, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    return win.reshape(groups, n * oh * ow, cg * kh * kw), pads, (oh, ow)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation), as ``torch.nn.functional.conv2d``.

    ``y[n,o,i,j] = b[o] + sum_{c,p,q} W[o, c, p, q] * x_pad[n, gC + c, sH*i + dH*p, sW*j + dW*q]``

    where ``gC = (o // (O/G)) * C/G`` is the first input channel of output channel
    ``o``'s group: with ``groups=G`` the channels are cut into ``G`` groups, each
    group's outputs seeing only its own inputs (``G = C``: depthwise).

    Parameters
    ----------
    input : (N, C, H, W) array
    weight : (O, C/G, kH, kW) array
    bias : (O,) array, optional
    stride, dilation : int or pair
    padding : int, pair, "valid" or "same" (stride 1 only)
    groups : int, dividing C and O

    Shape: output (N, O, OH, OW), ``OH = floor((H + padH_total - dH*(kH - 1) - 1) / sH) + 1``.

    Examples
    --------
    The tutorials' 5x5 image and 3x3 kernel:

    >>> image = np.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1],
    ...                   [0, 0, 1, 1, 0], [0, 1, 1, 0, 0]], dtype=float)
    >>> kernel = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=float)
    >>> conv2d(image[None, None], kernel[None, None])[0, 0]
    array([[4., 3., 4.],
           [2., 4., 3.],
           [2., 3., 4.]])

    The X/O tutorial's filtering is the mean of the products of a feature and a
    patch: the ``\\`` diagonal against the top-left corner of the X agrees in 8
    pixels and disagrees in 1, so (8 - 1) / 9, the tutorial's 0.77:

    >>> from clearconv.data import xo_canonical
    >>> diagonal = np.where(np.eye(3), 1.0, -1.0)
    >>> y = conv2d(xo_canonical()[:1], diagonal[None, None] / 9)
    >>> y.shape, round(float(y[0, 0, 0, 0]), 4), float(y[0, 0, 1, 1])
    ((1, 1, 7, 7), 0.7778, 1.0)
    """
    o, _, kh, kw = weight.shape
    cols, _, (oh, ow) = _im2col(input, weight.shape, stride, padding, dilation, groups)
    wmat = weight.reshape(groups, o // groups, -1)  # (G, O/G, C/G*kH*kW)
    y = cols @ wmat.transpose(0, 2, 1)  # (G, N*OH*OW, O/G): the one product
    # (G, N, OH, OW, O/G) -> (N, G, O/G, OH, OW) -> (N, O, OH, OW)
    y = y.reshape(groups, -1, oh, ow, o // groups).transpose(1, 0, 4, 2, 3)
    y = y.reshape(-1, o, oh, ow)
    return y if bias is None else y + bias.reshape(1, o, 1, 1)


def conv2d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1):
    """Gradients of :func:`conv2d`: ``(grad_input, grad_weight, grad_bias)``.

    With ``X`` the gathered matrix and ``Y = X @ W.T`` (per group)::

        dW = dY.T @ X          db = sum of dY over N, OH, OW
        dX = dY @ W            dx = col2im(dX), cropped to the unpadded input

    Shape: ``grad_output`` (N, O, OH, OW) -> ``grad_input`` like ``input``,
    ``grad_weight`` like ``weight``, ``grad_bias`` (O,).

    >>> x, w = np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    >>> dx, dw, db = conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    >>> dx[0, 0].tolist(), dw[0, 0].tolist(), db.tolist()
    ([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], [[4.0, 4.0], [4.0, 4.0]], [4.0])
    """
    n, c, h, w = input.shape
    o, cg, kh, kw = weight.shape
    cols, pads, (oh, ow) = _im2col(input, weight.shape, stride, padding, dilation, groups)
    # dY: (N, G, O/G, OH, OW) -> (G, N, OH, OW, O/G) -> (G, N*OH*OW, O/G)
    g = grad_output.reshape(n, groups, o // groups, oh, ow).transpose(1, 0, 3, 4, 2)
    g = g.reshape(groups, n * oh * ow, o // groups)
    grad_weight = (g.transpose(0, 2, 1) @ cols).reshape(weight.shape)  # (G, O/G, C/G*kH*kW)
    dcols = g @ weight.reshape(groups, o // groups, -1)  # (G, N*OH*OW, C/G*kH*kW)
    # (G, N, OH, OW, C/G, kH, kW) -> (N, G, C/G, OH, OW, kH, kW) -> (N, C, OH, OW, kH, kW)
    dcols = dcols.reshape(groups, n, oh, ow, cg, kh, kw).transpose(1, 0, 4, 2, 3, 5, 6)
    (t, b), (lf, r) = pads
    padded = (n, c, h + t + b, w + lf + r)
    dxpad = col2im(dcols.reshape(n, c, oh, ow, kh, kw), padded, stride, dilation)
    return dxpad[:, :, t : t + h, lf : lf + w], grad_weight, grad_output.sum(axis=(0, 2, 3))


def _as_2d(stride, padding, dilation):
    """Conv1d's settings as those of a conv2d over ``(N, C, 1, L)``."""
    pad = padding if isinstance(padding, str) else (0, int(np.ravel(padding)[0]))
    return (1, int(np.ravel(stride)[0])), pad, (1, int(np.ravel(dilation)[0]))


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """1-D convolution, as ``torch.nn.functional.conv1d``: :func:`conv2d` with height 1.

    ``y[n, o, i] = b[o] + sum_{c, p} W[o, c, p] * x_pad[n, c, s*i + d*p]`` (per group).

    Shape: ``input`` (N, C, L), ``weight`` (O, C/G, k) -> (N, O, OL),
    ``OL = floor((L + pad_total - d*(k - 1) - 1) / s) + 1``.

    >>> conv1d(np.array([[[1.0, 2.0, 3.0, 4.0]]]), np.array([[[1.0, -1.0]]]))
    array([[[-1., -1., -1.]]])
    """
    s, p, d = _as_2d(stride, padding, dilation)
    return conv2d(input[:, :, None], weight[:, :, None], bias, s, p, d, groups)[:, :, 0]


def conv1d_backward(grad_output, input, weight, stride=1, padding=0, dilation=1, groups=1):
    """Gradients of :func:`conv1d`: ``(grad_input, grad_weight, grad_bias)`` (as for conv2d).

    >>> dx, dw, db = conv1d_backward(np.ones((1, 1, 3)), np.ones((1, 1, 4)), np.ones((1, 1, 2)))
    >>> dx.tolist(), dw.tolist(), db.tolist()
    ([[[1.0, 2.0, 2.0, 1.0]]], [[[3.0, 3.0]]], [3.0])
    """
    s, p, d = _as_2d(stride, padding, dilation)
    dx, dw, db = conv2d_backward(
        grad_output[:, :, None], input[:, :, None], weight[:, :, None], s, p, d, groups
    )
    return dx[:, :, 0], dw[:, :, 0], db
