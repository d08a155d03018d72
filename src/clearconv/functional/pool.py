"""Pooling, written to be read: pad, look at every window, reduce it.

Windows come from the same strided view as convolution's
(:func:`~clearconv.functional.conv.windows`), and the gradients go back
through its adjoint (:func:`~clearconv.functional.conv.col2im`).
"""

from __future__ import annotations

import numpy as np

from clearconv.functional.conv import _pair, col2im, windows


def pool_out_size(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """Output length of a pooling along one axis, PyTorch's rule.

    ``floor((size + 2p - d*(k-1) - 1) / s) + 1`` (``ceil`` with ``ceil_mode``,
    where the last window must still start inside the input or the left padding).

    >>> pool_out_size(7, 2, 2, 0, 1, False), pool_out_size(7, 2, 2, 0, 1, True)
    (3, 4)
    """
    span = size + 2 * p - d * (k - 1) - 1
    out = -(-span // s) + 1 if ceil_mode else span // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _geometry(hw, kernel_size, stride, padding, dilation, ceil_mode):
    """Per axis: kernel, stride (``kernel_size`` when None), padding, dilation,
    output size, and the padding after the input that the last window needs
    (ceil_mode may need more than ``padding``)."""
    k, p, d = _pair(kernel_size), _pair(padding), _pair(dilation)
    s = k if stride is None else _pair(stride)
    out = [pool_out_size(n, *a, ceil_mode) for n, a in zip(hw, zip(k, s, p, d))]
    after = [max(p[a], (out[a] - 1) * s[a] + d[a] * (k[a] - 1) + 1 - hw[a] - p[a]) for a in (0, 1)]
    return k, s, p, d, out, after


def _pooled_windows(input, kernel_size, stride, padding, dilation, ceil_mode, fill):
    """The padded input (``fill`` around it) and its pooling windows (a view).

    Shape: ``input`` (N, C, H, W) -> ``xpad`` (N, C, Hp, Wp), ``win`` (N, C, OH, OW, kH, kW).
    """
    geo = _geometry(input.shape[2:], kernel_size, stride, padding, dilation, ceil_mode)
    k, s, p, d, out, after = geo
    pads = ((0, 0), (0, 0), (p[0], after[0]), (p[1], after[1]))
    xpad = np.pad(input, pads, constant_values=fill)
    return xpad, windows(xpad, k, s, d)[:, :, : out[0], : out[1]]


def _crop(dxpad, input_shape, padding):
    """The gradient of the padded input cut back to the input: (N, C, Hp, Wp) -> (N, C, H, W)."""
    (ph, pw), (h, w) = _pair(padding), input_shape[2:]
    return dxpad[:, :, ph : ph + h, pw : pw + w]


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """2-D max pooling, as ``torch.nn.functional.max_pool2d``.

    ``y[n, c, i, j] = max_{p, q} x_pad[n, c, sH*i + dH*p, sW*j + dW*q]`` (padding is -inf).

    Shape: ``input`` (N, C, H, W) -> (N, C, OH, OW), ``OH`` by :func:`pool_out_size`;
    ``stride`` defaults to ``kernel_size``.

    The tutorials' 2x2 pooling with the ragged border kept (ceil_mode):

    >>> max_pool2d(np.arange(9.0).reshape(1, 1, 3, 3), 2, ceil_mode=True)[0, 0]
    array([[4., 5.],
           [7., 8.]])
    """
    _, win = _pooled_windows(input, kernel_size, stride, padding, dilation, ceil_mode, -np.inf)
    return win.max(axis=(4, 5))


def max_pool2d_backward(
    grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
):
    """Input gradient of :func:`max_pool2d`: each window's gradient goes to its maximum.

    ``dx[n, c, sH*i + dH*p*, sW*j + dW*q*] += dy[n, c, i, j]`` with ``(p*, q*)``
    the first maximum of the window in row-major order, as PyTorch.

    Shape: ``grad_output`` (N, C, OH, OW), ``input`` (N, C, H, W) -> (N, C, H, W).

    >>> x = np.array([[[[1.0, 3.0], [3.0, 0.0]]]])
    >>> max_pool2d_backward(np.ones((1, 1, 1, 1)), x, 2)[0, 0]
    array([[0., 1.],
           [0., 0.]])
    """
    xpad, win = _pooled_windows(input, kernel_size, stride, padding, dilation, ceil_mode, -np.inf)
    n, c, oh, ow, kh, kw = win.shape
    first_max = win.reshape(n, c, oh, ow, kh * kw).argmax(axis=4)  # (N, C, OH, OW)
    onehot = np.arange(kh * kw) == first_max[..., None]  # (N, C, OH, OW, kH*kW)
    dcols = (onehot * grad_output[..., None]).reshape(win.shape)
    stride = kernel_size if stride is None else stride
    return _crop(col2im(dcols, xpad.shape, stride, dilation), input.shape, padding)


def _count(size, out, k, s, p, count_include_pad):
    """How many values each window along one axis averages, PyTorch's rule.

    Window ``i`` covers ``[i*s - p, i*s - p + k)`` of the input's axis, cut at
    ``size + p`` (ceil_mode's overhang never counts) and, without
    ``count_include_pad``, to the input itself ``[0, size)``.

    >>> _count(4, 3, 3, 2, 1, True), _count(4, 3, 3, 2, 1, False)  # ceil_mode's 3rd window
    (array([3, 3, 2]), array([2, 3, 1]))
    """
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if not count_include_pad:
        start, end = np.maximum(start, 0), np.minimum(end, size)
    return end - start


def _divisor(hw, kernel_size, stride, padding, ceil_mode, count_include_pad):
    """The (OH, OW) counts the averages divide by: one axis's counts times the other's."""
    k, s, p, _, out, _ = _geometry(hw, kernel_size, stride, padding, 1, ceil_mode)
    rows, cols = (_count(hw[a], out[a], k[a], s[a], p[a], count_include_pad) for a in (0, 1))
    return np.outer(rows, cols)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """2-D average pooling, as ``torch.nn.functional.avg_pool2d``.

    ``y[n, c, i, j] = sum_{p, q} x_pad[n, c, sH*i + p, sW*j + q] / count[i, j]``; the
    zero padding is counted when ``count_include_pad``, ceil_mode's overhang never.

    Shape: ``input`` (N, C, H, W) -> (N, C, OH, OW), ``OH`` by :func:`pool_out_size`.

    >>> avg_pool2d(np.arange(16.0).reshape(1, 1, 4, 4), 2)[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]])
    """
    _, win = _pooled_windows(input, kernel_size, stride, padding, 1, ceil_mode, 0.0)
    count = _divisor(input.shape[2:], kernel_size, stride, padding, ceil_mode, count_include_pad)
    return win.sum(axis=(4, 5)) / count.astype(input.dtype)


def avg_pool2d_backward(
    grad_output,
    input_shape,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
):
    """Input gradient of :func:`avg_pool2d`: each window's ``dy / count`` spread over it.

    ``dx[n, c, sH*i + p, sW*j + q] += dy[n, c, i, j] / count[i, j]``.

    Shape: ``grad_output`` (N, C, OH, OW) -> ``input_shape`` (N, C, H, W).

    >>> avg_pool2d_backward(np.ones((1, 1, 1, 2)), (1, 1, 2, 4), 2)[0, 0]
    array([[0.25, 0.25, 0.25, 0.25],
           [0.25, 0.25, 0.25, 0.25]])
    """
    hw = tuple(input_shape[2:])
    k, s, p, _, _, after = _geometry(hw, kernel_size, stride, padding, 1, ceil_mode)
    count = _divisor(hw, kernel_size, stride, padding, ceil_mode, count_include_pad)
    g = grad_output / count.astype(grad_output.dtype)  # (N, C, OH, OW)
    dcols = np.broadcast_to(g[..., None, None], (*g.shape, *k))  # every tap of a window
    padded = (*input_shape[:2], p[0] + hw[0] + after[0], p[1] + hw[1] + after[1])
    return _crop(col2im(dcols, padded, s, 1), input_shape, padding)


def _as_2d(kernel_size, stride, padding, dilation=1):
    """A 1-D pooling's settings (ints or 1-tuples) as those of a 2-D one over ``(N, C, 1, L)``."""
    k, p, d = (int(np.ravel(v)[0]) for v in (kernel_size, padding, dilation))
    s = None if stride is None else (1, int(np.ravel(stride)[0]))
    return (1, k), s, (0, p), (1, d)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """1-D max pooling over (N, C, L): :func:`max_pool2d` with height 1.

    Shape: (N, C, L) -> (N, C, OL), ``OL`` by :func:`pool_out_size`.

    >>> max_pool1d(np.array([[[1.0, 3.0, 2.0, 0.0, 5.0]]]), 2)
    array([[[3., 2.]]])
    """
    k, s, p, d = _as_2d(kernel_size, stride, padding, dilation)
    return max_pool2d(input[:, :, None], k, s, p, d, ceil_mode)[:, :, 0]


def max_pool1d_backward(
    grad_output, input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False
):
    """Input gradient of :func:`max_pool1d` (each window's to its first maximum).

    >>> max_pool1d_backward(np.ones((1, 1, 2)), np.array([[[1.0, 3.0, 2.0, 0.0]]]), 2)
    array([[[0., 1., 1., 0.]]])
    """
    k, s, p, d = _as_2d(kernel_size, stride, padding, dilation)
    dx = max_pool2d_backward(grad_output[:, :, None], input[:, :, None], k, s, p, d, ceil_mode)
    return dx[:, :, 0]


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """1-D average pooling over (N, C, L): :func:`avg_pool2d` with height 1.

    >>> avg_pool1d(np.array([[[1.0, 3.0, 2.0, 0.0]]]), 2)
    array([[[2., 1.]]])
    """
    k, s, p, _ = _as_2d(kernel_size, stride, padding)
    return avg_pool2d(input[:, :, None], k, s, p, ceil_mode, count_include_pad)[:, :, 0]


def avg_pool1d_backward(
    grad_output,
    input_shape,
    kernel_size,
    stride=None,
    padding=0,
    ceil_mode=False,
    count_include_pad=True,
):
    """Input gradient of :func:`avg_pool1d`.

    >>> avg_pool1d_backward(np.ones((1, 1, 2)), (1, 1, 4), 2)
    array([[[0.5, 0.5, 0.5, 0.5]]])
    """
    k, s, p, _ = _as_2d(kernel_size, stride, padding)
    n, c, length = input_shape
    g = grad_output[:, :, None]
    return avg_pool2d_backward(g, (n, c, 1, length), k, s, p, ceil_mode, count_include_pad)[:, :, 0]


def _bins(size: int, out: int, dtype) -> np.ndarray:
    """The (out, size) matrix whose row ``i`` averages ``[floor(i*size/out), ceil((i+1)*size/out))``

    >>> _bins(3, 2, float)
    array([[0.5, 0.5, 0. ],
           [0. , 0.5, 0.5]])
    """
    i = np.arange(out)
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    j = np.arange(size)
    inside = (j >= start[:, None]) & (j < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def _adaptive_size(input_shape, output_size):
    """``(OH, OW)`` from an int or a pair, None keeping the input's size."""
    oh, ow = (output_size, output_size) if np.ndim(output_size) == 0 else output_size
    return (input_shape[2] if oh is None else oh, input_shape[3] if ow is None else ow)


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed output size, as ``torch.nn.functional.adaptive_avg_pool2d``.

    ``y = A_H @ x @ A_W.T``, where row ``i`` of ``A_H`` (OH, H) averages rows
    ``[floor(i*H/OH), ceil((i+1)*H/OH))`` of ``x`` (PyTorch's bins), ``A_W`` likewise.

    Shape: (N, C, H, W) -> (N, C, OH, OW); ``output_size`` an int or a pair
    (None keeps that axis). ``adaptive_avg_pool2d(x, 1)`` is global average pooling.

    >>> adaptive_avg_pool2d(np.arange(8.0).reshape(1, 2, 2, 2), 1)[:, :, 0, 0]
    array([[1.5, 5.5]])
    """
    oh, ow = _adaptive_size(input.shape, output_size)
    return _bins(input.shape[2], oh, input.dtype) @ input @ _bins(input.shape[3], ow, input.dtype).T


def adaptive_avg_pool2d_backward(grad_output, input_shape, output_size):
    """Input gradient of :func:`adaptive_avg_pool2d`: ``dx = A_H.T @ dy @ A_W``.

    Shape: (N, C, OH, OW) -> ``input_shape`` (N, C, H, W).

    >>> adaptive_avg_pool2d_backward(np.ones((1, 1, 1, 1)), (1, 1, 2, 2), 1)[0, 0]
    array([[0.25, 0.25],
           [0.25, 0.25]])
    """
    oh, ow = _adaptive_size(input_shape, output_size)
    a_h, a_w = (_bins(n, o, grad_output.dtype) for n, o in zip(input_shape[2:], (oh, ow)))
    return a_h.T @ grad_output @ a_w
