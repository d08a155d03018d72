"""Stochastic gradient descent with momentum, PyTorch's update rule."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from clearconv._validate import check_bool, check_float
from clearconv.backend import Array
from clearconv.nn.parameter import Parameter
from clearconv.optim.optimizer import Optimizer


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with momentum (``torch.optim.SGD``).

    For each parameter :math:`\theta` with gradient :math:`g`, per step:

    .. math::

        g &\leftarrow g + \lambda \theta \quad (\text{weight decay } \lambda)\\
        b &\leftarrow \mu b + (1 - \tau) g \quad (b = g \text{ on the first step})\\
        g &\leftarrow g + \mu b \text{ if nesterov else } b\\
        \theta &\leftarrow \theta - \gamma g

    The momentum lines apply only when :math:`\mu \ne 0`.

    Parameters
    ----------
    params : iterable of Parameter
        The parameters to update, e.g. ``model.parameters()``.
    lr : float, default 1e-3
        Learning rate :math:`\gamma` (>= 0).
    momentum : float, default 0
        Momentum factor :math:`\mu` (>= 0).
    dampening : float, default 0
        Dampening :math:`\tau` of the momentum's gradient term.
    weight_decay : float, default 0
        L2 penalty :math:`\lambda` added to the gradient (>= 0).
    nesterov : bool, default False
        Nesterov momentum; needs ``momentum > 0`` and ``dampening == 0``.

    Attributes
    ----------
    lr, momentum, dampening, weight_decay, nesterov
        The hyperparameters; schedules change ``lr`` (and ``momentum``).
    state : dict of int to dict
        ``{"momentum_buffer": array}`` per parameter index once momentum is used.

    Raises
    ------
    TypeError
        For non-numeric hyperparameters or params that are not Parameters.
    ValueError
        For negative lr, momentum or weight_decay, or nesterov without momentum.

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv.nn import Parameter
    >>> p = Parameter(np.array([1.0, 2.0], dtype=np.float32))
    >>> opt = SGD([p], lr=0.1, momentum=0.9)
    >>> p.grad = np.array([1.0, -1.0], dtype=np.float32)
    >>> opt.step()
    >>> p.data
    array([0.9, 2.1], dtype=float32)
    """

    defaults: ClassVar[dict[str, Any]] = {
        "lr": 1e-3,
        "momentum": 0.0,
        "dampening": 0.0,
        "weight_decay": 0.0,
        "nesterov": False,
    }
    _state_keys = ("momentum_buffer",)
    momentum: float
    dampening: float
    weight_decay: float
    nesterov: bool

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
        )

    def _check_hyperparameters(self, h: dict[str, Any]) -> dict[str, Any]:
        o = "SGD"
        out = {
            "lr": check_float(o, "lr", h["lr"], minimum=0.0),
            "momentum": check_float(o, "momentum", h["momentum"], minimum=0.0),
            "dampening": check_float(o, "dampening", h["dampening"]),
            "weight_decay": check_float(o, "weight_decay", h["weight_decay"], minimum=0.0),
            "nesterov": check_bool(o, "nesterov", h["nesterov"]),
        }
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise ValueError(
                f"{o}: nesterov=True requires momentum > 0 and dampening = 0, "
                f"got momentum={h['momentum']!r}, dampening={h['dampening']!r}"
            )
        return out

    def _update(self, p: Parameter, grad: Array, state: dict[str, Any]) -> None:
        theta = p.data
        if self.weight_decay != 0:
            grad = grad + self.weight_decay * theta  # a new array: p.grad is left as it was
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = grad.copy()
                state["momentum_buffer"] = buf
            else:
                buf *= self.momentum
                buf += grad if self.dampening == 0 else (1 - self.dampening) * grad
            grad = grad + self.momentum * buf if self.nesterov else buf
        theta -= self.lr * grad
