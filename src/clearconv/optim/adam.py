"""Adam and AdamW, PyTorch's update rules (the single-tensor path)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from clearconv._validate import check_bool, check_float
from clearconv.backend import Array, xp_of
from clearconv.engine import DEFAULT as ENGINE
from clearconv.nn.parameter import Parameter
from clearconv.optim.optimizer import Optimizer


def _check_betas(owner: str, betas: Any) -> tuple[float, float]:
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"{owner}: betas must be a pair (beta1, beta2), got {betas!r}")
    b1 = check_float(owner, "betas[0]", betas[0], minimum=0.0, maximum=1.0, open_max=True)
    b2 = check_float(owner, "betas[1]", betas[1], minimum=0.0, maximum=1.0, open_max=True)
    return (b1, b2)


class Adam(Optimizer):
    r"""Adam (``torch.optim.Adam``), optionally AMSGrad.

    For each parameter :math:`\theta` with gradient :math:`g`, at step :math:`t`
    (counted per parameter, from 1):

    .. math::

        g &\leftarrow g + \lambda \theta \quad (\text{weight decay } \lambda)\\
        m &\leftarrow \beta_1 m + (1 - \beta_1) g\\
        v &\leftarrow \beta_2 v + (1 - \beta_2) g^2\\
        \hat v &\leftarrow \max(\hat v, v) \text{ if amsgrad else } v\\
        \theta &\leftarrow \theta - \frac{\gamma}{1 - \beta_1^t}\,
            \frac{m}{\sqrt{\hat v} / \sqrt{1 - \beta_2^t} + \epsilon}

    Parameters
    ----------
    params : iterable of Parameter
        The parameters to update, e.g. ``model.parameters()``.
    lr : float, default 1e-3
        Learning rate :math:`\gamma` (>= 0).
    betas : pair of float, default (0.9, 0.999)
        Decay rates :math:`\beta_1, \beta_2` of the moment averages, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator for stability (>= 0).
    weight_decay : float, default 0
        L2 penalty :math:`\lambda` added to the gradient (>= 0).
    amsgrad : bool, default False
        Normalise by the running maximum of :math:`v` (AMSGrad).

    Attributes
    ----------
    lr, betas, eps, weight_decay, amsgrad
        The hyperparameters; schedules change ``lr`` and ``betas[0]``.
    state : dict of int to dict
        Per parameter index: ``step`` (int), ``exp_avg`` (:math:`m`),
        ``exp_avg_sq`` (:math:`v`) and, with amsgrad, ``max_exp_avg_sq``;
        arrays of the parameter's shape and dtype.

    Raises
    ------
    TypeError
        For non-numeric hyperparameters or betas that are not a pair.
    ValueError
        For a negative lr, eps or weight_decay, or a beta outside [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv.nn import Parameter
    >>> p = Parameter(np.array([1.0, 2.0], dtype=np.float32))
    >>> opt = Adam([p], lr=0.1)
    >>> p.grad = np.array([3.0, -0.5], dtype=np.float32)
    >>> opt.step()  # the first Adam step moves each weight by about lr
    >>> p.data
    array([0.9, 2.1], dtype=float32)
    """

    defaults: ClassVar[dict[str, Any]] = {
        "lr": 1e-3,
        "betas": (0.9, 0.999),
        "eps": 1e-8,
        "weight_decay": 0.0,
        "amsgrad": False,
    }
    _state_keys = ("step", "exp_avg", "exp_avg_sq")
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    amsgrad: bool
    _decoupled: ClassVar[bool] = False

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
        )

    def _check_hyperparameters(self, h: dict[str, Any]) -> dict[str, Any]:
        o = type(self).__name__
        return {
            "lr": check_float(o, "lr", h["lr"], minimum=0.0),
            "betas": _check_betas(o, h["betas"]),
            "eps": check_float(o, "eps", h["eps"], minimum=0.0),
            "weight_decay": check_float(o, "weight_decay", h["weight_decay"], minimum=0.0),
            "amsgrad": check_bool(o, "amsgrad", h["amsgrad"]),
        }

    def _expected_state_keys(self, hyperparameters: dict[str, Any]) -> set[str]:
        keys = set(self._state_keys)
        return keys | {"max_exp_avg_sq"} if hyperparameters["amsgrad"] else keys

    def _update(self, p: Parameter, grad: Array, state: dict[str, Any]) -> None:
        xp = xp_of(p.data)
        theta = p.data
        dt = theta.dtype.type
        beta1, beta2 = self.betas
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(theta)
            state["exp_avg_sq"] = xp.zeros_like(theta)
        if self.amsgrad and "max_exp_avg_sq" not in state:
            state["max_exp_avg_sq"] = xp.zeros_like(theta)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]

        if self.weight_decay != 0:
            if self._decoupled:
                theta *= 1 - self.lr * self.weight_decay
            else:
                grad = grad + self.weight_decay * theta  # a new array: p.grad is left as it was

        bias_correction1 = 1 - beta1**t
        bias_correction2_sqrt = (1 - beta2**t) ** 0.5
        step_size = self.lr / bias_correction1
        eps, amsgrad = self.eps, self.amsgrad
        vmax = state.get("max_exp_avg_sq")

        def update(theta, grad, m, v, vmax) -> None:  # in place, on whole arrays or slices
            # m.lerp_(g, 1 - beta1) as torch computes it: the weight in the
            # parameter's dtype, and the form chosen by the weight's size.
            w = dt(1 - beta1)
            if w < 0.5:
                m += w * (grad - m)
            else:
                m[...] = grad - (grad - m) * (dt(1) - w)
            v *= beta2
            v += (1 - beta2) * grad * grad
            if amsgrad:
                xp.maximum(vmax, v, out=vmax)
                v = vmax
            denom = xp.sqrt(v)
            denom /= bias_correction2_sqrt
            denom += eps
            theta += (-step_size * m) / denom

        arrays = [theta, m, v] + ([vmax] if amsgrad else [])
        if not all(a.flags.c_contiguous for a in arrays):
            update(theta, grad, m, v, vmax)
            return
        # Elementwise: a large parameter is updated in slices of its values,
        # shared among the engine's threads, with the same result.
        th, g, mf, vf = (a.reshape(-1) for a in (theta, grad, m, v))  # views (grad: maybe a copy)
        vmf = vmax.reshape(-1) if vmax is not None else None

        def part(sl: slice) -> None:
            update(th[sl], g[sl], mf[sl], vf[sl], vmf[sl] if vmf is not None else None)

        ENGINE.slices(part, theta.size, theta, 8 * theta.size)  # about 8 passes a value


class AdamW(Adam):
    r"""Adam with decoupled weight decay (``torch.optim.AdamW``).

    As :class:`Adam`, except that weight decay shrinks the weights directly,
    before the moment updates, instead of entering the gradient:

    .. math::

        \theta \leftarrow \theta (1 - \gamma \lambda)

    Parameters
    ----------
    params : iterable of Parameter
        The parameters to update, e.g. ``model.parameters()``.
    lr : float, default 1e-3
        Learning rate :math:`\gamma` (>= 0).
    betas : pair of float, default (0.9, 0.999)
        Decay rates of the moment averages, each in [0, 1).
    eps : float, default 1e-8
        Added to the denominator for stability (>= 0).
    weight_decay : float, default 1e-2
        Decoupled weight decay :math:`\lambda` (>= 0).
    amsgrad : bool, default False
        Normalise by the running maximum of the second moment (AMSGrad).

    Attributes
    ----------
    lr, betas, eps, weight_decay, amsgrad
        The hyperparameters.
    state : dict of int to dict
        As :class:`Adam`'s.

    Raises
    ------
    TypeError
        For non-numeric hyperparameters or betas that are not a pair.
    ValueError
        For a negative lr, eps or weight_decay, or a beta outside [0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv.nn import Parameter
    >>> p = Parameter(np.array([1.0, 2.0], dtype=np.float32))
    >>> opt = AdamW([p], lr=0.1, weight_decay=0.5)
    >>> p.grad = np.zeros(2, dtype=np.float32)
    >>> opt.step()  # no gradient: only the decay, theta * (1 - 0.1 * 0.5)
    >>> p.data
    array([0.95, 1.9 ], dtype=float32)
    """

    defaults: ClassVar[dict[str, Any]] = {**Adam.defaults, "weight_decay": 1e-2}
    _decoupled = True

    def __init__(
        self,
        params: Iterable[Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
    ) -> None:
        super().__init__(
            params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad
        )
