"""Optimizers and learning-rate schedules by name: what ``--optimizer`` and
``--schedule`` on the command line (and ``fit``'s string shorthands) stand for.

``fit`` itself takes objects: an :class:`~clearconv.optim.Optimizer` and an
:class:`~clearconv.optim.LRScheduler` or a factory for one. A schedule over
the whole run needs the number of steps per epoch, which ``fit`` knows only
once it has split off the validation data, so a named schedule is a
:class:`Schedule`: a factory ``(optimizer, steps_per_epoch) -> LRScheduler``
that also says whether it steps per batch or per epoch.

>>> import numpy as np
>>> from clearconv.nn import Parameter
>>> opt = make_optimizer("sgd", [Parameter(np.zeros(1, np.float32))], lr=0.1)
>>> opt
SGD(lr=0.1, momentum=0.9)
>>> sched = make_schedule("step", epochs=6)
>>> sched.interval, sched(opt, steps_per_epoch=10).step_size
('epoch', 2)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from clearconv.nn.parameter import Parameter
from clearconv.optim import SGD, Adam, AdamW, Optimizer
from clearconv.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, OneCycleLR, StepLR

__all__ = ["OPTIMIZERS", "SCHEDULES", "Schedule", "make_optimizer", "make_schedule"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "cosine", "onecycle")
#: The name a checkpoint records for each optimizer class.
OPTIMIZER_NAMES = {Adam: "adam", AdamW: "adamw", SGD: "sgd"}


def make_optimizer(
    name: str, params: Iterable[Parameter], lr: float, weight_decay: float = 0.0
) -> Optimizer:
    """The optimizer called ``name`` (SGD with momentum 0.9) over ``params``.

    Raises
    ------
    ValueError
        For a name not in :data:`OPTIMIZERS`.
    """
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


@dataclass(frozen=True)
class Schedule:
    """A named schedule, built by ``fit`` once it knows the steps per epoch.

    Attributes
    ----------
    name : str
        One of :data:`SCHEDULES` but 'none' (recorded in checkpoints).
    epochs : int
        The length of the run the schedule spans.
    interval : {'epoch', 'batch'}
        When ``fit`` calls the schedule's ``step()``.
    """

    name: str
    epochs: int
    interval: str

    def __call__(self, optimizer: Optimizer, steps_per_epoch: int) -> LRScheduler:
        # 'step' divides the lr by 10 every ceil(epochs / 3) epochs; 'cosine'
        # and 'onecycle' span every batch of the run (onecycle peaks at the lr).
        total = self.epochs * steps_per_epoch
        if self.name == "step":
            return StepLR(optimizer, step_size=max(1, math.ceil(self.epochs / 3)), gamma=0.1)
        if self.name == "cosine":
            return CosineAnnealingLR(optimizer, T_max=total)
        if self.name == "onecycle":
            return OneCycleLR(optimizer, max_lr=optimizer.lr, total_steps=total)
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.name!r}")


def make_schedule(name: str, epochs: int) -> Schedule | None:
    """The schedule called ``name`` over ``epochs`` epochs (``None`` for 'none').

    Raises
    ------
    ValueError
        For a name not in :data:`SCHEDULES`.
    """
    if name == "none":
        return None
    if name not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")
    return Schedule(name, epochs, "epoch" if name == "step" else "batch")
