"""Losses: CrossEntropyLoss (from logits, integer labels) and MSELoss, mean reduction."""

from __future__ import annotations

from typing import Any

from clearconv import functional as T
from clearconv._validate import check_float, check_float_array
from clearconv.backend import Array
from clearconv.engine import loss as F
from clearconv.nn.module import cached


class _Loss:
    """Shared plumbing: ``__call__`` is ``forward``; repr shows non-default settings."""

    textbook = False  # True: run on clearconv.functional (clearconv.nn.use_textbook)

    def __call__(self, *args: Any) -> Any:
        return self.forward(*args)

    def forward(self, *args: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy from logits, mean over the batch, as in PyTorch.

    With ``log p = log_softmax(logits)`` and the target
    ``q = (1 - s) * onehot(label) + s / C`` (``s = label_smoothing``)::

        loss = -1/N sum_n sum_c q[n, c] * log p[n, c]
        d loss / d logits = (softmax(logits) - q) / N

    The maximum is subtracted before ``exp``, so logits of 1e4 give a finite
    loss and gradient.

    Parameters
    ----------
    label_smoothing : float, default 0.0
        In ``[0, 1]``; mass spread uniformly over the C classes.

    Shape: ``logits`` ``(N, C)`` float32/float64, ``labels`` ``(N,)`` integers
    in ``[0, C)``; loss a scalar of the logits' dtype; ``backward()`` returns
    ``(N, C)``.

    Raises
    ------
    TypeError
        Non-float logits, non-integer labels, or a bad ``label_smoothing`` type.
    ValueError
        Wrong shapes, labels out of range, ``label_smoothing`` outside ``[0, 1]``.
    RuntimeError
        ``backward`` before ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> ce = CrossEntropyLoss()
    >>> loss = ce(np.zeros((2, 4), dtype=np.float32), np.array([0, 3]))
    >>> round(float(loss), 4), loss.dtype, ce.backward().shape
    (1.3863, dtype('float32'), (2, 4))
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = check_float(
            "CrossEntropyLoss", "label_smoothing", label_smoothing, 0.0, 1.0
        )
        # (probabilities, labels, False) from the engine, (logits, labels, True) from the textbook
        self._cache: tuple[Array, Array, bool] | None = None

    def forward(self, logits: Array, labels: Array) -> Array:
        """Mean loss for ``logits`` ``(N, C)`` and integer ``labels`` ``(N,)``."""
        owner = self  # formatted (repr) only into an error message
        check_float_array(owner, logits, "logits")
        if logits.ndim != 2:
            raise ValueError(f"{owner} expected logits of shape (N, C), got {tuple(logits.shape)}")
        if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
            raise TypeError(f"{owner} expected labels as an array, got {type(labels).__name__}")
        if labels.dtype.kind not in "iu":
            raise TypeError(
                f"{owner} expected integer class labels, got dtype {labels.dtype} "
                "(convert with labels.astype(np.int64))"
            )
        n, c = logits.shape
        if tuple(labels.shape) != (n,):
            raise ValueError(
                f"{owner} expected labels of shape ({n},) for logits of shape {(n, c)}, "
                f"got {tuple(labels.shape)}"
            )
        if n == 0:
            raise ValueError(f"{owner} expected a non-empty batch, got logits of shape {(n, c)}")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= c:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{owner}: labels must be in [0, {c - 1}] for {c} classes, got {bad}")
        if self.textbook:
            self._cache = (logits, labels, True)
            return T.cross_entropy(logits, labels, self.label_smoothing)
        loss, probs = F.cross_entropy(logits, labels, self.label_smoothing)
        self._cache = (probs, labels, False)
        return loss

    def backward(self, grad_out: float = 1.0) -> Array:
        """Gradient of the loss (times ``grad_out``) for the logits, ``(N, C)``."""
        saved, labels, textbook = cached(self, self._cache)
        if textbook:
            return T.cross_entropy_backward(saved, labels, self.label_smoothing, grad_out)
        return F.cross_entropy_backward(saved, labels, self.label_smoothing, grad_out)

    def extra_repr(self) -> str:
        return "" if self.label_smoothing == 0.0 else f"label_smoothing={self.label_smoothing}"


class MSELoss(_Loss):
    """Mean squared error: ``loss = mean((pred - target)**2)``.

    ``backward()`` returns ``2 * (pred - target) / pred.size``.

    Shape: ``pred`` and ``target`` the same shape ``(*)``; ``target`` is cast
    to ``pred``'s dtype; loss a scalar of ``pred``'s dtype.

    Raises
    ------
    TypeError
        Non-float arrays.
    ValueError
        Shapes that differ.
    RuntimeError
        ``backward`` before ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> mse = MSELoss()
    >>> float(mse(np.array([1.0, 3.0]), np.array([0.0, 0.0]))), mse.backward().tolist()
    (5.0, [1.0, 3.0])
    """

    def __init__(self) -> None:
        self._diff: Array | None = None  # the engine's pred - target
        self._pair: tuple[Array, Array] | None = None  # the textbook's (pred, target)

    def forward(self, pred: Array, target: Array) -> Array:
        """Mean squared error of ``pred`` against ``target`` (same shape)."""
        owner = self  # formatted (repr) only into an error message
        check_float_array(owner, pred, "pred")
        check_float_array(owner, target, "target")
        if tuple(pred.shape) != tuple(target.shape):
            raise ValueError(
                f"{owner} expected target of the same shape as pred {tuple(pred.shape)}, "
                f"got {tuple(target.shape)}"
            )
        if pred.size == 0:
            raise ValueError(f"{owner} expected a non-empty pred, got shape {tuple(pred.shape)}")
        target = target.astype(pred.dtype, copy=False)
        if self.textbook:
            self._diff, self._pair = None, (pred, target)
            return T.mse_loss(pred, target)
        loss, self._diff = F.mse(pred, target)
        self._pair = None
        return loss

    def backward(self, grad_out: float = 1.0) -> Array:
        """Gradient of the loss (times ``grad_out``) for ``pred``."""
        if self._pair is not None:
            return T.mse_loss_backward(*self._pair, grad_out)
        return F.mse_backward(cached(self, self._diff), grad_out)
