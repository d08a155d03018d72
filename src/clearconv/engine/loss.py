"""Losses on arrays: softmax cross-entropy from logits and mean squared error."""

from __future__ import annotations

from clearconv.backend import Array, xp_of
from clearconv.engine.activation import log_softmax


def cross_entropy(
    logits: Array, labels: Array, label_smoothing: float = 0.0
) -> tuple[Array, Array]:
    """Mean softmax cross-entropy; returns ``(loss, probabilities)``.

    With ``log p = log_softmax(logits)`` (max subtracted, so logits of 1e4 stay
    finite) and the smoothed target ``q = (1 - s) * onehot(label) + s / C``::

        loss = -mean_n sum_c q[n, c] * log p[n, c]
             = mean_n [ (1 - s) * (-log p[n, label_n]) + s * mean_c(-log p[n, c]) ]

    exactly as ``torch.nn.CrossEntropyLoss(label_smoothing=s)``.

    Shape: ``logits`` ``(N, C)``, ``labels`` ``(N,)`` integers in ``[0, C)``;
    loss a 0-d array of the logits' dtype; probabilities ``(N, C)``.
    """
    xp = xp_of(logits)
    n = logits.shape[0]
    logp = log_softmax(logits, axis=1)
    picked = logp[xp.arange(n), labels]  # (N,)
    loss = -(1 - label_smoothing) * xp.mean(picked)
    if label_smoothing:
        loss = loss - label_smoothing * xp.mean(logp)  # mean over N and C = mean_n mean_c
    return loss.astype(logits.dtype), xp.exp(logp)


def cross_entropy_backward(
    probs: Array, labels: Array, label_smoothing: float = 0.0, grad_out: float = 1.0
) -> Array:
    """Gradient of :func:`cross_entropy` for the logits: ``grad_out * (p - q) / N``."""
    xp = xp_of(probs)
    n, c = probs.shape
    g = probs.copy()
    g[xp.arange(n), labels] -= 1 - label_smoothing
    if label_smoothing:
        g -= label_smoothing / c
    g *= grad_out / n
    return g


def mse(pred: Array, target: Array) -> tuple[Array, Array]:
    """``mean((pred - target)**2)``; returns ``(loss, diff)`` with ``diff = pred - target``."""
    xp = xp_of(pred)
    diff = pred - target
    return xp.mean(diff * diff).astype(pred.dtype), diff


def mse_backward(diff: Array, grad_out: float = 1.0) -> Array:
    """Gradient of :func:`mse` for ``pred``: ``2 * (pred - target) / size``."""
    return diff * (2 * grad_out / diff.size)
