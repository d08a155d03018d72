"""Batch normalisation: each channel standardised by statistics over the batch."""

from __future__ import annotations

import numpy as np


def _axes(ndim: int) -> tuple[int, ...]:
    """Every axis but the channels (axis 1): (0,) for (N, C), (0, 2, 3) for (N, C, H, W)."""
    return (0, *range(2, ndim))


def _per_channel(v, ndim: int):
    """(C,) -> (1, C, 1, ...), to broadcast against an input of ``ndim`` axes."""
    return v.reshape(1, -1, *([1] * (ndim - 2)))


def batch_norm(
    input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5
):
    """Batch normalisation, as ``torch.nn.functional.batch_norm``.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel. In
    training ``mean`` and ``var`` are the batch's (over every axis but 1,
    ``var`` biased), and the running statistics, when given, are updated in
    place: ``r = (1 - momentum) * r + momentum * s`` with the *unbiased*
    batch variance. Otherwise the running statistics are used.

    Shape: ``input`` (N, C, *), the rest (C,); output like ``input``.

    >>> x = np.array([[1.0, 2.0], [3.0, 6.0]])
    >>> mean, var = np.zeros(2), np.ones(2)
    >>> y = batch_norm(x, mean, var, training=True)
    >>> y.round(3).tolist(), mean.tolist(), var.round(3).tolist()
    ([[-1.0, -1.0], [1.0, 1.0]], [0.2, 0.4], [1.1, 1.7])
    """
    axes = _axes(input.ndim)
    if training:
        mean, var = input.mean(axis=axes), input.var(axis=axes)
        if running_mean is not None:
            m = input.size // input.shape[1]  # values per channel
            running_mean[:] = (1 - momentum) * running_mean + momentum * mean
            running_var[:] = (1 - momentum) * running_var + momentum * var * m / (m - 1)
    else:
        mean, var = running_mean, running_var
    y = (input - _per_channel(mean, input.ndim)) / np.sqrt(_per_channel(var, input.ndim) + eps)
    if weight is not None:
        y = y * _per_channel(weight, input.ndim)
    return y if bias is None else y + _per_channel(bias, input.ndim)


def batch_norm_backward(
    grad_output, input, running_mean, running_var, weight=None, training=False, eps=1e-5
):
    """Gradients of :func:`batch_norm`: ``(grad_input, grad_weight, grad_bias)``.

    With ``xhat = (x - mean) / s``, ``s = sqrt(var + eps)`` and ``g = dy * weight``:
    in training, where the statistics depend on the batch,
    ``dx = (g - mean(g) - xhat * mean(g * xhat)) / s`` (means per channel);
    with the running statistics, ``dx = g / s``. ``dW = sum(dy * xhat)``,
    ``db = sum(dy)``; both None without ``weight``. The batch statistics are
    computed again from ``input``.

    Shape: ``grad_output`` and ``input`` (N, C, *) -> like ``input``, (C,), (C,).

    >>> x = np.array([[1.0], [3.0]])
    >>> dx, dw, db = batch_norm_backward(np.array([[1.0], [0.0]]), x, None, None, np.ones(1), True)
    >>> dx.round(4).tolist(), dw.round(4).tolist(), db.tolist()
    ([[0.0], [-0.0]], [-1.0], [1.0])
    """
    axes, nd = _axes(input.ndim), input.ndim
    if training:
        mean, var = input.mean(axis=axes), input.var(axis=axes)
    else:
        mean, var = running_mean, running_var
    s = np.sqrt(_per_channel(var, nd) + eps)
    xhat = (input - _per_channel(mean, nd)) / s
    g = grad_output if weight is None else grad_output * _per_channel(weight, nd)
    if training:
        g_mean = g.mean(axis=axes, keepdims=True)
        gx_mean = (g * xhat).mean(axis=axes, keepdims=True)
        grad_input = (g - g_mean - xhat * gx_mean) / s
    else:
        grad_input = g / s
    if weight is None:
        return grad_input, None, None
    return grad_input, (grad_output * xhat).sum(axis=axes), grad_output.sum(axis=axes)
