"""Learning-rate schedules with PyTorch's names and sequences.

A schedule changes ``optimizer.lr`` (and, for :class:`OneCycleLR`, the
momentum) each time its ``step()`` is called, once per epoch or per batch
after ``optimizer.step()``. Constructing one already sets the first learning
rate, as in PyTorch, so the loop is::

    for batch in batches:
        ...
        opt.step()
        sched.step()

``state_dict()`` is a flat dict of numbers, strings and bools (JSON-able);
``load_state_dict`` restores it into a schedule built with the same optimizer.
"""

from __future__ import annotations

import math
from typing import Any

from clearconv._validate import check_bool, check_float, check_int
from clearconv.optim.optimizer import Optimizer


def _check_optimizer(owner: str, optimizer: Any) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            f"{owner}: optimizer must be a clearconv.optim Optimizer, "
            f"got {type(optimizer).__name__}"
        )
    return optimizer


class LRScheduler:
    """Base class: tracks the step count and writes each new lr into the optimizer.

    Subclasses set their settings before calling ``super().__init__`` and
    implement ``get_lr()``, the lr for step ``last_epoch``.

    Parameters
    ----------
    optimizer : Optimizer
        The optimizer whose ``lr`` this schedule sets.

    Attributes
    ----------
    optimizer : Optimizer
    base_lr : float
        The optimizer's lr when the schedule was built (or the schedule's own
        starting lr for :class:`OneCycleLR`).
    last_epoch : int
        How many times ``step()`` has been called (0 after construction).

    Raises
    ------
    TypeError
        If ``optimizer`` is not a clearconv Optimizer.
    """

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = _check_optimizer(type(self).__name__, optimizer)
        self.base_lr = self._initial_lr()
        self.last_epoch = -1
        self._is_initial = True
        self.step()
        self._is_initial = False

    def _initial_lr(self) -> float:
        return float(self.optimizer.lr)

    def get_lr(self) -> float:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} does not implement get_lr")

    def step(self) -> None:
        """Advance one step and set the optimizer's lr for it."""
        self.last_epoch += 1
        self.optimizer.lr = self.get_lr()

    def get_last_lr(self) -> list[float]:
        """The lr set by the latest ``step()``, as a one-element list (like PyTorch)."""
        return [self.optimizer.lr]

    def state_dict(self) -> dict[str, Any]:
        """Settings and step count (everything but the optimizer)."""
        return {k: v for k, v in vars(self).items() if k not in ("optimizer", "_is_initial")}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned.

        Raises
        ------
        TypeError
            If ``state_dict`` is not a dict.
        KeyError
            If its keys differ from this schedule's.
        """
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{owner}: expected a dict, got {type(state_dict).__name__}")
        own = self.state_dict()
        if set(state_dict) != set(own):
            raise KeyError(f"{owner}: expected keys {sorted(own)}, got {sorted(state_dict)}")
        for k, v in state_dict.items():
            setattr(self, k, v.item() if hasattr(v, "item") else v)
        self.last_epoch = check_int(owner, "last_epoch", self.last_epoch, minimum=0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self.optimizer.lr!r})"


class StepLR(LRScheduler):
    r"""Multiply the lr by ``gamma`` every ``step_size`` steps.

    .. math:: \eta_t = \eta_0 \, \gamma^{\lfloor t / \text{step\_size} \rfloor}

    computed as PyTorch does, by multiplying the current lr at each boundary.

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Steps between decays (>= 1).
    gamma : float, default 0.1
        Multiplicative factor (>= 0).

    Raises
    ------
    TypeError, ValueError
        For a non-int or non-positive ``step_size`` or a negative ``gamma``.

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv.nn import Parameter
    >>> from clearconv.optim import SGD
    >>> opt = SGD([Parameter(np.zeros(1, dtype=np.float32))], lr=1.0)
    >>> sched = StepLR(opt, step_size=2, gamma=0.5)
    >>> lrs = []
    >>> for _ in range(5):
    ...     lrs.append(opt.lr)
    ...     sched.step()
    >>> lrs
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1) -> None:
        self.step_size = check_int("StepLR", "step_size", step_size, minimum=1)
        self.gamma = check_float("StepLR", "gamma", gamma, minimum=0.0)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        lr = self.optimizer.lr
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return lr
        return lr * self.gamma


class ExponentialLR(LRScheduler):
    r"""Multiply the lr by ``gamma`` every step: :math:`\eta_t = \eta_0 \gamma^t`.

    Parameters
    ----------
    optimizer : Optimizer
    gamma : float
        Multiplicative factor (>= 0).

    Raises
    ------
    TypeError, ValueError
        For a non-numeric or negative ``gamma``.

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv.nn import Parameter
    >>> from clearconv.optim import SGD
    >>> opt = SGD([Parameter(np.zeros(1, dtype=np.float32))], lr=1.0)
    >>> sched = ExponentialLR(opt, gamma=0.5)
    >>> sched.step(); sched.step(); sched.get_last_lr()
    [0.25]
    """

    def __init__(self, optimizer: Optimizer, gamma: float) -> None:
        self.gamma = check_float("ExponentialLR", "gamma", gamma, minimum=0.0)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        if self._is_initial:
            return self.optimizer.lr
        return self.optimizer.lr * self.gamma


class LinearLR(LRScheduler):
    r"""Scale the lr by a factor going linearly from ``start_factor`` to ``end_factor``.

    .. math::

        \eta_t = \eta_0 \left(s + (e - s) \frac{\min(t, T)}{T}\right)

    over ``total_iters`` :math:`T` steps, then constant; computed step by step
    as PyTorch does.

    Parameters
    ----------
    optimizer : Optimizer
    start_factor : float, default 1/3
        Factor at step 0, in (0, 1].
    end_factor : float, default 1.0
        Factor from step ``total_iters`` on, in [0, 1].
    total_iters : int, default 5
        Steps of the ramp (>= 1).

    Raises
    ------
    TypeError, ValueError
        For factors outside their ranges or a non-positive ``total_iters``.

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv.nn import Parameter
    >>> from clearconv.optim import SGD
    >>> opt = SGD([Parameter(np.zeros(1, dtype=np.float32))], lr=1.0)
    >>> sched = LinearLR(opt, start_factor=0.5, total_iters=2)
    >>> lrs = []
    >>> for _ in range(4):
    ...     lrs.append(opt.lr)
    ...     sched.step()
    >>> lrs
    [0.5, 0.75, 1.0, 1.0]
    """

    def __init__(
        self,
        optimizer: Optimizer,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
    ) -> None:
        o = "LinearLR"
        self.start_factor = check_float(o, "start_factor", start_factor, 0.0, 1.0, open_min=True)
        self.end_factor = check_float(o, "end_factor", end_factor, 0.0, 1.0)
        self.total_iters = check_int(o, "total_iters", total_iters, minimum=1)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        lr = self.optimizer.lr
        if self.last_epoch == 0:
            return lr * self.start_factor
        if self.last_epoch > self.total_iters:
            return lr
        d = self.end_factor - self.start_factor
        return lr * (1.0 + d / (self.total_iters * self.start_factor + (self.last_epoch - 1) * d))


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from the initial lr down to ``eta_min`` over ``T_max`` steps.

    .. math::

        \eta_t = \eta_{min} + \tfrac12 (\eta_0 - \eta_{min})
            \left(1 + \cos\frac{\pi t}{T_{max}}\right)

    in closed form (PyTorch computes the same values recursively). Past
    ``T_max`` the cosine keeps going, rising again, as PyTorch's does.

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Steps from the initial lr to ``eta_min`` (>= 1).
    eta_min : float, default 0
        The lowest lr (>= 0).

    Raises
    ------
    TypeError, ValueError
        For a non-positive ``T_max`` or a negative ``eta_min``.

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv.nn import Parameter
    >>> from clearconv.optim import SGD
    >>> opt = SGD([Parameter(np.zeros(1, dtype=np.float32))], lr=1.0)
    >>> sched = CosineAnnealingLR(opt, T_max=2)
    >>> lrs = []
    >>> for _ in range(3):
    ...     lrs.append(round(opt.lr, 6))
    ...     sched.step()
    >>> lrs
    [1.0, 0.5, 0.0]
    """

    def __init__(self, optimizer: Optimizer, T_max: int, eta_min: float = 0.0) -> None:
        self.T_max = check_int("CosineAnnealingLR", "T_max", T_max, minimum=1)
        self.eta_min = check_float("CosineAnnealingLR", "eta_min", eta_min, minimum=0.0)
        super().__init__(optimizer)

    def get_lr(self) -> float:
        if self.last_epoch == 0:
            return self.base_lr
        cos = math.cos(math.pi * self.last_epoch / self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + cos) / 2


class OneCycleLR(LRScheduler):
    r"""The 1cycle policy: lr warms up to ``max_lr``, then anneals far below its start.

    With :math:`\eta_{init} = \text{max\_lr} / \text{div\_factor}` and
    :math:`\eta_{min} = \eta_{init} / \text{final\_div\_factor}`, the lr goes
    from :math:`\eta_{init}` to ``max_lr`` over the first ``pct_start`` of
    ``total_steps``, then down to :math:`\eta_{min}` (with ``three_phase``:
    back to :math:`\eta_{init}` symmetrically, then down to :math:`\eta_{min}`).
    Each phase interpolates with

    .. math:: \text{cos: } e + \tfrac12 (s - e)(1 + \cos \pi p) \qquad
              \text{linear: } s + (e - s) p

    for the fraction :math:`p` of the phase done. With ``cycle_momentum``, the
    momentum (SGD's ``momentum``, Adam's ``betas[0]``) moves the opposite way
    between ``max_momentum`` and ``base_momentum``. The optimizer's own lr is
    ignored. ``step()`` may be called ``total_steps`` times after construction;
    one more raises.

    Parameters
    ----------
    optimizer : Optimizer
    max_lr : float
        Peak learning rate (>= 0).
    total_steps : int
        Length of the cycle in steps (>= 1).
    pct_start : float, default 0.3
        Fraction of the cycle spent warming up, in [0, 1].
    anneal_strategy : {'cos', 'linear'}, default 'cos'
    div_factor : float, default 25.0
        ``initial_lr = max_lr / div_factor`` (> 0).
    final_div_factor : float, default 1e4
        ``min_lr = initial_lr / final_div_factor`` (> 0).
    three_phase : bool, default False
        Warm up, come back down to ``initial_lr``, then anneal to ``min_lr``.
    cycle_momentum : bool, default True
        Cycle the momentum inversely to the lr; the optimizer must have one.
    base_momentum : float, default 0.85
        Momentum at the lr's peak (>= 0).
    max_momentum : float, default 0.95
        Momentum at the start and end (>= 0).

    Attributes
    ----------
    initial_lr, max_lr, min_lr : float
        The lr at the start, the peak and the end.

    Raises
    ------
    TypeError, ValueError
        For invalid settings, ``cycle_momentum`` with an optimizer that has no
        momentum, or a step past ``total_steps``.

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv.nn import Parameter
    >>> from clearconv.optim import SGD
    >>> opt = SGD([Parameter(np.zeros(1, dtype=np.float32))], lr=0.1, momentum=0.9)
    >>> sched = OneCycleLR(opt, max_lr=1.0, total_steps=10, anneal_strategy="linear")
    >>> round(opt.lr, 6), opt.momentum
    (0.04, 0.95)
    >>> sched.step(); sched.step()
    >>> round(opt.lr, 6), round(opt.momentum, 6)
    (1.0, 0.85)
    """

    def __init__(
        self,
        optimizer: Optimizer,
        max_lr: float,
        total_steps: int,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        cycle_momentum: bool = True,
        base_momentum: float = 0.85,
        max_momentum: float = 0.95,
    ) -> None:
        o = "OneCycleLR"
        # Checked before the momentum settings below read it (the base checks again).
        _check_optimizer(o, optimizer)
        self.max_lr = check_float(o, "max_lr", max_lr, minimum=0.0)
        self.total_steps = check_int(o, "total_steps", total_steps, minimum=1)
        pct_start = check_float(o, "pct_start", pct_start, 0.0, 1.0)
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(
                f"{o}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}"
            )
        self.anneal_strategy = anneal_strategy
        div_factor = check_float(o, "div_factor", div_factor, minimum=0.0, open_min=True)
        final_div_factor = check_float(
            o, "final_div_factor", final_div_factor, minimum=0.0, open_min=True
        )
        self.three_phase = check_bool(o, "three_phase", three_phase)
        self.cycle_momentum = check_bool(o, "cycle_momentum", cycle_momentum)
        self.initial_lr = self.max_lr / div_factor
        self.min_lr = self.initial_lr / final_div_factor
        # Phase ends (inclusive step index) as PyTorch places them.
        if self.three_phase:
            self.phase_ends = [
                float(pct_start * self.total_steps) - 1,
                float(2 * pct_start * self.total_steps) - 2,
                float(self.total_steps - 1),
            ]
        else:
            self.phase_ends = [float(pct_start * self.total_steps) - 1, float(self.total_steps - 1)]

        self.base_momentum = check_float(o, "base_momentum", base_momentum, minimum=0.0)
        self.max_momentum = check_float(o, "max_momentum", max_momentum, minimum=0.0)
        if self.cycle_momentum:
            if hasattr(optimizer, "betas"):
                self.use_beta1 = True
            elif hasattr(optimizer, "momentum"):
                self.use_beta1 = False
            else:
                raise ValueError(
                    f"{o}: cycle_momentum=True needs an optimizer with momentum or betas, "
                    f"got {type(optimizer).__name__}; pass cycle_momentum=False"
                )
            self._set_momentum(optimizer, self.max_momentum)
        else:
            self.use_beta1 = False
        super().__init__(optimizer)

    def _initial_lr(self) -> float:
        return self.initial_lr

    @staticmethod
    def _set_momentum_on(optimizer: Optimizer, use_beta1: bool, m: float) -> None:
        if use_beta1:
            optimizer.betas = (m, *optimizer.betas[1:])  # type: ignore[attr-defined]
        else:
            optimizer.momentum = m  # type: ignore[attr-defined]

    def _set_momentum(self, optimizer: Optimizer, m: float) -> None:
        self._set_momentum_on(optimizer, self.use_beta1, m)

    def _anneal(self, start: float, end: float, pct: float) -> float:
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start  # "linear": __init__ allows only the two

    def step(self) -> None:
        """Advance one step and set the optimizer's lr (and momentum) for it."""
        if self.last_epoch + 1 > self.total_steps:
            raise ValueError(
                f"OneCycleLR: tried to step {self.last_epoch + 1} times, "
                f"but total_steps is {self.total_steps}"
            )
        super().step()

    def get_lr(self) -> float:
        lrs = [self.initial_lr, self.max_lr, self.min_lr]
        moms = [self.max_momentum, self.base_momentum, self.max_momentum]
        if self.three_phase:
            lrs = [self.initial_lr, self.max_lr, self.initial_lr, self.min_lr]
            moms = [self.max_momentum, self.base_momentum, self.max_momentum, self.max_momentum]
        t = self.last_epoch
        last = len(self.phase_ends) - 1
        i = next(j for j, end in enumerate(self.phase_ends) if t <= end or j == last)
        start, end = (self.phase_ends[i - 1] if i else 0.0), self.phase_ends[i]
        # A phase of zero length (e.g. pct_start * total_steps == 1) is
        # already complete; PyTorch divides by zero there.
        pct = (t - start) / (end - start) if end != start else 1.0
        if self.cycle_momentum:
            self._set_momentum(self.optimizer, self._anneal(moms[i], moms[i + 1], pct))
        return self._anneal(lrs[i], lrs[i + 1], pct)
