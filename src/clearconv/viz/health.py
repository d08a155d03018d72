"""Training health: per-layer gradient norms and the fraction of dead ReLUs.

The tutorials warn of two silent failures: gradients that shrink layer by
layer until the first layers stop learning (vanishing gradients), and ReLUs
whose input is negative for every example, so they output 0 and pass no
gradient ever again ("dead" units). :func:`layer_health` measures both on one
probe batch with the engine's own forward and backward; :class:`HealthMonitor`
records them after every epoch (``clearconv.train.fit(..., on_epoch_end=monitor)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clearconv.nn import CrossEntropyLoss, LeakyReLU, Module, ReLU
from clearconv.viz.featuremaps import stages
from clearconv.viz.saliency import _KeepGrads

__all__ = ["HealthMonitor", "dead_relu_fraction", "gradient_norms", "layer_health"]


def gradient_norms(model: Module) -> dict[str, float]:
    """L2 norm of each parameter's ``.grad`` by dotted name (parameters without a gradient skipped).

    Example
    -------
    >>> from clearconv import nn
    >>> lin = nn.Linear(2, 1, rng=np.random.default_rng(0))
    >>> lin.weight.grad = np.array([[3.0, 4.0]], np.float32)
    >>> gradient_norms(lin)
    {'weight': 5.0}
    """
    return {
        n: float(np.linalg.norm(p.grad)) for n, p in model.named_parameters() if p.grad is not None
    }


def dead_relu_fraction(model: Module, x: np.ndarray) -> dict[str, float]:
    """For each top-level ReLU stage: the fraction of its units that are 0 for all of ``x``.

    A unit is one (channel, position) of the stage's output; a batch of a few
    hundred examples is enough to tell a dead unit from a rarely firing one.

    Example
    -------
    >>> from clearconv import nn
    >>> net = nn.Sequential(nn.Linear(2, 4, rng=np.random.default_rng(0)), nn.ReLU())
    >>> net[0].bias.data[:] = [-100, -100, 100, 100]
    >>> dead_relu_fraction(net, np.zeros((8, 2), np.float32))
    {'1': 0.5}
    """
    out: dict[str, float] = {}
    h = x
    for name, layer in stages(model):
        h = layer(h, training=False)
        if isinstance(layer, ReLU) and not isinstance(layer, LeakyReLU):
            out[name] = float(np.mean(np.all(h <= 0, axis=0)))
    return out


def layer_health(model: Module, x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, float]]:
    """Gradient norms of the cross-entropy loss on ``(x, y)`` and dead-ReLU fractions.

    Parameters
    ----------
    model : Module
        A Model or net producing logits.
    x, y : numpy.ndarray
        A preprocessed probe batch and its integer labels.

    Returns
    -------
    dict
        ``{"grad_norm": {param name: norm}, "dead_relu": {stage name: fraction}}``.
        Existing parameter gradients are left untouched.
    """
    with _KeepGrads(model):
        for p in model.parameters():
            p.grad = None
        loss = CrossEntropyLoss()
        loss(model(x, training=False), np.asarray(y))
        model.backward(loss.backward())
        norms = gradient_norms(model)
    return {"grad_norm": norms, "dead_relu": dead_relu_fraction(model, x)}


class HealthMonitor:
    """Record :func:`layer_health` on a fixed probe batch, once per call.

    Usable as ``fit(..., on_epoch_end=monitor)``: any arguments are accepted
    (the model is taken from the constructor). ``history`` is a list of
    dicts, one per epoch; :meth:`series` gives ``{name: [value per epoch]}``.

    Example
    -------
    >>> from clearconv import nn
    >>> r = np.random.default_rng(0)
    >>> net = nn.Sequential(nn.Linear(3, 4, rng=r), nn.ReLU(), nn.Linear(4, 2, rng=r))
    >>> mon = HealthMonitor(net, r.normal(size=(16, 3)).astype(np.float32), r.integers(0, 2, 16))
    >>> mon(); mon()
    >>> sorted(mon.series("grad_norm")), len(mon.series("dead_relu")["1"])
    (['0.bias', '0.weight', '2.bias', '2.weight'], 2)
    """

    def __init__(self, model: Module, x: np.ndarray, y: np.ndarray) -> None:
        self.model, self.x, self.y = model, x, np.asarray(y)
        self.history: list[dict[str, dict[str, float]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.history.append(layer_health(self.model, self.x, self.y))

    def series(self, key: str) -> dict[str, list[float]]:
        """``{name: values over epochs}`` for ``key`` in ``"grad_norm"``, ``"dead_relu"``."""
        if key not in ("grad_norm", "dead_relu"):
            raise ValueError(
                f"HealthMonitor.series: key must be 'grad_norm' or 'dead_relu', got {key!r}"
            )
        out: dict[str, list[float]] = {}
        for rec in self.history:
            for name, val in rec[key].items():
                out.setdefault(name, []).append(val)
        return out
