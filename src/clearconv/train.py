"""Training and evaluation: ``fit`` (mini-batch training with checkpoints that
resume bit-exactly) and ``evaluate`` (accuracy, loss, confusion, precision/recall).

One step of ``fit`` on a batch of indices ``idx`` (never a loop over samples)::

    x = preprocess(augment(images[idx]))        # float32 (B, C, H, W)
    loss = CrossEntropy(model(x, training=True), labels[idx])
    model.backward(loss.backward()); optimizer.step(); schedule.step()

Reproducibility: one ``seed`` drives everything through
``numpy.random.SeedSequence(seed)``: the validation split, the shuffle and the
augmentation each get their own generator. A checkpoint holds the model,
optimizer and schedule state, every generator's state (Dropout layers'
included), the position (epoch and batch), the running sums and the history,
so ``resume=True`` continues to exactly the weights an uninterrupted run with
the same seed reaches. Checkpoints are ``.npz`` files with a JSON header (no
pickle), written atomically after each epoch and on Ctrl-C.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clearconv._validate import check_float, check_int
from clearconv.data.augment import Augment
from clearconv.data.loader import Dataset, iterate_batches, train_val_split
from clearconv.data.segment import PairedAugment
from clearconv.data.transforms import to_float
from clearconv.io import ModelFileError, load_arrays, model_header, save_arrays
from clearconv.model import Model
from clearconv.nn.dropout import Dropout
from clearconv.nn.loss import CrossEntropyLoss
from clearconv.optim import SGD, Adam, AdamW
from clearconv.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR, StepLR

__all__ = ["OPTIMIZERS", "SCHEDULES", "History", "TrainingDiverged", "evaluate", "fit"]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "step", "cosine", "onecycle")
CHECKPOINT_FORMAT = "clearconv.checkpoint"
# Checkpoints written before the rename say ``convnet``; they resume the same.
CHECKPOINT_READ_FORMATS = (CHECKPOINT_FORMAT, "convnet.checkpoint")
CHECKPOINT_VERSION = 1


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and batch."""


# -- history ----------------------------------------------------------------------
@dataclass
class History:
    """Per-epoch records of a training run.

    Each record has ``epoch`` (1-based), ``train_loss``, ``train_acc``,
    ``val_loss``, ``val_acc`` (``None`` without validation data), ``lr`` (at
    the end of the epoch) and ``seconds``.

    Attributes
    ----------
    records : list of dict
    best_epoch : int or None
        The epoch whose weights early stopping restored.
    stopped_early : bool
    """

    records: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False

    COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list[Any]:
        """One column, e.g. ``history["val_acc"]``."""
        if key not in self.COLUMNS:
            raise KeyError(f"History has columns {', '.join(self.COLUMNS)}, not {key!r}")
        return [r.get(key) for r in self.records]

    @property
    def last(self) -> dict[str, Any]:
        return self.records[-1] if self.records else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "best_epoch": self.best_epoch,
            "stopped_early": self.stopped_early,
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the records as ``.csv`` (one row per epoch) or ``.json``, atomically.

        Raises
        ------
        ValueError
            For another suffix.
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".json"):
            raise ValueError(f"history file must end in .csv or .json, got {path.name!r}")
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            if suffix == ".json":
                json.dump(self.to_dict(), f, indent=1)
            else:
                writer = csv.DictWriter(f, fieldnames=list(self.COLUMNS))
                writer.writeheader()
                for r in self.records:
                    writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in self.COLUMNS})
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path


# -- evaluation -------------------------------------------------------------------
def _as_data(owner: str, data: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(data, Dataset):
        return data.images, data.labels
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        images, labels = np.asarray(data[0]), np.asarray(data[1])
        if len(images) != len(labels):
            raise ValueError(
                f"{owner}: images and labels differ in length ({len(images)} and {len(labels)})"
            )
        if labels.dtype.kind not in "iu":
            raise TypeError(f"{owner}: labels must be integers, got dtype {labels.dtype}")
        return images, labels.astype(np.int64, copy=False)
    raise TypeError(
        f"{owner}: expected a Dataset or an (images, labels) pair, got {type(data).__name__}"
    )


def _check_labels(owner: str, labels: np.ndarray, k: int) -> None:
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(
            f"{owner}: labels must be in [0, {k - 1}] for a model with {k} classes, "
            f"got values in [{labels.min()}, {labels.max()}]"
        )


def evaluate(
    model: Model, images: Any, labels: Any = None, batch_size: int = 256
) -> dict[str, Any]:
    """Accuracy, mean cross-entropy, confusion matrix and per-class precision/recall.

    Parameters
    ----------
    model : Model
    images : numpy.ndarray or Dataset
        Raw images ``(N, *input_shape)`` (uint8 or float in [0, 1]); or a Dataset
        (then ``labels`` is left out).
    labels : numpy.ndarray
        ``(N,)`` integers.
    batch_size : int

    Returns
    -------
    dict
        ``accuracy`` (fraction), ``loss``, ``n``, ``confusion`` (``(K, K)`` int64,
        rows true class, columns predicted), ``precision`` and ``recall``
        (``(K,)`` float64; 0 where a class is never predicted / absent),
        ``class_names``.

    Example
    -------
    >>> from clearconv import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=np.random.default_rng(0)))
    >>> m = Model(net, (1, 2, 2), ["a", "b"])
    >>> r = evaluate(m, np.zeros((3, 1, 2, 2), np.float32), np.array([0, 1, 1]))
    >>> r["confusion"].sum(), r["n"]
    (np.int64(3), 3)
    """
    if not isinstance(model, Model):
        raise TypeError(f"evaluate expected a clearconv.Model, got {type(model).__name__}")
    if labels is None:
        images, labels = _as_data("evaluate", images)
    else:
        images, labels = _as_data("evaluate", (images, labels))
    batch_size = check_int("evaluate", "batch_size", batch_size, minimum=1)
    k = model.num_classes
    _check_labels("evaluate", labels, k)
    if labels.ndim > 1:  # a mask per image: pixel accuracy and IoU
        from clearconv import segmentation

        return segmentation.evaluate(model, images, labels, batch_size)
    n = len(labels)
    ce = CrossEntropyLoss()
    loss_sum = 0.0
    preds = np.empty(n, dtype=np.int64)
    for idx in iterate_batches(n, batch_size, shuffle=False):
        logits = model(model.preprocess(images[idx]), training=False)
        loss_sum += float(ce(logits, labels[idx])) * len(idx)
        preds[idx] = logits.argmax(axis=1)
    confusion = np.bincount(labels * k + preds, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(k), where=actual > 0)
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "loss": loss_sum / n if n else float("nan"),
        "n": n,
        "confusion": confusion,
        "precision": precision,
        "recall": recall,
        "class_names": list(model.class_names),
    }


# -- building blocks of fit -----------------------------------------------------------
def _make_optimizer(name: str, model: Model, lr: float, weight_decay: float):
    params = model.parameters()
    if name == "adam":
        return Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"fit: optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")


def _make_schedule(name: str, opt, lr: float, epochs: int, steps: int):
    """The schedule and whether it steps per batch (else per epoch)."""
    if name == "none":
        return None, False
    if name == "step":
        return StepLR(opt, step_size=max(1, math.ceil(epochs / 3)), gamma=0.1), False
    if name == "cosine":
        return CosineAnnealingLR(opt, T_max=epochs * steps), True
    if name == "onecycle":
        return OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps), True
    raise ValueError(f"fit: schedule must be one of {', '.join(SCHEDULES)}, got {name!r}")


def _make_augment(augment: Any) -> Augment | PairedAugment | None:
    if augment is None or isinstance(augment, (Augment, PairedAugment)):
        return augment
    if isinstance(augment, dict):
        return Augment(**augment)
    raise TypeError(f"fit: augment must be None, an Augment or a dict, got {augment!r}")


def _dropouts(model: Model) -> list[Dropout]:
    return [m for m in model.modules() if isinstance(m, Dropout)]


class _EarlyStopping:
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

    def update(self, record: dict[str, Any]) -> tuple[bool, bool]:
        """(improved, stop) after an epoch."""
        v = record[self.monitor]
        sign = 1.0 if self.monitor == "val_loss" else -1.0
        if self.best is None or sign * (self.best - v) > self.min_delta:
            self.best, self.best_epoch, self.bad = v, record["epoch"], 0
            return True, False
        self.bad += 1
        return False, self.bad >= self.patience

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad": self.bad}


class _Interrupt:
    """Turns Ctrl-C into a flag checked at the end of each batch (main thread only)."""

    def __init__(self) -> None:
        self.requested = False
        self._old: Any = None

    def __enter__(self) -> _Interrupt:
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _progress_bar(enabled: bool, total: int, desc: str):
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional
        return None
    return tqdm(total=total, desc=desc, unit="img", leave=False, dynamic_ncols=True)


# -- checkpoints ----------------------------------------------------------------------
def _check_writable(path: Path) -> None:
    """Raise a clear OSError now if a file cannot be created beside ``path``."""
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(
            exc.errno,
            f"cannot write the checkpoint {path}: the folder {folder} is missing or not "
            f"writable ({exc.strerror or exc})",
        ) from exc


def _write_checkpoint(path: Path, model: Model, opt, sched, run: dict, arrays: dict) -> None:
    opt_state = opt.state_dict()
    out: dict[str, Any] = {f"model.{k}": np.asarray(v) for k, v in model.state_dict().items()}
    steps: dict[str, Any] = {}
    for i, s in opt_state["state"].items():
        for k, v in s.items():
            if k == "step":
                steps[str(i)] = int(v)
            else:
                out[f"optim.{i}.{k}"] = v
    out.update(arrays)
    header = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": model_header(model),
        "optimizer": {
            "type": opt_state["type"],
            "hyperparameters": opt_state["hyperparameters"],
            "steps": steps,
        },
        "scheduler": None if sched is None else sched.state_dict(),
        **run,
    }
    save_arrays(path, header, out)


def _read_checkpoint(path: Path, model: Model, opt, sched, settings: dict) -> tuple[dict, dict]:
    header, arrays = load_arrays(path)
    if header.get("format") not in CHECKPOINT_READ_FORMATS:
        raise ModelFileError(
            f"{path}: not a clearconv checkpoint (format {header.get('format')!r})"
        )
    if header.get("version") != CHECKPOINT_VERSION:
        raise ModelFileError(
            f"{path}: unknown checkpoint version {header.get('version')!r} "
            f"(this clearconv reads version {CHECKPOINT_VERSION})"
        )
    saved = header.get("settings")
    if not isinstance(saved, dict):
        raise ModelFileError(f"{path}: the checkpoint header has no settings")
    changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
    if changed:
        parts = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(
            f"{path}: cannot resume with different settings ({parts}); use the same ones "
            "or start a new run"
        )
    bad = [k for k, v in arrays.items() if v.dtype.kind == "f" and not np.all(np.isfinite(v))]
    if bad:
        raise ModelFileError(f"{path}: {', '.join(bad)} hold NaN or infinite values")
    state = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
        opt_arrays: dict[str, dict[str, Any]] = {}
        for k, v in arrays.items():
            if k.startswith("optim."):
                _, i, name = k.split(".", 2)
                opt_arrays.setdefault(i, {})[name] = v
        for i, step in header["optimizer"]["steps"].items():
            opt_arrays.setdefault(i, {})["step"] = step
        opt.load_state_dict(
            {
                "type": header["optimizer"]["type"],
                "hyperparameters": header["optimizer"]["hyperparameters"],
                "state": opt_arrays,
            }
        )
        if sched is not None:
            sched.load_state_dict(header["scheduler"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: does not match this model and optimizer ({exc})") from exc
    return header, arrays


# -- fit ---------------------------------------------------------------------------------
def fit(
    model: Model,
    train_data: Any,
    val_data: Any = None,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    optimizer: str = "adam",
    lr: float = 1e-3,
    schedule: str = "none",
    weight_decay: float = 0.0,
    label_smoothing: float = 0.0,
    augment: Any = None,
    val_fraction: float = 0.0,
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    early_stopping: Any = None,
    progress: bool = True,
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
    history_path: str | os.PathLike | None = None,
) -> History:
    """Train ``model`` on ``train_data`` with mini-batches; returns the :class:`History`.

    Parameters
    ----------
    model : Model
        Trained in place (its ``preprocess`` maps raw images to the net's input).
    train_data, val_data : Dataset or (images, labels)
        Raw images (uint8 or float in [0, 1]) of shape ``(N, *input_shape)``.
    epochs, batch_size : int
    optimizer : {'adam', 'adamw', 'sgd'}
        SGD uses momentum 0.9.
    lr : float
        The learning rate (the peak for 'onecycle').
    schedule : {'none', 'step', 'cosine', 'onecycle'}
        'step' divides the lr by 10 every ``ceil(epochs / 3)`` epochs; 'cosine'
        and 'onecycle' step per batch over the whole run.
    weight_decay, label_smoothing : float
    augment : Augment, dict or None
        Batch augmentation of the training images (dict: Augment's arguments).
    val_fraction : float
        When ``val_data`` is None, hold out this share of ``train_data``.
    seed : int
        Fixes the split, the shuffle and the augmentation.
    checkpoint : path, optional
        ``.npz`` written atomically after every epoch (and on Ctrl-C).
    resume : bool
        Continue from ``checkpoint`` (which must exist, written with the same
        settings) to the same result as an uninterrupted run.
    early_stopping : int or dict, optional
        Patience, or ``{"patience", "monitor": "val_loss"|"val_acc",
        "min_delta"}``; stops when the monitored value has not improved for
        ``patience`` epochs; the best epoch's weights are restored (also when
        the run ends without stopping early). Needs validation data.
    progress : bool
        A tqdm bar (images/s, loss, ETA) when tqdm is installed and stderr is a TTY.
    on_epoch_end : callable, optional
        Called with each epoch's record (a dict) after the checkpoint is written.
    history_path : path, optional
        ``.csv`` or ``.json``, rewritten after every epoch.

    Raises
    ------
    TrainingDiverged
        When the loss becomes NaN or infinite (the last checkpoint is kept).
    KeyboardInterrupt
        On Ctrl-C, after a checkpoint at the end of the current batch.
    TypeError, ValueError
        For bad arguments; ``ModelFileError`` for a checkpoint that does not fit.

    Example
    -------
    >>> from clearconv import data, zoo
    >>> net, shape = zoo.build("xo", rng=np.random.default_rng(0))
    >>> m = Model(net, shape, ["X", "O"])
    >>> h = fit(m, data.make_xo(64, np.random.default_rng(1)), epochs=2, lr=0.01, progress=False)
    >>> len(h), sorted(h.last)[:3]
    (2, ['epoch', 'lr', 'seconds'])
    """
    if not isinstance(model, Model):
        raise TypeError(
            f"fit expected a clearconv.Model (Model(net, input_shape, class_names)), "
            f"got {type(model).__name__}"
        )
    epochs = check_int("fit", "epochs", epochs, minimum=1)
    batch_size = check_int("fit", "batch_size", batch_size, minimum=1)
    lr = check_float("fit", "lr", lr, minimum=0.0, open_min=True)
    weight_decay = check_float("fit", "weight_decay", weight_decay, minimum=0.0)
    label_smoothing = check_float("fit", "label_smoothing", label_smoothing, 0.0, 1.0)
    val_fraction = check_float("fit", "val_fraction", val_fraction, 0.0, 1.0, open_max=True)
    seed = check_int("fit", "seed", seed, minimum=0)
    if optimizer not in OPTIMIZERS:
        raise ValueError(
            f"fit: optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}"
        )
    if schedule not in SCHEDULES:
        raise ValueError(f"fit: schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if resume and checkpoint is None:
        raise ValueError("fit: resume=True needs a checkpoint path")
    if history_path is not None and Path(history_path).suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"fit: history_path must end in .csv or .json, got {history_path!r}")
    aug = _make_augment(augment)

    images, labels = _as_data("fit", train_data)
    _check_labels("fit", labels, model.num_classes)
    seeds = np.random.SeedSequence(seed).spawn(3)
    split_rng, shuffle_rng, aug_rng = (np.random.default_rng(s) for s in seeds)
    val_images: np.ndarray | None
    val_labels: np.ndarray | None
    if val_data is not None:
        val_images, val_labels = _as_data("fit", val_data)
        _check_labels("fit", val_labels, model.num_classes)
    elif val_fraction > 0:
        tr, va = train_val_split(len(labels), val_fraction, split_rng)
        images, labels, val_images, val_labels = images[tr], labels[tr], images[va], labels[va]
    else:
        val_images = val_labels = None
    n = len(labels)
    if n == 0:
        raise ValueError("fit: no training samples")
    # A last batch of one sample would break BatchNorm statistics: drop it.
    drop_last = n % batch_size == 1 and n > 1
    steps = n // batch_size if drop_last else math.ceil(n / batch_size)
    early = None if early_stopping is None else _EarlyStopping(early_stopping)
    if early is not None and val_images is None:
        raise ValueError("fit: early_stopping needs validation data (val_data or val_fraction)")

    opt = _make_optimizer(optimizer, model, lr, weight_decay)
    sched, per_batch = _make_schedule(schedule, opt, lr, epochs, steps)
    ce = CrossEntropyLoss(label_smoothing=label_smoothing)
    dropouts = _dropouts(model)
    settings = {
        "epochs": epochs, "batch_size": batch_size, "optimizer": optimizer, "lr": lr,
        "schedule": schedule, "weight_decay": weight_decay, "label_smoothing": label_smoothing,
        "seed": seed, "n_train": n,
    }  # fmt: skip
    history = History()
    start_epoch, start_batch = 0, 0
    order: np.ndarray | None = None
    running = {"loss": 0.0, "correct": 0, "count": 0, "seconds": 0.0}
    best_state: dict[str, np.ndarray] | None = None
    ckpt = None if checkpoint is None else Path(checkpoint)
    if ckpt is not None:
        _check_writable(ckpt)  # an unwritable folder fails now, not after the first epoch

    if resume and ckpt is not None:
        if not ckpt.is_file():
            raise FileNotFoundError(f"fit: no checkpoint to resume from at {ckpt}")
        header, arrays = _read_checkpoint(ckpt, model, opt, sched, settings)
        try:  # a damaged header is a ModelFileError, not a KeyError (found by fuzz.run)
            start_epoch, start_batch = int(header["epoch"]), int(header["batch"])
            shuffle_rng.bit_generator.state = header["rng"]["shuffle"]
            aug_rng.bit_generator.state = header["rng"]["augment"]
            if len(header["rng"]["dropout"]) != len(dropouts):
                raise ModelFileError(
                    f"{ckpt}: holds {len(header['rng']['dropout'])} Dropout states"
                )
            for d, st in zip(dropouts, header["rng"]["dropout"], strict=True):
                d.rng.bit_generator.state = st
            h = header["history"]
            history = History(list(h["records"]), h["best_epoch"], h["stopped_early"])
            running = dict(header["running"])
            order = arrays.get("order")
            if order is not None and (
                order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n))
            ):
                raise ModelFileError(f"{ckpt}: the saved sample order is not a permutation of {n}")
            if not (0 <= start_batch < steps or (start_batch == 0 and steps == 0)):
                raise ModelFileError(f"{ckpt}: batch {start_batch} is outside 0..{steps - 1}")
            if early is not None and header.get("early"):
                e = header["early"]
                early.best, early.best_epoch, early.bad = e["best"], e["best_epoch"], e["bad"]
                best_state = {k[5:]: v for k, v in arrays.items() if k.startswith("best.")} or None
        except ModelFileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
            raise ModelFileError(f"{ckpt}: damaged checkpoint header ({exc!r})") from exc
        if history.stopped_early:
            return history

    def save_ckpt(epoch: int, batch: int, cur_order: np.ndarray | None) -> None:
        if ckpt is None:
            return
        extra: dict[str, np.ndarray] = {}
        if cur_order is not None:
            extra["order"] = cur_order
        if best_state is not None:
            extra.update({f"best.{k}": v for k, v in best_state.items()})
        run = {
            "settings": settings,
            "epoch": epoch,
            "batch": batch,
            "rng": {
                "shuffle": shuffle_rng.bit_generator.state,
                "augment": aug_rng.bit_generator.state,
                "dropout": [d.rng.bit_generator.state for d in dropouts],
            },
            "history": history.to_dict(),
            "running": running,
            "early": None if early is None else early.state(),
        }
        _write_checkpoint(ckpt, model, opt, sched, run, extra)

    stop = False
    with _Interrupt() as interrupt:
        for epoch in range(start_epoch, epochs):
            if order is None or start_batch == 0:
                order = shuffle_rng.permutation(n)
                running = {"loss": 0.0, "correct": 0, "count": 0, "seconds": 0.0}
                first = 0
            else:
                first = start_batch
            start_batch = 0
            bar = _progress_bar(progress, n, f"epoch {epoch + 1}/{epochs}")
            t0 = time.perf_counter()
            for b in range(first, steps):
                idx = order[b * batch_size : (b + 1) * batch_size]
                x = to_float(images[idx])
                if x.ndim == len(model.input_shape):  # (B, H, W) -> (B, 1, H, W)
                    x = x[:, None]
                y = labels[idx]
                if isinstance(aug, PairedAugment):  # masks moved with their images
                    x, y = aug(x, y, aug_rng)
                elif aug is not None:
                    x = aug(x, aug_rng)
                x = model.preprocess(x)
                opt.zero_grad()
                logits = model(x, training=True)
                loss = float(ce(logits, y))
                if not math.isfinite(loss):
                    where = f"epoch {epoch + 1}, batch {b + 1}/{steps}"
                    kept = f"; the last good checkpoint {ckpt} is kept" if ckpt else ""
                    raise TrainingDiverged(
                        f"the loss became {loss} at {where} (lr {opt.lr:.3g}); lower the "
                        f"learning rate{kept}"
                    )
                model.backward(ce.backward(), input_grad=False)  # the data is not learned
                opt.step()
                if sched is not None and per_batch:
                    sched.step()
                running["loss"] += loss * len(idx)
                hits = logits.argmax(axis=1) == y
                if y.ndim == 1:
                    running["correct"] += int(hits.sum())
                else:  # masks: the share of the labelled pixels right, counted per image
                    labelled = max(int((y != ce.ignore_index).sum()), 1)
                    running["correct"] += float(hits.sum()) / labelled * len(idx)
                running["count"] += len(idx)
                if bar is not None:
                    elapsed = running["seconds"] + time.perf_counter() - t0
                    bar.update(len(idx))
                    bar.set_postfix(
                        loss=f"{running['loss'] / running['count']:.4f}",
                        acc=f"{running['correct'] / running['count']:.3f}",
                        img_s=f"{running['count'] / max(elapsed, 1e-9):.0f}",
                    )
                if interrupt.requested and b + 1 < steps:
                    # Ctrl-C: keep the position inside the epoch, then stop.
                    running["seconds"] += time.perf_counter() - t0
                    if bar is not None:
                        bar.close()
                    save_ckpt(epoch, b + 1, order)
                    raise KeyboardInterrupt
            if bar is not None:
                bar.close()
            if sched is not None and not per_batch:
                sched.step()
            running["seconds"] += time.perf_counter() - t0
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": running["loss"] / running["count"],
                "train_acc": running["correct"] / running["count"],
                "val_loss": None,
                "val_acc": None,
                "lr": float(opt.lr),
                "seconds": running["seconds"],
            }
            if val_images is not None and val_labels is not None and len(val_labels):
                r = evaluate(model, val_images, val_labels, batch_size=max(batch_size, 256))
                record["val_loss"], record["val_acc"] = r["loss"], r["accuracy"]
            history.records.append(record)
            if early is not None:
                improved, stop = early.update(record)
                if improved:
                    best_state = {k: np.array(v) for k, v in model.state_dict().items()}
                history.best_epoch = early.best_epoch
                history.stopped_early = stop
                if stop and best_state is not None:
                    model.load_state_dict(best_state)
            order = None
            save_ckpt(epoch + 1, 0, None)
            if history_path is not None:
                history.save(history_path)
            if interrupt.requested:  # Ctrl-C during the last batch: the epoch is saved
                raise KeyboardInterrupt
            if on_epoch_end is not None:
                on_epoch_end(dict(record))
            if stop:
                break
    if early is not None and not stop and best_state is not None:
        model.load_state_dict(best_state)
    model.meta["training"] = {
        **settings,
        "epochs_run": len(history),
        "augment": None if aug is None else vars(aug),
        "final": history.last,
    }
    return history
