"""Losses: CrossEntropyLoss (from logits, integer labels, per pixel too) and MSELoss (means)."""

from __future__ import annotations

from typing import Any

import numpy as np

from clearconv import functional as T
from clearconv._validate import check_float, check_float_array, check_int
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
    """Softmax cross-entropy from logits, mean over the batch (and pixels), as in PyTorch.

    With ``log p = log_softmax(logits)`` over axis 1, class weights ``w``
    (ones by default), the target ``q = (1 - s) * onehot(label) + s / C``
    (``s = label_smoothing``) and the sum over the samples (or pixels) ``i``
    whose label is not ``ignore_index``::

        loss = sum_i [ (1 - s) * w[y_i] * (-log p[i, y_i]) + s/C * sum_c w[c] * (-log p[i, c]) ]
               / sum_i w[y_i]
        d loss / d logits[i] = ((1 - s) w[y_i] + s/C sum(w)) p_i - (1 - s) w[y_i] onehot(y_i)
                               - s/C w, over sum_i w[y_i]

    Without weights this is ``-1/N sum_i sum_c q[i, c] log p[i, c]``. The
    maximum is subtracted before ``exp``, so logits of 1e4 give a finite loss
    and gradient. Every label ignored gives NaN, as PyTorch.

    Parameters
    ----------
    weight : array (C,), optional
        A weight per class (rare classes counted more), keyword or first argument as PyTorch.
    ignore_index : int, default -100
        Labels with this value add nothing (unlabelled pixels).
    label_smoothing : float, default 0.0
        In ``[0, 1]``; mass spread uniformly over the C classes.

    Shape: ``logits`` ``(N, C)`` or ``(N, C, H, W)`` (any trailing axes)
    float32/float64, ``labels`` ``(N,)`` or ``(N, H, W)`` integers in ``[0, C)``
    or ``ignore_index``; loss a scalar of the logits' dtype; ``backward()``
    returns the logits' shape.

    Raises
    ------
    TypeError
        Non-float logits, non-integer labels, or a bad argument type.
    ValueError
        Wrong shapes, labels out of range, ``label_smoothing`` outside ``[0, 1]``,
        a weight that is not ``C`` non-negative numbers.
    RuntimeError
        ``backward`` before ``forward``.

    Examples
    --------
    >>> import numpy as np
    >>> ce = CrossEntropyLoss()
    >>> loss = ce(np.zeros((2, 4), dtype=np.float32), np.array([0, 3]))
    >>> round(float(loss), 4), loss.dtype, ce.backward().shape
    (1.3863, dtype('float32'), (2, 4))
    >>> seg = CrossEntropyLoss(ignore_index=255)
    >>> float(seg(np.zeros((1, 2, 2, 2)), np.array([[[0, 1], [255, 1]]])))  # log 2
    0.6931471805599453
    """

    def __init__(
        self,
        weight: Any = None,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
    ) -> None:
        owner = "CrossEntropyLoss"
        self.label_smoothing = check_float(owner, "label_smoothing", label_smoothing, 0.0, 1.0)
        self.ignore_index = check_int(owner, "ignore_index", ignore_index)
        self.weight: np.ndarray | None = None
        if weight is not None:
            w = np.asarray(weight)
            if (
                w.ndim != 1
                or w.dtype.kind not in "fiu"
                or not np.all(np.isfinite(w))
                or (w < 0).any()
            ):
                raise ValueError(
                    f"{owner}: weight must be a 1-D array of C non-negative numbers, got {weight!r}"
                )
            self.weight = w.astype(np.float64)
        # (probabilities, labels, weight, False) from the engine, (logits, ..., True) from
        # the textbook
        self._cache: tuple[Array, Array, Array | None, bool] | None = None

    def forward(self, logits: Array, labels: Array) -> Array:
        """Mean loss for ``logits`` ``(N, C, *)`` and integer ``labels`` ``(N, *)``."""
        owner = self  # formatted (repr) only into an error message
        check_float_array(owner, logits, "logits")
        if logits.ndim < 2:
            raise ValueError(
                f"{owner} expected logits of shape (N, C) or (N, C, H, W), "
                f"got {tuple(logits.shape)}"
            )
        if not hasattr(labels, "shape") or not hasattr(labels, "dtype"):
            raise TypeError(f"{owner} expected labels as an array, got {type(labels).__name__}")
        if labels.dtype.kind not in "iu":
            raise TypeError(
                f"{owner} expected integer class labels, got dtype {labels.dtype} "
                "(convert with labels.astype(np.int64))"
            )
        n, c = logits.shape[:2]
        want = (n, *logits.shape[2:])
        if tuple(labels.shape) != want:
            raise ValueError(
                f"{owner} expected labels of shape {want} for logits of shape "
                f"{tuple(logits.shape)}, got {tuple(labels.shape)}"
            )
        if n == 0:
            raise ValueError(
                f"{owner} expected a non-empty batch, got logits of shape {tuple(logits.shape)}"
            )
        if self.weight is not None and len(self.weight) != c:
            raise ValueError(f"{owner}: weight has {len(self.weight)} values for {c} classes")
        bad = (labels < 0) | (labels >= c)
        if self.ignore_index < 0 or self.ignore_index >= c:
            bad &= labels != self.ignore_index
        if bad.any():
            value = int(labels[bad].flat[0])
            raise ValueError(
                f"{owner}: labels must be in [0, {c - 1}] for {c} classes, got {value}"
                + (f" (or {self.ignore_index}, ignored)" if self.ignore_index < 0 else "")
            )
        w = None if self.weight is None else self.weight.astype(logits.dtype)
        if self.textbook:
            self._cache = (logits, labels, w, True)
            return T.cross_entropy(logits, labels, self.label_smoothing, w, self.ignore_index)
        loss, probs = F.cross_entropy(logits, labels, self.label_smoothing, w, self.ignore_index)
        self._cache = (probs, labels, w, False)
        return loss

    def backward(self, grad_out: float = 1.0) -> Array:
        """Gradient of the loss (times ``grad_out``) for the logits, their shape."""
        saved, labels, w, textbook = cached(self, self._cache)
        args = (saved, labels, self.label_smoothing, grad_out, w, self.ignore_index)
        if textbook:
            return T.cross_entropy_backward(*args)
        return F.cross_entropy_backward(*args)

    def extra_repr(self) -> str:
        parts = []
        if self.weight is not None:
            parts.append(f"weight={self.weight.tolist()}")
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        if self.label_smoothing != 0.0:
            parts.append(f"label_smoothing={self.label_smoothing}")
        return ", ".join(parts)


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
