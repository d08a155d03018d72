"""Losses on arrays: softmax cross-entropy from logits and mean squared error."""

from __future__ import annotations

import numpy as np

from clearconv.backend import Array, xp_of
from clearconv.engine.activation import log_softmax


def cross_entropy(
    logits: Array,
    labels: Array,
    label_smoothing: float = 0.0,
    weight: Array | None = None,
    ignore_index: int = -100,
) -> tuple[Array, Array]:
    """Mean softmax cross-entropy over the classes of axis 1; returns ``(loss, probabilities)``.

    With ``log p = log_softmax(logits)`` (max subtracted, so logits of 1e4 stay
    finite), class weights ``w`` (ones by default) and the smoothed target
    ``q = (1 - s) * onehot(label) + s / C``, summed over the samples (and
    pixels) ``i`` whose label is not ``ignore_index``::

        loss = sum_i [ (1 - s) * w[y_i] * (-log p[i, y_i]) + s/C * sum_c w[c] * (-log p[i, c]) ]
               / sum_i w[y_i]

    exactly as ``torch.nn.CrossEntropyLoss(weight, ignore_index=..., label_smoothing=s)``
    (NaN, as there, when every label is ignored).

    Shape: ``logits`` ``(N, C)`` or ``(N, C, d1, ...)``, ``labels`` ``(N,)`` or
    ``(N, d1, ...)`` integers in ``[0, C)`` or ``ignore_index``, ``weight``
    ``(C,)``; loss a 0-d array of the logits' dtype; probabilities like ``logits``.
    """
    xp = xp_of(logits)
    c = logits.shape[1]
    logp = log_softmax(logits, axis=1)
    keep, safe, wy, total = _targets(labels, weight, ignore_index, logits.dtype)
    picked = xp.take_along_axis(logp, safe[:, None], axis=1)[:, 0]  # (N, d1, ...)
    nll = -xp.sum(wy * picked)
    if label_smoothing:
        wb = 1.0 if weight is None else weight.reshape((1, c) + (1,) * (logp.ndim - 2))
        per = xp.sum(logp * wb, axis=1)  # (N, d1, ...): sum_c w[c] * log p[i, c]
        smooth = -xp.sum(per * keep)
        nll = (1 - label_smoothing) * nll + label_smoothing / c * smooth
    with np.errstate(invalid="ignore", divide="ignore"):  # every label ignored: NaN, as torch
        loss = nll / total
    return loss.astype(logits.dtype), xp.exp(logp)


def _targets(labels: Array, weight: Array | None, ignore_index: int, dtype):
    """``(keep, safe_labels, w[y] * keep, sum w[y] * keep)`` for the labels not ignored."""
    xp = xp_of(labels)
    keep = labels != ignore_index
    safe = xp.where(keep, labels, 0)  # ignored labels index class 0, then count nothing
    wy = keep.astype(dtype) if weight is None else xp.where(keep, weight[safe], 0).astype(dtype)
    return keep, safe, wy, xp.sum(wy, dtype=np.float64)


def cross_entropy_backward(
    probs: Array,
    labels: Array,
    label_smoothing: float = 0.0,
    grad_out: float = 1.0,
    weight: Array | None = None,
    ignore_index: int = -100,
) -> Array:
    """Gradient of :func:`cross_entropy` for the logits.

    Per kept sample ``i``: ``((1 - s) w[y_i] + s/C sum(w)) p_i - (1 - s) w[y_i] onehot(y_i)
    - s/C w``, over ``sum_i w[y_i]``, times ``grad_out``; zero where ignored.
    """
    xp = xp_of(probs)
    c = probs.shape[1]
    keep, safe, wy, total = _targets(labels, weight, ignore_index, probs.dtype)
    scale = probs.dtype.type(1 - label_smoothing) * wy
    if label_smoothing:
        wsum = float(c if weight is None else xp.sum(weight))
        scale = scale + keep.astype(probs.dtype) * probs.dtype.type(label_smoothing / c * wsum)
    g = probs * scale[:, None]
    picked = xp.take_along_axis(g, safe[:, None], axis=1)
    onehot_part = picked - (probs.dtype.type(1 - label_smoothing) * wy)[:, None]
    xp.put_along_axis(g, safe[:, None], onehot_part, axis=1)
    if label_smoothing:
        wb = xp.ones(c, probs.dtype) if weight is None else weight.astype(probs.dtype)
        wb = wb.reshape((1, c) + (1,) * (g.ndim - 2)) * probs.dtype.type(label_smoothing / c)
        g -= wb * keep[:, None].astype(probs.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        g *= float(grad_out / total)  # a Python float: scaled in the dtype of g, as before
    return g


def mse(pred: Array, target: Array) -> tuple[Array, Array]:
    """``mean((pred - target)**2)``; returns ``(loss, diff)`` with ``diff = pred - target``."""
    xp = xp_of(pred)
    diff = pred - target
    return xp.mean(diff * diff).astype(pred.dtype), diff


def mse_backward(diff: Array, grad_out: float = 1.0) -> Array:
    """Gradient of :func:`mse` for ``pred``: ``2 * (pred - target) / size``."""
    return diff * (2 * grad_out / diff.size)
