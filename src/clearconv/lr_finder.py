"""The learning-rate range test (Smith 2015, as fastai's ``lr_find``).

Train for a few hundred mini-batches while the learning rate grows
exponentially from ``start_lr`` to ``end_lr``::

    lr_i = start_lr * (end_lr / start_lr) ** (i / (steps - 1))

and record the loss, smoothed by an exponential moving average with bias
correction (``avg = beta * avg + (1 - beta) * loss``, shown as
``avg / (1 - beta ** (i + 1))``). The sweep stops early once the smoothed loss
exceeds ``4x`` its minimum (it diverged). Two usual readings of the curve:

* ``lr_min``: a tenth of the rate at the lowest smoothed loss (the loss is
  still falling there, safely below where it blows up);
* ``lr_steep``: the rate where the smoothed loss falls fastest against
  ``log(lr)``.

The suggestion is ``lr_min`` when the sweep diverged (``lr_steep`` is noisier
on short runs); when the loss never rose (an easy task learned during the
sweep) the lowest point is just the end of the sweep and says nothing, so it
is ``lr_steep``. :func:`find_lr` leaves the model as it found it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clearconv._validate import check_float, check_int
from clearconv.data.loader import Dataset
from clearconv.engine.plan import no_input_grad
from clearconv.model import Model
from clearconv.nn.dropout import Dropout
from clearconv.nn.loss import CrossEntropyLoss
from clearconv.optim.optimizer import Optimizer

__all__ = ["LRFinderResult", "find_lr", "plot_lr_finder"]

#: The sweep stops when the smoothed loss exceeds this multiple of its minimum.
DIVERGE_FACTOR = 4.0
#: Steps left out when looking for the steepest descent (fastai's ``skip_start``).
SKIP_START = 10


@dataclass(frozen=True)
class LRFinderResult:
    """What the range test saw.

    Attributes
    ----------
    lrs, losses : numpy.ndarray
        ``(S,)`` float64: the rate of each step and the smoothed loss after it.
    lr_min : float
        A tenth of the rate at the lowest smoothed loss.
    lr_steep : float
        The rate where the smoothed loss falls fastest (against ``log(lr)``).
    diverged : bool
        The sweep stopped early because the loss blew up.
    """

    lrs: np.ndarray
    losses: np.ndarray
    lr_min: float
    lr_steep: float
    diverged: bool

    @property
    def suggestion(self) -> float:
        """The suggested learning rate: ``lr_min`` if the loss diverged, else ``lr_steep``."""
        return self.lr_min if self.diverged else self.lr_steep


def _optimizer(name: str, model: Model, weight_decay: float):
    from clearconv.optim import SGD, Adam, AdamW

    params = model.parameters()
    if name == "adam":
        return Adam(params, lr=1e-3, weight_decay=weight_decay)
    if name == "adamw":
        return AdamW(params, lr=1e-3, weight_decay=weight_decay)
    if name == "sgd":
        return SGD(params, lr=1e-3, momentum=0.9, weight_decay=weight_decay)
    raise ValueError(f"find_lr: optimizer must be 'adam', 'adamw' or 'sgd', got {name!r}")


def find_lr(
    model: Model,
    train_data: Dataset,
    *,
    batch_size: int = 64,
    optimizer: str = "adamw",
    weight_decay: float = 0.0,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 200,
    beta: float = 0.98,
    seed: int = 0,
) -> LRFinderResult:
    """Run the learning-rate range test on ``model``; its weights are restored after.

    Parameters
    ----------
    model : Model
    train_data : Dataset
        Raw images ``(N, *input_shape)`` and labels; batches are drawn from a
        shuffled order (reshuffled when used up).
    batch_size : int
    optimizer : {'adamw', 'adam', 'sgd'}
        SGD uses momentum 0.9.
    weight_decay : float
    start_lr, end_lr : float
        The sweep's first and last rate (``0 < start_lr < end_lr``).
    steps : int
        Mini-batches in the full sweep (at least 5).
    beta : float
        Smoothing of the loss, in ``[0, 1)``.
    seed : int
        Fixes the batch order.

    Returns
    -------
    LRFinderResult

    Raises
    ------
    TypeError, ValueError
        For bad arguments.

    Example
    -------
    >>> from clearconv import data, zoo
    >>> net, shape = zoo.build("xo", rng=np.random.default_rng(0))
    >>> m = Model(net, shape, ["X", "O"])
    >>> r = find_lr(m, data.make_xo(256, np.random.default_rng(1)), batch_size=32, steps=60)
    >>> 1e-7 <= r.suggestion < 10, len(r.lrs) == len(r.losses) <= 60
    (True, True)
    """
    if not isinstance(model, Model):
        raise TypeError(f"find_lr expected a clearconv.Model, got {type(model).__name__}")
    if not isinstance(train_data, Dataset):
        raise TypeError(f"find_lr expected a Dataset, got {type(train_data).__name__}")
    batch_size = check_int("find_lr", "batch_size", batch_size, minimum=1)
    steps = check_int("find_lr", "steps", steps, minimum=5)
    start_lr = check_float("find_lr", "start_lr", start_lr, minimum=0.0, open_min=True)
    end_lr = check_float("find_lr", "end_lr", end_lr, minimum=start_lr, open_min=True)
    beta = check_float("find_lr", "beta", beta, 0.0, 1.0, open_max=True)
    weight_decay = check_float("find_lr", "weight_decay", weight_decay, minimum=0.0)
    if len(train_data) == 0:
        raise ValueError("find_lr: no training samples")
    lrs = start_lr * (end_lr / start_lr) ** (np.arange(steps) / (steps - 1))
    opt = _optimizer(optimizer, model, weight_decay)
    rng = np.random.default_rng(seed)
    with _restored(model):
        seen_lrs, smoothed, diverged = _sweep(model, train_data, opt, lrs, batch_size, beta, rng)
    if len(smoothed) < 2:
        raise ValueError(f"find_lr: the loss diverged at once (lr {start_lr:g}); lower start_lr")
    return _result(np.array(seen_lrs), np.array(smoothed), diverged)


@contextmanager
def _restored(model: Model) -> Iterator[None]:
    """Put back ``model``'s weights, BatchNorm statistics and Dropout streams afterwards.

    The sweep trains the model; the caller gets it back as it was, with its
    gradients zeroed.
    """
    saved = {k: np.array(v) for k, v in model.state_dict().items()}
    dropouts = [m for m in model.modules() if isinstance(m, Dropout)]
    dropout_states = [d.rng.bit_generator.state for d in dropouts]
    try:
        yield
    finally:
        model.load_state_dict(saved)
        model.zero_grad()
        for d, state in zip(dropouts, dropout_states, strict=True):
            d.rng.bit_generator.state = state


def _sweep(
    model: Model,
    train_data: Dataset,
    opt: Optimizer,
    lrs: np.ndarray,
    batch_size: int,
    beta: float,
    rng: np.random.Generator,
) -> tuple[list[float], list[float], bool]:
    """One training step per rate of ``lrs``: the rates run, the smoothed losses, diverged.

    Batches come from a shuffled order, reshuffled when used up; the sweep
    stops at a non-finite loss or once the smoothed loss passes
    ``DIVERGE_FACTOR`` times its minimum.
    """
    ce = CrossEntropyLoss()
    n = len(train_data)
    order = rng.permutation(n)
    pos = 0
    seen_lrs: list[float] = []
    smoothed: list[float] = []
    avg, best = 0.0, math.inf
    for i, lr in enumerate(lrs):
        if pos + min(batch_size, n) > n:  # used up: a fresh shuffle
            order, pos = rng.permutation(n), 0
        idx = order[pos : pos + batch_size]
        pos += len(idx)
        opt.lr = float(lr)
        opt.zero_grad()
        logits = model(model.preprocess(train_data.images[idx]), training=True)
        loss = float(ce(logits, train_data.labels[idx]))
        if not math.isfinite(loss):
            return seen_lrs, smoothed, True
        with no_input_grad(model):  # the data is not learned
            model.backward(ce.backward())
        opt.step()
        avg = beta * avg + (1 - beta) * loss
        value = avg / (1 - beta ** (i + 1))  # bias correction of the average
        seen_lrs.append(float(lr))
        smoothed.append(value)
        best = min(best, value)
        if i > 0 and value > DIVERGE_FACTOR * best:
            return seen_lrs, smoothed, True
    return seen_lrs, smoothed, False


def _result(lrs: np.ndarray, losses: np.ndarray, diverged: bool) -> LRFinderResult:
    """Read ``lr_min`` and ``lr_steep`` off the smoothed curve."""
    lr_min = float(lrs[int(np.argmin(losses))]) / 10
    # slope of the loss against log(lr); the most negative one is the steepest descent
    slope = np.gradient(losses, np.log(lrs))
    # Look before the minimum (past it the curve only rises), skipping the first
    # steps as fastai does: the average of a few losses is still noise there.
    lowest = int(np.argmin(losses))
    skip = min(SKIP_START, lowest)
    lr_steep = float(lrs[skip + int(np.argmin(slope[skip : lowest + 1]))])
    return LRFinderResult(lrs, losses, lr_min, lr_steep, diverged)


def plot_lr_finder(result: LRFinderResult, path: str | Path) -> Path:
    """The smoothed loss against the learning rate (log scale), with the suggestions marked."""
    from clearconv.viz.curves import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result.lrs, result.losses)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss (smoothed)")
    which = "lr_min" if result.diverged else "lr_steep"
    marks: list[tuple[str, float, Any]] = [
        ("lr_min", result.lr_min, "tab:red"),
        ("lr_steep", result.lr_steep, "tab:green"),
    ]
    for label, lr, colour in marks:
        note = " (suggested)" if label == which else ""
        ax.axvline(lr, color=colour, ls="--", lw=1, label=f"{label} {lr:.2g}{note}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
