"""Losses with mean reduction: softmax cross-entropy from logits, mean squared error."""

from __future__ import annotations

import numpy as np

from clearconv.functional.activation import log_softmax


def _soft_target(target, shape, label_smoothing, dtype):
    """``q = (1 - s) * onehot(target) + s / C``: (N,) labels -> (N, C)."""
    onehot = np.arange(shape[1]) == target[:, None]
    return ((1 - label_smoothing) * onehot + label_smoothing / shape[1]).astype(dtype)


def cross_entropy(input, target, label_smoothing=0.0):
    """Mean softmax cross-entropy, as ``torch.nn.functional.cross_entropy``.

    ``loss = -1/N sum_n sum_c q[n, c] * log_softmax(x)[n, c]`` with the target
    ``q = (1 - s) * onehot(label) + s / C`` (``s = label_smoothing``).

    Shape: ``input`` (N, C) logits, ``target`` (N,) integers in ``[0, C)`` -> a scalar.

    >>> bool(np.isclose(cross_entropy(np.zeros((2, 4)), np.array([0, 3])), np.log(4)))
    True
    """
    q = _soft_target(target, input.shape, label_smoothing, input.dtype)
    return -(q * log_softmax(input, dim=1)).sum() / input.shape[0]


def cross_entropy_backward(input, target, label_smoothing=0.0, grad_output=1.0):
    """Gradient of :func:`cross_entropy` for the logits: ``dy * (softmax(x) - q) / N``.

    >>> cross_entropy_backward(np.zeros((1, 2)), np.array([1]))
    array([[ 0.5, -0.5]])
    """
    q = _soft_target(target, input.shape, label_smoothing, input.dtype)
    p = np.exp(log_softmax(input, dim=1))
    return (p - q) * (grad_output / input.shape[0])


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
