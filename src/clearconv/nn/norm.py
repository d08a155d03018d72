"""Batch normalisation layers: BatchNorm1d and BatchNorm2d."""

from __future__ import annotations

from typing import Any

import numpy as np

from clearconv import functional as T
from clearconv._validate import check_dtype, check_float, check_float_array, check_int
from clearconv.backend import Array
from clearconv.engine import norm as F
from clearconv.engine.plan import Traits
from clearconv.nn.module import Module
from clearconv.nn.parameter import Parameter


class _BatchNorm(Module):
    """Shared code; subclasses set the accepted ranks and their written shapes."""

    traits = Traits(fresh=True)  # new arrays, not kept
    textbook = False  # True: run on clearconv.functional (clearconv.nn.use_textbook)

    _ranks: tuple[int, ...] = ()
    _expected: str = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        dtype: Any = np.float32,
    ) -> None:
        name = type(self).__name__
        self.num_features = check_int(name, "num_features", num_features, minimum=1)
        self.eps = check_float(name, "eps", eps, 0.0, open_min=True)
        self.momentum = (
            None if momentum is None else check_float(name, "momentum", momentum, 0.0, 1.0)
        )
        for arg, v in (("affine", affine), ("track_running_stats", track_running_stats)):
            if not isinstance(v, bool):
                raise TypeError(f"{name}: {arg} must be a bool, got {v!r}")
        self.affine = affine
        self.track_running_stats = track_running_stats
        dt = check_dtype(name, dtype)
        c = self.num_features
        self.weight = Parameter(np.ones(c, dtype=dt)) if affine else None
        self.bias = Parameter(np.zeros(c, dtype=dt)) if affine else None
        # Buffers (state_dict picks them up by these names, as in PyTorch).
        if track_running_stats:
            self.running_mean: Array | None = np.zeros(c, dtype=dt)
            self.running_var: Array | None = np.ones(c, dtype=dt)
            self.num_batches_tracked: Array | None = np.array(0, dtype=np.int64)
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        # (xc, inv_std, batch statistics?, False, sync) from the engine, (x, None, batch?,
        # True, None) from the textbook.
        self._cache: tuple[Array, Array | None, bool, bool, Any] | None = None
        # Data-parallel training sets this to a clearconv.distributed.Distributed while it
        # runs (sync_batchnorm): training statistics then come from the global batch.
        self.sync: Any = None

    def _check(self, shape: tuple[int, ...]) -> None:
        if len(shape) not in self._ranks or shape[1] != self.num_features:
            raise ValueError(f"{self!r} expected input of shape {self._expected}, got {shape}")

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._check(tuple(input_shape))
        return tuple(input_shape)

    def forward(self, x: Array, training: bool = False) -> Array:
        check_float_array(self, x)
        self._check(tuple(x.shape))
        dt = x.dtype
        w = self.weight.data.astype(dt, copy=False) if self.weight is not None else None
        b = self.bias.data.astype(dt, copy=False) if self.bias is not None else None
        # Like torch: batch statistics in training, or always when no running stats are kept.
        use_batch = training or self.running_mean is None
        m = x.size // self.num_features
        if use_batch and m <= 1:
            raise ValueError(
                "Expected more than 1 value per channel when training, "
                f"got input of shape {tuple(x.shape)}"
            )
        sync = self.sync if training else None
        if sync is not None:  # statistics of the global batch, m values per channel in it
            y, xc, inv_std, mean, var, m = sync.batch_norm_train(x, w, b, self.eps)
            if self.running_mean is not None:
                self._update_running(mean, var, m)
            self._cache = (xc, inv_std, True, False, sync)
            return y
        if self.textbook:
            return self._textbook_forward(x, w, b, training, use_batch)
        if not use_batch:
            y, xc, inv_std = F.batch_norm_eval(
                x, self.running_mean, self.running_var, w, b, self.eps
            )
            self._cache = (xc, inv_std, False, False, None)
            return y
        y, xc, inv_std, mean, var = F.batch_norm_train(x, w, b, self.eps)
        if training and self.running_mean is not None:
            self._update_running(mean, var, m)
        self._cache = (xc, inv_std, True, False, None)
        return y

    def _textbook_forward(self, x: Array, w, b, training: bool, use_batch: bool) -> Array:
        """:func:`clearconv.functional.batch_norm`, which updates the running statistics."""
        self._cache = (x, None, use_batch, True, None)
        if not (training and self.running_mean is not None):  # nothing to update
            return T.batch_norm(
                x, self.running_mean, self.running_var, w, b, use_batch, 0.0, self.eps
            )
        count = self.num_batches_tracked  # kept whenever the running statistics are
        if count is not None:
            count += 1  # in place: the state_dict's array
        # As torch.nn.BatchNorm: momentum=None is a cumulative average, 1 / batches seen.
        seen = 1 if count is None else int(count)
        factor = 1.0 / seen if self.momentum is None else self.momentum
        return T.batch_norm(x, self.running_mean, self.running_var, w, b, True, factor, self.eps)

    def _update_running(self, mean: Array, var: Array, m: int) -> None:
        # In place, so arrays handed out by state_dict() stay the live buffers.
        count, r_mean, r_var = self.num_batches_tracked, self.running_mean, self.running_var
        if count is None or r_mean is None or r_var is None:
            raise RuntimeError(f"{self!r} keeps no running statistics to update")
        count += 1
        if self.momentum is None:  # cumulative moving average
            factor = 1.0 / float(count)
        else:
            factor = self.momentum
        unbiased = var * (m / (m - 1))
        r_mean *= 1 - factor
        r_mean += factor * mean
        r_var *= 1 - factor
        r_var += factor * unbiased

    def backward(self, grad_out: Array) -> Array:
        xc, inv_std, batch, textbook, sync = self._cached(self._cache)
        w = self.weight.data.astype(xc.dtype, copy=False) if self.weight is not None else None
        if sync is not None:  # the sums over the global batch (see Distributed)
            dx, dw, db = sync.batch_norm_backward(grad_out, xc, inv_std, w)
        elif textbook:  # xc is the input; the statistics are computed again from it
            rm, rv = self.running_mean, self.running_var
            dx, dw, db = T.batch_norm_backward(grad_out, xc, rm, rv, w, batch, self.eps)
        else:
            dx, dw, db = F.batch_norm_backward(grad_out, xc, inv_std, w, batch)
        if self.weight is not None and self.bias is not None:  # both exist iff affine
            self.weight.accumulate(dw)
            self.bias.accumulate(db)
        return dx

    def extra_repr(self) -> str:
        parts = [str(self.num_features)]
        if self.eps != 1e-5:
            parts.append(f"eps={self.eps}")
        if self.momentum != 0.1:
            parts.append(f"momentum={self.momentum}")
        if not self.affine:
            parts.append("affine=False")
        if not self.track_running_stats:
            parts.append("track_running_stats=False")
        return ", ".join(parts)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over ``(N, C)`` or ``(N, C, L)`` input, per channel.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``. In training the mean
    and biased variance are the batch's, over N (and L); the running
    statistics are updated as ``r = (1 - momentum) * r + momentum * s`` with
    the *unbiased* batch variance (``momentum=None``: cumulative average,
    ``1 / num_batches_tracked``). In eval the running statistics are used
    and backward is the affine map ``g * weight / sqrt(running_var + eps)``.

    Parameters
    ----------
    num_features : int
        C, the number of channels.
    eps : float, default 1e-5
        Added to the variance (> 0).
    momentum : float or None, default 0.1
        Weight of the new batch in the running statistics, in ``[0, 1]``.
    affine : bool, default True
        Learn ``weight`` and ``bias``.
    track_running_stats : bool, default True
        Keep running statistics; without them batch statistics are used in eval too.
    dtype : float32 or float64, default float32

    Shape: input ``(N, C)`` or ``(N, C, L)``, output the same.

    Attributes
    ----------
    weight, bias : Parameter or None
        ``(C,)``, initialised to ones and zeros; None when ``affine=False``.
    running_mean, running_var : array or None
        ``(C,)``, initialised to zeros and ones.
    num_batches_tracked : 0-d int64 array or None
        Training steps seen.

    Raises
    ------
    TypeError
        For arguments of the wrong type or a non-float input.
    ValueError
        For bad argument values, a wrong input rank or channel count, or a
        training input with one value per channel.

    Examples
    --------
    >>> import numpy as np
    >>> bn = BatchNorm1d(2)
    >>> y = bn(np.array([[1.0, 2.0], [3.0, 6.0]]), training=True)
    >>> y.round(3).tolist(), bn.running_mean.tolist()
    ([[-1.0, -1.0], [1.0, 1.0]], [0.20000000298023224, 0.4000000059604645])
    """

    _ranks = (2, 3)

    @property
    def _expected(self) -> str:  # type: ignore[override]
        c = self.num_features
        return f"(N, {c}) or (N, {c}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over ``(N, C, H, W)`` input, per channel.

    As :class:`BatchNorm1d`, with statistics over N, H and W (axes
    ``(0, 2, 3)``). Same parameters, attributes and errors.

    Shape: input ``(N, C, H, W)``, output the same.

    Examples
    --------
    >>> import numpy as np
    >>> bn = BatchNorm2d(3)
    >>> bn(np.ones((2, 3, 4, 4), dtype=np.float32), training=True).shape
    (2, 3, 4, 4)
    """

    _ranks = (4,)

    @property
    def _expected(self) -> str:  # type: ignore[override]
        return f"(N, {self.num_features}, H, W)"


__all__ = ["BatchNorm1d", "BatchNorm2d"]
