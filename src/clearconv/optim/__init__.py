"""Optimizers and learning-rate schedules with ``torch.optim``'s names and update rules.

>>> import numpy as np
>>> from clearconv import nn, optim
>>> p = nn.Parameter(np.ones(3, dtype=np.float32))
>>> opt = optim.SGD([p], lr=0.5)
>>> p.grad = np.ones(3, dtype=np.float32)
>>> opt.step(); opt.zero_grad()
>>> p.data, p.grad
(array([0.5, 0.5, 0.5], dtype=float32), None)
"""

from clearconv.optim import lr_scheduler
from clearconv.optim.adam import Adam, AdamW
from clearconv.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LinearLR,
    LRScheduler,
    OneCycleLR,
    StepLR,
)
from clearconv.optim.optimizer import Optimizer
from clearconv.optim.sgd import SGD

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "CosineAnnealingLR",
    "ExponentialLR",
    "LRScheduler",
    "LinearLR",
    "OneCycleLR",
    "Optimizer",
    "StepLR",
    "lr_scheduler",
]
