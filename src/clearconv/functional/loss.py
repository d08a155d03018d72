"""Losses with mean reduction: softmax cross-entropy from logits, mean squared error."""

from __future__ import annotations

import numpy as np

from clearconv.functional.activation import log_softmax


def _soft_target(target, shape, label_smoothing, weight, ignore_index, dtype):
    """``w[c] * q`` with ``q = (1 - s) * onehot(target) + s / C``, 0 where ignored,
    (N, *) labels -> (N, C, *); and the mean's divisor ``sum_i w[y_i]`` over the kept."""
    c = shape[1]
    keep = target != ignore_index
    onehot = np.moveaxis(np.arange(c) == np.where(keep, target, 0)[..., None], -1, 1)
    w = (np.ones(c) if weight is None else weight).reshape((1, c) + (1,) * (len(shape) - 2))
    kept = w * np.expand_dims(keep, 1)  # (1 or N, C, *): the class weight, 0 where ignored
    q = (1 - label_smoothing) * onehot + label_smoothing / c
    return (q * kept).astype(dtype), (onehot * kept).sum().astype(dtype)


def cross_entropy(input, target, label_smoothing=0.0, weight=None, ignore_index=-100):
    """Mean softmax cross-entropy, as ``torch.nn.functional.cross_entropy``.

    ``loss = -sum_i sum_c w[c] q[i, c] log_softmax(x)[i, c] / sum_i w[y_i]`` over the
    samples (and pixels) ``i`` whose label is not ``ignore_index``, with the target
    ``q = (1 - s) * onehot(label) + s / C`` (``s = label_smoothing``), ``w`` ones by default.

    Shape: ``input`` (N, C, *) logits, ``target`` (N, *) integers in ``[0, C)`` -> a scalar.

    >>> bool(np.isclose(cross_entropy(np.zeros((2, 4)), np.array([0, 3])), np.log(4)))
    True
    """
    q, total = _soft_target(target, input.shape, label_smoothing, weight, ignore_index, input.dtype)
    return -(q * log_softmax(input, dim=1)).sum() / total


def cross_entropy_backward(
    input, target, label_smoothing=0.0, grad_output=1.0, weight=None, ignore_index=-100
):
    """Gradient of :func:`cross_entropy` for the logits: ``dy * (sum_c q' softmax(x) - q')
    / sum_i w[y_i]`` with ``q' = w * q`` (zero where ignored).

    >>> cross_entropy_backward(np.zeros((1, 2)), np.array([1]))
    array([[ 0.5, -0.5]])
    """
    q, total = _soft_target(target, input.shape, label_smoothing, weight, ignore_index, input.dtype)
    p = np.exp(log_softmax(input, dim=1))
    return (q.sum(axis=1, keepdims=True) * p - q) * (grad_output / total)


def mse_loss(input, target):
    """Mean squared error, as ``torch.nn.functional.mse_loss``: ``mean((x - t)**2)``.

    Shape: ``input`` and ``target`` alike (*) -> a scalar.

    >>> float(mse_loss(np.array([1.0, 3.0]), np.array([0.0, 0.0])))
    5.0
    """
    return ((input - target) ** 2).mean()


def mse_loss_backward(input, target, grad_output=1.0):
    """Gradient of :func:`mse_loss` for ``input``: ``2 * dy * (x - t) / size``.

    >>> mse_loss_backward(np.array([1.0, 3.0]), np.array([0.0, 0.0]))
    array([1., 3.])
    """
    return (input - target) * (2 * grad_output / input.size)
