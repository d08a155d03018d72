"""``fit``: mini-batch training as a short loop over parts, with checkpoints
that resume bit-exactly.

One step on a batch of indices ``idx`` (never a loop over samples)::

    x = preprocess(augment(images[idx]))        # float32 (B, C, H, W)
    loss = CrossEntropy(model(x, training=True), labels[idx])
    model.backward(loss.backward()); optimizer.step(); scheduler.step()

Everything else is a part (:mod:`clearconv.train.callbacks`): validation,
the progress bar, early stopping, the checkpoint, the history file, the
NaN guard, Ctrl-C. :func:`run` is the loop; :func:`fit` checks its
arguments, builds the state and the parts, and calls it.

Reproducibility: one ``seed`` drives everything through
``numpy.random.SeedSequence(seed)``: the validation split, the shuffle and the
augmentation each get their own generator. A checkpoint holds the model,
optimizer and schedule state, every generator's state (Dropout layers'
included), the position (epoch and batch), the running sums and the history,
so ``resume=True`` continues to exactly the weights an uninterrupted run with
the same seed reaches.

Parameters of fit
-----------------
model : Model
    Trained in place (its ``preprocess`` maps raw images to the net's input).
train_data, val_data : Dataset or (images, labels)
    Raw images (uint8 or float in [0, 1]) of shape ``(N, *input_shape)``.
epochs, batch_size : int
optimizer : Optimizer or {'adam', 'adamw', 'sgd'}
    An optimizer over ``model.parameters()``, or a name for
    :func:`~clearconv.train.make_optimizer` (SGD with momentum 0.9).
lr, weight_decay : float, optional
    Only with an optimizer name (default 1e-3 and 0); ``lr`` is the peak
    for 'onecycle'.
scheduler : LRScheduler or callable, optional
    A schedule over ``optimizer``, or a factory
    ``(optimizer, steps_per_epoch) -> LRScheduler`` such as a
    :class:`~clearconv.train.Schedule`. It steps after every epoch, or
    after every batch where ``scheduler_interval`` (or the factory's
    ``interval``) is 'batch'.
schedule : {'none', 'step', 'cosine', 'onecycle'}
    The shorthand for ``scheduler=make_schedule(schedule, epochs)``:
    'step' divides the lr by 10 every ``ceil(epochs / 3)`` epochs; 'cosine'
    and 'onecycle' step per batch over the whole run.
scheduler_interval : {'epoch', 'batch'}, optional
label_smoothing : float
augment : Augment, dict or None
    Batch augmentation of the training images (dict: Augment's arguments).
val_fraction : float
    When ``val_data`` is None, hold out this share of ``train_data``.
seed : int
    Fixes the split, the shuffle and the augmentation.
checkpoint : path, optional
    ``.npz`` written atomically after every epoch (and on Ctrl-C; only
    then when ``checkpoint_every_epoch`` is False).
resume : bool
    Continue from ``checkpoint`` (which must exist, written with the same
    settings) to the same result as an uninterrupted run.
early_stopping : int or dict, optional
    Patience, or ``{"patience", "monitor": "val_loss"|"val_acc",
    "min_delta"}``; stops when the monitored value has not improved for
    ``patience`` epochs; the best epoch's weights are restored (also when
    the run ends without stopping early). Needs validation data.
progress : bool or ProgressBar
    A tqdm bar on stderr (images/s, loss, ETA) when it is a terminal and
    tqdm (the ``cli`` extra) is installed, else one plain line per epoch.
on_epoch_end : callable, optional
    Called with each epoch's record (a dict) after the checkpoint is written.
history_path : path, optional
    ``.csv`` or ``.json``, rewritten after every epoch.
callbacks : sequence of Callback
    More parts (see :mod:`clearconv.train.callbacks`); their hooks run
    before the built-in ones (validation, early stopping, checkpoint).
distributed : Distributed, optional
    Data-parallel training over MPI ranks
    (:class:`clearconv.distributed.Distributed`, ``pip install
    "clearconv[mpi]"``): every rank calls ``fit`` with the same arguments
    (e.g. under ``mpiexec -n N``); each global batch of ``batch_size`` is
    cut into one shard per rank after augmentation, and one allreduce
    averages the gradients (with the batch's loss, accuracy and count and
    the Ctrl-C flag), so N ranks follow one process's run (exactly, to
    float32 rounding, with ``sync_batchnorm`` and no Dropout). Validation is
    sharded too. Rank 0 alone shows progress and writes the checkpoint and
    history; every rank reads the checkpoint to resume (any number of ranks
    resumes any run); ``on_epoch_end`` is called on every rank with the
    same record. These are the hooks of
    :class:`clearconv.distributed.DistributedPart`, which runs first of the
    parts; with ``None`` none of it is imported or run (the loop's one trace
    is a test of ``state.shard is None`` per batch).

What fit raises
---------------
TrainingDiverged
    When the loss becomes NaN or infinite (the last checkpoint is kept).
KeyboardInterrupt
    On Ctrl-C, after a checkpoint at the end of the current batch.
TypeError, ValueError
    For bad arguments; ``ModelFileError`` for a checkpoint that does not fit.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clearconv._validate import check_float, check_int
from clearconv.data.augment import Augment
from clearconv.data.loader import train_val_split
from clearconv.data.segment import PairedAugment
from clearconv.data.transforms import to_float
from clearconv.engine.plan import no_input_grad
from clearconv.model import Model
from clearconv.nn.dropout import Dropout
from clearconv.nn.loss import CrossEntropyLoss
from clearconv.optim import LRScheduler, Optimizer
from clearconv.train.callbacks import (
    Callback,
    EarlyStopping,
    EpochEndHook,
    HistoryWriter,
    Interrupt,
    NanGuard,
    ProgressBar,
    TrainState,
    Validation,
    new_running,
)
from clearconv.train.checkpoint import Checkpoint
from clearconv.train.evaluate import as_data, check_labels, evaluate
from clearconv.train.history import History
from clearconv.train.optimizers import (
    OPTIMIZER_NAMES,
    OPTIMIZERS,
    SCHEDULES,
    make_optimizer,
    make_schedule,
)

if TYPE_CHECKING:
    from clearconv.distributed import Distributed

__all__ = ["fit", "run"]


def fit(
    model: Model,
    train_data: Any,
    val_data: Any = None,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    optimizer: Optimizer | str = "adam",
    lr: float | None = None,
    scheduler: LRScheduler | Callable[[Optimizer, int], LRScheduler] | None = None,
    schedule: str = "none",
    scheduler_interval: str | None = None,
    weight_decay: float | None = None,
    label_smoothing: float = 0.0,
    augment: Any = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    checkpoint_every_epoch: bool = True,
    early_stopping: Any = None,
    progress: bool | ProgressBar = True,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    history_path: str | os.PathLike | None = None,
    callbacks: Sequence[Callback] = (),
    distributed: Distributed | None = None,
) -> History:
    """Train ``model`` on ``train_data`` with mini-batches; returns the :class:`History`.

    Every parameter, and what fit raises, is described in the docstring of
    this module (:mod:`clearconv.train.loop`).

    Example
    -------
    >>> from clearconv import data, zoo
    >>> net, shape = zoo.build("xo", rng=np.random.default_rng(0))
    >>> m = Model(net, shape, ["X", "O"])
    >>> h = fit(m, data.make_xo(64, np.random.default_rng(1)), epochs=2, lr=0.01, progress=False)
    >>> len(h), sorted(h.last)[:3]
    (2, ['epoch', 'lr', 'lr_max'])
    """
    s, val = _prepare(model, train_data, val_data, epochs, batch_size, optimizer, lr, scheduler,
                      schedule, scheduler_interval, weight_decay, label_smoothing, augment,
                      val_fraction, seed)  # fmt: skip
    if resume and checkpoint is None:
        raise ValueError("fit: resume=True needs a checkpoint path")
    if history_path is not None and Path(history_path).suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"fit: history_path must end in .csv or .json, got {history_path!r}")
    early = None if early_stopping is None else EarlyStopping(early_stopping)
    if early is not None and val is None:
        raise ValueError("fit: early_stopping needs validation data (val_data or val_fraction)")
    bar = (ProgressBar() if progress else None) if isinstance(progress, bool) else progress
    # The order is the order of the hooks: the caller's parts first, so that
    # (say) averaging metrics across processes happens before they are used.
    kept = _path(checkpoint) if checkpoint_every_epoch else None  # what a NaN leaves behind
    parts: list[Callback | None] = [Interrupt(deferred=distributed is not None)]
    root = True
    ev: Callable[..., dict[str, Any]] = evaluate
    if distributed is not None:  # several processes: rank 0 alone shows and writes
        from clearconv.distributed import DistributedPart

        parts.append(DistributedPart(distributed))
        root, ev = distributed.is_root, distributed.evaluate
        bar = bar if root else None
    parts += [*callbacks, NanGuard(kept)]
    parts += [None if val is None else Validation(*val, max(batch_size, 256), ev)]
    parts += [bar, early]
    if checkpoint is not None:
        parts += [Checkpoint(checkpoint, resume, checkpoint_every_epoch, early, write=root)]
    parts += [None if history_path is None or not root else HistoryWriter(history_path)]
    parts += [None if on_epoch_end is None else EpochEndHook(on_epoch_end)]
    return run(s, [p for p in parts if p is not None])


def run(s: TrainState, parts: Sequence[Callback]) -> History:
    """The training loop: epochs of batches, each hook of every part called in order.

    Returns ``s.history``. Raises ``KeyboardInterrupt`` after the parts'
    ``on_interrupt`` when a part set ``s.interrupted``.
    """

    def call(hook: str) -> None:
        for part in parts:
            getattr(part, hook)(s)

    try:
        call("on_train_begin")  # a checkpoint restores the position and the history here
        if s.history.stopped_early:  # resumed after early stopping: nothing left to do
            return s.history
        for epoch in range(s.epoch, s.epochs):
            s.epoch = epoch
            if s.order is None or s.first_batch == 0:
                s.order, s.first_batch = s.shuffle_rng.permutation(s.n), 0
                s.running = new_running()
            s.t0 = time.perf_counter()
            call("on_epoch_begin")
            for batch in range(s.first_batch, s.steps):
                s.batch = batch
                s.idx = s.order[s.batch * s.batch_size : (s.batch + 1) * s.batch_size]
                call("on_batch_begin")  # may narrow s.idx or set s.shard
                _step(s, call)
                call("on_batch_end")
                if s.interrupted and s.batch + 1 < s.steps:  # Ctrl-C: keep the position
                    s.running["seconds"] += time.perf_counter() - s.t0
                    call("on_interrupt")
                    raise KeyboardInterrupt
            s.first_batch = 0
            if s.scheduler is not None and not s.per_batch:
                s.scheduler.step()
            s.running["seconds"] += time.perf_counter() - s.t0
            s.record = _record(s)
            s.history.records.append(s.record)  # parts fill in validation metrics
            s.order = None  # the epoch is over: a checkpoint now resumes at the next one
            call("on_epoch_end")
            if s.interrupted:  # Ctrl-C during the epoch's last batch: the epoch is saved
                call("on_interrupt")
                raise KeyboardInterrupt
            if s.stop:
                break
        call("on_train_end")
    finally:
        call("close")
    s.model.meta["training"] = {
        **s.settings,
        "epochs_run": len(s.history),
        "augment": None if s.augment is None else vars(s.augment),
        "final": s.history.last,
    }
    return s.history


def _step(s: TrainState, call: Callable[[str], None]) -> None:
    """One optimizer step on the batch ``s.idx``, and the epoch's running sums."""
    x = s.images[s.idx]
    # token indices (a text model's (L,) input) stay integers; images become float32
    x = x if len(s.model.input_shape) == 1 else to_float(x)
    if x.ndim == len(s.model.input_shape):  # (B, H, W) -> (B, 1, H, W)
        x = x[:, None]
    y = s.labels[s.idx]
    if isinstance(s.augment, PairedAugment):  # masks moved with their images
        x, y = s.augment(x, y, s.aug_rng)
    elif s.augment is not None:
        x = s.augment(x, s.aug_rng)
    if s.shard is not None:  # this process's part of the batch, augmented whole above
        x, s.idx, y = x[s.shard], s.idx[s.shard], y[s.shard]
    x = s.model.preprocess(x)
    s.optimizer.zero_grad()
    s.logits = s.model(x, training=True)
    s.loss = float(s.loss_fn(s.logits, y))
    call("on_loss")  # the NaN guard stops here, before the weights change
    _backward(s.model, s.loss_fn.backward())
    s.totals = [s.loss * len(s.idx), _correct(s.logits, y, s.loss_fn), len(s.idx)]
    call("on_after_backward")  # a distributed part sums the gradients and totals here
    lr = float(s.optimizer.lr)
    s.optimizer.step()
    if s.scheduler is not None and s.per_batch:
        s.scheduler.step()
    r = s.running
    r["loss"] += s.totals[0]
    r["correct"] += s.totals[1]
    r["count"] += s.totals[2]
    if "lr_first" not in r:  # the epoch's first batch: the rates it used start here
        r["lr_first"] = r["lr_min"] = r["lr_max"] = lr
    r["lr_min"], r["lr_max"] = min(r["lr_min"], lr), max(r["lr_max"], lr)


def _backward(model: Model, grad: np.ndarray) -> None:
    """Backpropagate the loss gradient; the input's gradient is not needed (the
    data is not learned), so the net may skip it."""
    with no_input_grad(model):
        model.backward(grad)


def _record(s: TrainState) -> dict[str, Any]:
    """The finished epoch's record (see :class:`History`); validation comes later."""
    r = s.running
    return {
        "epoch": s.epoch + 1,
        "train_loss": r["loss"] / r["count"],
        "train_acc": r["correct"] / r["count"],
        "val_loss": None,
        "val_acc": None,
        "lr": r["lr_first"],
        "lr_min": r["lr_min"],
        "lr_max": r["lr_max"],
        "seconds": r["seconds"],
    }


def _path(p: str | os.PathLike | None) -> Path | None:
    return None if p is None else Path(p)


def _correct(logits: Any, y: np.ndarray, loss_fn: Any) -> float:
    """Images right in the batch; with masks, the share of each image's labelled
    pixels right, summed (so accuracy stays a share of images)."""
    hits = logits.argmax(axis=1) == y
    if y.ndim == 1:
        return int(hits.sum())
    labelled = max(int((y != getattr(loss_fn, "ignore_index", -100)).sum()), 1)
    return float(hits.sum()) / labelled * len(y)


def _make_augment(augment: Any) -> Augment | PairedAugment | None:
    if augment is None or isinstance(augment, (Augment, PairedAugment)):
        return augment
    if isinstance(augment, dict):
        return Augment(**augment)
    raise TypeError(f"fit: augment must be None, an Augment or a dict, got {augment!r}")


def _make_optimizer(model: Model, optimizer: Any, lr: Any, weight_decay: Any) -> Optimizer:
    if isinstance(optimizer, Optimizer):
        if lr is not None or weight_decay is not None:
            raise ValueError(
                "fit: lr and weight_decay belong to the optimizer when one is given "
                f"({optimizer!r}); leave them out"
            )
        return optimizer
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"fit: optimizer must be one of {', '.join(OPTIMIZERS)} or an Optimizer, "
            f"got {optimizer!r}"
        )
    lr = check_float("fit", "lr", 1e-3 if lr is None else lr, minimum=0.0, open_min=True)
    wd = check_float("fit", "weight_decay", weight_decay or 0.0, minimum=0.0)
    return make_optimizer(optimizer, model.parameters(), lr, wd)


def _make_scheduler(
    opt: Optimizer, scheduler: Any, schedule: Any, interval: Any, epochs: int, steps: int
) -> tuple[LRScheduler | None, bool, str]:
    """The schedule, whether it steps per batch, and its name for the checkpoint."""
    if schedule not in SCHEDULES:
        raise ValueError(f"fit: schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if scheduler is not None and schedule != "none":
        raise ValueError("fit: give either scheduler or schedule, not both")
    if scheduler is None:
        scheduler = make_schedule(schedule, epochs)
    if scheduler is None:
        return None, False, "none"
    interval = interval or getattr(scheduler, "interval", "epoch")
    if interval not in ("epoch", "batch"):
        raise ValueError(f"fit: scheduler_interval must be 'epoch' or 'batch', got {interval!r}")
    name = getattr(scheduler, "name", type(scheduler).__name__)
    if not isinstance(scheduler, LRScheduler):
        if not callable(scheduler):
            raise TypeError(
                "fit: scheduler must be an LRScheduler or a factory "
                f"(optimizer, steps_per_epoch) -> LRScheduler, got {scheduler!r}"
            )
        scheduler = scheduler(opt, steps)
    if not isinstance(scheduler, LRScheduler) or scheduler.optimizer is not opt:
        raise ValueError("fit: the scheduler must be an LRScheduler over fit's optimizer")
    return scheduler, interval == "batch", name


def _prepare(
    model: Any, train_data: Any, val_data: Any, epochs: Any, batch_size: Any, optimizer: Any,
    lr: Any, scheduler: Any, schedule: Any, interval: Any, weight_decay: Any,
    label_smoothing: Any, augment: Any, val_fraction: Any, seed: Any,
) -> tuple[TrainState, tuple[np.ndarray, np.ndarray] | None]:  # fmt: skip
    """Check fit's arguments; the state of a new run and the validation data."""
    if not isinstance(model, Model):
        raise TypeError(
            f"fit expected a clearconv.Model (Model(net, input_shape, class_names)), "
            f"got {type(model).__name__}"
        )
    epochs = check_int("fit", "epochs", epochs, minimum=1)
    batch_size = check_int("fit", "batch_size", batch_size, minimum=1)
    label_smoothing = check_float("fit", "label_smoothing", label_smoothing, 0.0, 1.0)
    val_fraction = check_float("fit", "val_fraction", val_fraction, 0.0, 1.0, open_max=True)
    seed = check_int("fit", "seed", seed, minimum=0)
    opt = _make_optimizer(model, optimizer, lr, weight_decay)
    lr0 = float(opt.lr)  # before a schedule changes it: the run's settings name this one
    aug = _make_augment(augment)
    images, labels = as_data("fit", train_data)
    check_labels("fit", labels, model.num_classes)
    seeds = np.random.SeedSequence(seed).spawn(3)
    split_rng, shuffle_rng, aug_rng = (np.random.default_rng(s) for s in seeds)
    val = None
    if val_data is not None:
        val = as_data("fit", val_data)
        check_labels("fit", val[1], model.num_classes)
    elif val_fraction > 0:
        tr, va = train_val_split(len(labels), val_fraction, split_rng)
        images, labels, val = images[tr], labels[tr], (images[va], labels[va])
    n = len(labels)
    if n == 0:
        raise ValueError("fit: no training samples")
    # A last batch of one sample would break BatchNorm statistics: drop it.
    steps = n // batch_size if n % batch_size == 1 and n > 1 else math.ceil(n / batch_size)
    sched, per_batch, sched_name = _make_scheduler(
        opt, scheduler, schedule, interval, epochs, steps
    )
    settings = {
        "epochs": epochs, "batch_size": batch_size,
        "optimizer": OPTIMIZER_NAMES.get(type(opt), type(opt).__name__), "lr": lr0,
        "schedule": sched_name, "weight_decay": float(getattr(opt, "weight_decay", 0.0)),
        "label_smoothing": label_smoothing, "seed": seed, "n_train": n,
    }  # fmt: skip
    state = TrainState(
        model=model, optimizer=opt, scheduler=sched, per_batch=per_batch,
        loss_fn=CrossEntropyLoss(label_smoothing=label_smoothing), images=images,
        labels=labels, epochs=epochs, batch_size=batch_size, steps=steps, augment=aug,
        shuffle_rng=shuffle_rng, aug_rng=aug_rng, settings=settings,
        dropouts=[m for m in model.modules() if isinstance(m, Dropout)],
    )  # fmt: skip
    return state, val
