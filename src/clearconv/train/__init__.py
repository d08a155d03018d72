"""Training and evaluation: :func:`fit` (mini-batch training as a short loop over
parts, with checkpoints that resume bit-exactly) and :func:`evaluate` (accuracy,
loss, confusion, precision/recall).

Modules: :mod:`~clearconv.train.loop` (``fit`` and the loop),
:mod:`~clearconv.train.callbacks` (the parts and the state they share),
:mod:`~clearconv.train.checkpoint`, :mod:`~clearconv.train.history`,
:mod:`~clearconv.train.evaluate` and :mod:`~clearconv.train.optimizers`
(optimizers and schedules by name, as the command line gives them).
"""

from clearconv.train.callbacks import Callback, ProgressBar, TrainingDiverged, TrainState
from clearconv.train.checkpoint import Checkpoint
from clearconv.train.evaluate import evaluate
from clearconv.train.history import History
from clearconv.train.loop import fit
from clearconv.train.optimizers import (
    OPTIMIZERS,
    SCHEDULES,
    Schedule,
    make_optimizer,
    make_schedule,
)

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Callback",
    "Checkpoint",
    "History",
    "ProgressBar",
    "Schedule",
    "TrainState",
    "TrainingDiverged",
    "evaluate",
    "fit",
    "make_optimizer",
    "make_schedule",
]
