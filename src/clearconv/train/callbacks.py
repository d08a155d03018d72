"""The parts of a training run, each doing one thing, and the state they share.

``fit`` (in :mod:`clearconv.train.loop`) is a short loop that calls every
part's hooks in order, as Keras calls its callbacks::

    on_train_begin                  once (a checkpoint restores the run here)
      on_epoch_begin                each epoch
        on_batch_begin              each batch: may narrow state.idx, or set
                                    state.shard (cut after augmenting the batch)
        on_loss                     after the forward pass, before backward
        on_after_backward           gradients are in p.grad (average them here),
                                    the batch's sums in state.totals
        on_batch_end                after the optimizer's (and schedule's) step
      on_epoch_end                  state.record is this epoch's record
    on_train_end                    once, when the run ends normally
    on_interrupt                    on Ctrl-C, before KeyboardInterrupt is raised
    close                           always, last (restore handlers, close bars)

A part reads and writes the :class:`TrainState`; none calls another.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from clearconv._validate import check_float, check_int
from clearconv.data.augment import Augment
from clearconv.data.segment import PairedAugment
from clearconv.model import Model
from clearconv.nn.dropout import Dropout
from clearconv.nn.loss import CrossEntropyLoss
from clearconv.optim import LRScheduler, Optimizer
from clearconv.train.evaluate import evaluate
from clearconv.train.history import History

__all__ = [
    "Callback",
    "EarlyStopping",
    "EpochEndHook",
    "HistoryWriter",
    "Interrupt",
    "NanGuard",
    "ProgressBar",
    "TrainState",
    "TrainingDiverged",
    "Validation",
]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


def new_running() -> dict[str, Any]:
    """The sums over the epoch so far (saved in checkpoints, so a resume continues them)."""
    return {"loss": 0.0, "correct": 0, "count": 0, "seconds": 0.0}


@dataclass(eq=False)
class TrainState:
    """Everything a run knows, shared by the loop and its parts.

    ``epoch`` is 0-based; ``batch`` is the batch in progress (0-based), and
    ``first_batch`` where the epoch starts (not 0 after a mid-epoch resume).
    ``order`` is the epoch's sample order, ``None`` once the epoch is over.
    ``running`` holds the sums of the epoch so far; ``record`` the finished
    epoch's record (see :class:`History`). ``idx``, ``logits`` and ``loss``
    are the batch in progress; ``totals`` its loss sum, correct count and
    sample count, added to ``running`` after the step (a distributed part
    replaces them by the sums over every process). ``shard``, when a part sets
    it, is the slice of the batch this process computes: the loop cuts the
    batch (and ``idx``) to it after augmenting the whole batch, so the
    augmentation draws are those of one process. A part sets ``stop`` to end
    the run after the epoch, and ``interrupted`` to end it after the batch;
    Ctrl-C sets ``interrupt_requested`` (and ``interrupted``, unless several
    processes must first agree on the batch to stop at).
    """

    model: Model
    optimizer: Optimizer
    scheduler: LRScheduler | None
    per_batch: bool  # the scheduler steps after every batch (else after every epoch)
    loss_fn: CrossEntropyLoss
    images: np.ndarray
    labels: np.ndarray
    epochs: int
    batch_size: int
    steps: int
    augment: Augment | PairedAugment | None
    shuffle_rng: np.random.Generator
    aug_rng: np.random.Generator
    dropouts: list[Dropout]
    settings: dict[str, Any]
    history: History = field(default_factory=History)
    epoch: int = 0
    batch: int = 0
    first_batch: int = 0
    order: np.ndarray | None = None
    running: dict[str, Any] = field(default_factory=new_running)
    record: dict[str, Any] = field(default_factory=dict)
    idx: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    logits: Any = None
    loss: float = math.nan
    totals: list[float] = field(default_factory=list)
    shard: slice | None = None
    stop: bool = False
    interrupted: bool = False
    interrupt_requested: bool = False
    t0: float = 0.0  # when the current stretch of the epoch began (perf_counter)

    @property
    def n(self) -> int:
        return len(self.labels)

    def position(self) -> tuple[int, int, np.ndarray | None]:
        """(epoch, batch, order) where a resumed run starts: the next batch to train."""
        if self.order is None:
            return self.epoch + 1, 0, None
        return self.epoch, self.batch + 1, self.order


class Callback:
    """A part of the training loop: override the hooks it needs (all do nothing here)."""

    def on_train_begin(self, s: TrainState) -> None: ...
    def on_epoch_begin(self, s: TrainState) -> None: ...
    def on_batch_begin(self, s: TrainState) -> None: ...
    def on_loss(self, s: TrainState) -> None: ...
    def on_after_backward(self, s: TrainState) -> None: ...
    def on_batch_end(self, s: TrainState) -> None: ...
    def on_epoch_end(self, s: TrainState) -> None: ...
    def on_train_end(self, s: TrainState) -> None: ...
    def on_interrupt(self, s: TrainState) -> None: ...
    def close(self, s: TrainState) -> None: ...


# -- the parts --------------------------------------------------------------------
class NanGuard(Callback):
    """Stops with :class:`TrainingDiverged` when a batch's loss is NaN or infinite,
    before the bad gradients reach the weights."""

    def __init__(self, checkpoint: Path | None = None) -> None:
        self.checkpoint = checkpoint

    def on_loss(self, s: TrainState) -> None:
        if math.isfinite(s.loss):
            return
        where = f"epoch {s.epoch + 1}, batch {s.batch + 1}/{s.steps}"
        kept = f"; the last good checkpoint {self.checkpoint} is kept" if self.checkpoint else ""
        raise TrainingDiverged(
            f"the loss became {s.loss} at {where} (lr {s.optimizer.lr:.3g}); lower the "
            f"learning rate{kept}"
        )


class Validation(Callback):
    """Fills the epoch record's ``val_loss`` and ``val_acc``, by ``evaluate``
    (:func:`clearconv.train.evaluate`, or ``Distributed.evaluate``: sharded)."""

    def __init__(
        self, images: np.ndarray, labels: np.ndarray, batch_size: int, evaluate: Any = evaluate
    ) -> None:
        self.images, self.labels, self.batch_size = images, labels, batch_size
        self.evaluate = evaluate

    def on_epoch_end(self, s: TrainState) -> None:
        if len(self.labels):
            r = self.evaluate(s.model, self.images, self.labels, batch_size=self.batch_size)
            s.record["val_loss"], s.record["val_acc"] = r["loss"], r["accuracy"]


class EarlyStopping(Callback):
    """Stops when the monitored value has not improved for ``patience`` epochs,
    keeping the best epoch's weights (restored at the end of the run).

    Parameters
    ----------
    spec : int or dict
        Patience, or ``{"patience", "monitor": "val_loss"|"val_acc", "min_delta"}``.
    """

    def __init__(self, spec: Any) -> None:
        if isinstance(spec, int) and not isinstance(spec, bool):
            spec = {"patience": spec}
        if not isinstance(spec, dict):
            raise TypeError(
                f"fit: early_stopping must be None, a patience (int) or a dict, got {spec!r}"
            )
        unknown = set(spec) - {"patience", "monitor", "min_delta"}
        if unknown:
            raise ValueError(f"fit: early_stopping has no setting {sorted(unknown)}")
        self.patience = check_int("fit", "early_stopping patience", spec.get("patience", 5), 1)
        self.monitor = spec.get("monitor", "val_loss")
        if self.monitor not in ("val_loss", "val_acc"):
            raise ValueError(
                f"fit: early_stopping monitor must be 'val_loss' or 'val_acc', got {self.monitor!r}"
            )
        self.min_delta = check_float("fit", "min_delta", spec.get("min_delta", 0.0), 0.0)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad = 0
        self.best_state: dict[str, np.ndarray] | None = None

    def on_epoch_end(self, s: TrainState) -> None:
        v = s.record[self.monitor]
        sign = 1.0 if self.monitor == "val_loss" else -1.0
        if self.best is None or sign * (self.best - v) > self.min_delta:
            self.best, self.best_epoch, self.bad = v, s.record["epoch"], 0
            self.best_state = {k: np.array(v) for k, v in s.model.state_dict().items()}
        else:
            self.bad += 1
            s.stop = self.bad >= self.patience
        s.history.best_epoch = self.best_epoch
        s.history.stopped_early = s.stop
        if s.stop and self.best_state is not None:
            s.model.load_state_dict(self.best_state)

    def on_train_end(self, s: TrainState) -> None:
        if not s.stop and self.best_state is not None:
            s.model.load_state_dict(self.best_state)

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad}


class HistoryWriter(Callback):
    """Rewrites the history file (``.csv`` or ``.json``) after every epoch."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = path

    def on_epoch_end(self, s: TrainState) -> None:
        s.history.save(self.path)


class EpochEndHook(Callback):
    """Calls ``fn(record)`` with a copy of each epoch's record."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def on_epoch_end(self, s: TrainState) -> None:
        self.fn(dict(s.record))


class Interrupt(Callback):
    """Turns Ctrl-C into ``state.interrupted``, which the loop checks after each
    batch; a second Ctrl-C stops at once. Main thread only (signals go there).

    ``deferred=True`` (several processes): Ctrl-C sets only
    ``state.interrupt_requested``; the distributed part sets ``interrupted``
    once every process has agreed on the batch to stop at.
    """

    def __init__(self, deferred: bool = False) -> None:
        self.deferred = deferred
        self._old: Any = None
        self._state: TrainState | None = None

    def on_train_begin(self, s: TrainState) -> None:
        self._state = s
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        s = self._state
        if s is None or s.interrupted or s.interrupt_requested:
            raise KeyboardInterrupt
        s.interrupt_requested = True
        s.interrupted = not self.deferred

    def close(self, s: TrainState) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None


class ProgressBar(Callback):
    """A tqdm bar on a terminal, redrawn at most every ``mininterval`` seconds:
    ``epoch 2/5:  64%|######4   | 640/1.00k [00:01<00:00, 1.23kimg/s, loss 0.4321  acc 87.5%]``.

    Where ``stream`` is not a terminal (a log file, a pipe), or tqdm (the
    ``cli`` extra) is not installed, it writes one plain line per epoch
    instead (``lines=False``: nothing). A terminal that reports a width of 0
    gets 80 columns.
    """

    def __init__(
        self, stream: TextIO | None = None, mininterval: float = 0.25, lines: bool = True
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.mininterval = mininterval
        self.lines = lines
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar: Any = None

    def _width(self) -> int:
        """The terminal's columns (the stream's own, else what Python finds); 0 -> 80."""
        try:
            cols = os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            cols = shutil.get_terminal_size().columns
        return cols or 80

    def on_epoch_begin(self, s: TrainState) -> None:
        self._close()
        try:
            from tqdm import tqdm  # optional: the cli extra
        except ImportError:
            return
        self._bar = tqdm(
            total=s.n,
            initial=s.running["count"],  # a resumed epoch starts where it stopped
            desc=f"epoch {s.epoch + 1}/{s.epochs}",
            unit="img",
            unit_scale=True,
            file=self.stream,
            ncols=self._width(),
            mininterval=self.mininterval,
            miniters=1,  # look at the clock after every batch: redraws follow mininterval alone
            leave=False,
            disable=not self.tty,
        )

    def on_batch_end(self, s: TrainState) -> None:
        r = s.running
        if self._bar is None or not r["count"]:
            return
        # the bar's own rate is the only one: the postfix holds no second
        self._bar.set_postfix_str(
            f"loss {r['loss'] / r['count']:.4f}  acc {r['correct'] / r['count']:.1%}",
            refresh=False,
        )
        self._bar.update(r["count"] - self._bar.n)

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_epoch_end(self, s: TrainState) -> None:
        drawn = self._bar is not None and not self._bar.disable
        self._close()
        if drawn or not self.lines:
            return
        r = s.record
        line = f"epoch {r['epoch']}/{s.epochs}  loss {r['train_loss']:.4f}"
        line += f"  acc {r['train_acc']:.1%}"
        if r.get("val_loss") is not None:
            line += f"  val_loss {r['val_loss']:.4f}  val_acc {r['val_acc']:.1%}"
        lr = f"{r['lr']:.3g}"
        if r["lr_min"] != r["lr_max"]:
            lr = f"{r['lr_min']:.3g}..{r['lr_max']:.3g}"
        print(f"{line}  lr {lr}  {r['seconds']:.1f} s", file=self.stream, flush=True)

    def on_interrupt(self, s: TrainState) -> None:
        self._close()

    def close(self, s: TrainState) -> None:
        self._close()
