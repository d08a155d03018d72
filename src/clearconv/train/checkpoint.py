"""Checkpoints: the whole state of a run in one ``.npz`` file, so that a resumed
run reaches exactly the weights of an uninterrupted one.

The file (written atomically by :func:`clearconv.io.save_arrays`, no pickle)
holds the model's arrays as ``model.NAME``, the optimizer's as
``optim.INDEX.NAME``, the epoch's sample order as ``order`` (mid-epoch only)
and the best epoch's weights as ``best.NAME`` (early stopping only); its JSON
header holds the format and version, the model header, the optimizer's
hyperparameters and step counts, the schedule's state, the run's settings,
the position (``epoch`` done, ``batch`` done within the next), every
generator's state (shuffle, augmentation, each Dropout), the history, the
running sums and the early-stopping state.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from clearconv.io import ModelFileError, load_arrays, model_header, save_arrays
from clearconv.model import Model
from clearconv.train.callbacks import Callback, EarlyStopping, TrainState
from clearconv.train.history import History

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "Checkpoint", "check_writable"]

CHECKPOINT_FORMAT = "clearconv.checkpoint"
# Checkpoints written before the rename say ``convnet``; they resume the same.
CHECKPOINT_READ_FORMATS = (CHECKPOINT_FORMAT, "convnet.checkpoint")
CHECKPOINT_VERSION = 1


def check_writable(path: Path) -> None:
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


def write_checkpoint(path: Path, model: Model, opt, sched, run: dict, arrays: dict) -> None:
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


def read_checkpoint(path: Path, model: Model, opt, sched, settings: dict) -> tuple[dict, dict]:
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


class Checkpoint(Callback):
    """Writes the run's state to ``path`` after every epoch and on Ctrl-C (mid-epoch:
    the position within the epoch); with ``resume``, restores it first.

    Parameters
    ----------
    path : path
        The ``.npz`` file. Its folder is checked for writing at once.
    resume : bool
        Continue from ``path`` (which must exist, written with the same settings).
    every_epoch : bool
        False: write only on Ctrl-C (what the command line does when no
        checkpoint was asked for, so that an interrupted run can resume).
    early : EarlyStopping, optional
        Its state and best weights go into the checkpoint.
    write : bool, default True
        False: only restore (the processes other than rank 0 in data-parallel
        training, which all resume from the file rank 0 writes).

    Raises
    ------
    OSError
        If the folder is missing or not writable.
    FileNotFoundError
        With ``resume``, if there is no checkpoint at ``path``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        resume: bool = False,
        every_epoch: bool = True,
        early: EarlyStopping | None = None,
        write: bool = True,
    ) -> None:
        self.path = Path(path)
        if write:
            check_writable(self.path)  # an unwritable folder fails now, not after the first epoch
        if resume and not self.path.is_file():
            raise FileNotFoundError(f"fit: no checkpoint to resume from at {self.path}")
        self.resume, self.every_epoch, self.early = resume, every_epoch, early
        self.write = write
        self._saved_at: tuple[int, int] | None = None

    def on_train_begin(self, s: TrainState) -> None:
        if self.resume:
            restore(self.path, s, self.early)

    def on_epoch_end(self, s: TrainState) -> None:
        if self.every_epoch and self.write:
            self.save(s)

    def on_interrupt(self, s: TrainState) -> None:
        epoch, batch, _ = s.position()
        if self.write and self._saved_at != (epoch, batch):
            self.save(s)

    def save(self, s: TrainState) -> None:
        epoch, batch, order = s.position()
        extra: dict[str, np.ndarray] = {}
        if order is not None:
            extra["order"] = order
        early = self.early
        if early is not None and early.best_state is not None:
            extra.update({f"best.{k}": v for k, v in early.best_state.items()})
        run = {
            "settings": s.settings,
            "epoch": epoch,
            "batch": batch,
            "rng": {
                "shuffle": s.shuffle_rng.bit_generator.state,
                "augment": s.aug_rng.bit_generator.state,
                "dropout": [d.rng.bit_generator.state for d in s.dropouts],
            },
            "history": s.history.to_dict(),
            "running": s.running,
            "early": None if early is None else early.state(),
        }
        write_checkpoint(self.path, s.model, s.optimizer, s.scheduler, run, extra)
        self._saved_at = (epoch, batch)


def restore(path: Path, s: TrainState, early: EarlyStopping | None) -> None:
    """Load the checkpoint at ``path`` into the run ``s`` (and ``early``).

    Raises
    ------
    ModelFileError
        For a damaged checkpoint or one that does not fit this model and run.
    ValueError
        If it was written with other settings.
    """
    header, arrays = read_checkpoint(path, s.model, s.optimizer, s.scheduler, s.settings)
    n, steps = s.n, s.steps
    try:  # a damaged header is a ModelFileError, not a KeyError (found by fuzz.run)
        s.epoch, s.first_batch = int(header["epoch"]), int(header["batch"])
        s.shuffle_rng.bit_generator.state = header["rng"]["shuffle"]
        s.aug_rng.bit_generator.state = header["rng"]["augment"]
        if len(header["rng"]["dropout"]) != len(s.dropouts):
            raise ModelFileError(f"{path}: holds {len(header['rng']['dropout'])} Dropout states")
        for d, st in zip(s.dropouts, header["rng"]["dropout"], strict=True):
            d.rng.bit_generator.state = st
        h = header["history"]
        s.history = History(list(h["records"]), h["best_epoch"], h["stopped_early"])
        s.running = _running(path, header["running"])
        order = arrays.get("order")
        if order is not None and (
            order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n))
        ):
            raise ModelFileError(f"{path}: the saved sample order is not a permutation of {n}")
        s.order = order
        if not (0 <= s.first_batch < steps or (s.first_batch == 0 and steps == 0)):
            raise ModelFileError(f"{path}: batch {s.first_batch} is outside 0..{steps - 1}")
        if early is not None and header.get("early"):
            e = header["early"]
            early.best, early.best_epoch, early.bad = e["best"], e["best_epoch"], e["bad"]
            best = {k[5:]: v for k, v in arrays.items() if k.startswith("best.")}
            early.best_state = best or None
    except ModelFileError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError) as exc:
        raise ModelFileError(f"{path}: damaged checkpoint header ({exc!r})") from exc


def _running(path: Path, saved: Any) -> dict[str, Any]:
    """The saved running sums, checked: numbers under the keys the loop uses."""
    need, optional = ("loss", "correct", "count", "seconds"), ("lr_first", "lr_min", "lr_max")
    if not isinstance(saved, dict) or not all(k in saved for k in need):
        raise ModelFileError(f"{path}: the running sums are missing or incomplete")
    for k in need + optional:
        v = saved.get(k, 0)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ModelFileError(f"{path}: the running sum {k!r} is not a number ({v!r})")
    return dict(saved)
