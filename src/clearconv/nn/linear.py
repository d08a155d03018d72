"""The Linear (fully connected) layer."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from clearconv import functional as T
from clearconv._validate import check_dtype, check_float_array, check_int, check_rng
from clearconv.backend import Array
from clearconv.engine import linear as F
from clearconv.engine.plan import Traits
from clearconv.nn.init import default_weight_bias
from clearconv.nn.module import Module
from clearconv.nn.parameter import Parameter


class Linear(Module):
    """Fully connected layer: ``y = x @ weight.T + bias``.

    Parameters
    ----------
    in_features : int
        Size of each input sample (>= 1).
    out_features : int
        Size of each output sample (>= 1).
    bias : bool, default True
        Learn an additive bias.
    rng : numpy.random.Generator, optional
        Source of the initial weights (a fresh unseeded one when None).
    dtype : float32 or float64, default float32
        dtype of the parameters.

    Shape: input ``(*, in_features)`` (usually ``(N, in_features)``), output
    ``(*, out_features)``. One matrix product each for the output, ``dW``
    and ``dx``.

    Attributes
    ----------
    weight : Parameter
        ``(out_features, in_features)``, U(-1/sqrt(in_features), 1/sqrt(in_features)).
    bias : Parameter or None
        ``(out_features,)``, same distribution; None when ``bias=False``.

    Raises
    ------
    TypeError
        For a non-int feature count, a non-bool ``bias``, a bad ``rng`` or ``dtype``,
        or a non-float input.
    ValueError
        For a feature count < 1, or an input whose last dim is not ``in_features``.

    Examples
    --------
    >>> import numpy as np
    >>> fc = Linear(4, 3, rng=np.random.default_rng(0))
    >>> fc.weight.shape, fc(np.ones((2, 4), dtype=np.float32)).shape
    ((3, 4), (2, 3))
    """

    traits = Traits(fresh=True)  # new arrays, not kept
    textbook = False  # True: run on clearconv.functional (clearconv.nn.use_textbook)

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        rng: np.random.Generator | None = None,
        dtype: npt.DTypeLike = np.float32,
    ) -> None:
        self.in_features = check_int("Linear", "in_features", in_features, minimum=1)
        self.out_features = check_int("Linear", "out_features", out_features, minimum=1)
        if not isinstance(bias, bool):
            raise TypeError(f"Linear: bias must be a bool, got {bias!r}")
        rng = check_rng("Linear", rng)
        dt = check_dtype("Linear", dtype)
        shape = (self.out_features, self.in_features)
        w, b = default_weight_bias(rng, shape, self.in_features, dt, bias)
        self.weight = Parameter(w)
        self.bias = Parameter(b) if b is not None else None
        self._x: Array | None = None
        self._w: Array | None = None

    def _check(self, x: Array) -> None:
        check_float_array(self, x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"{self!r} expected input of shape (N, {self.in_features}), got {tuple(x.shape)}"
            )

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(input_shape)
        if len(shape) < 1 or shape[-1] != self.in_features:
            raise ValueError(
                f"{self!r} expected input of shape (N, {self.in_features}), got {shape}"
            )
        return (*shape[:-1], self.out_features)

    def forward(self, x: Array, training: bool = False) -> Array:
        self._check(x)
        # Compute in the input's dtype (a no-op cast when they already agree).
        w = self.weight.data.astype(x.dtype, copy=False)
        b = self.bias.data.astype(x.dtype, copy=False) if self.bias is not None else None
        self._x, self._w = x, w
        return T.linear(x, w, b) if self.textbook else F.linear(x, w, b)

    def backward(self, grad_out: Array) -> Array:
        x, w = self._cached(self._x), self._cached(self._w)
        if self.textbook:  # the same cache either way: the input and the weights used
            dx, dw, db = T.linear_backward(grad_out, x, w)
        else:
            dx, dw, db = F.linear_backward(grad_out, x, w, self.bias is not None)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self) -> str:
        s = f"in_features={self.in_features}, out_features={self.out_features}"
        return s if self.bias is not None else s + ", bias=False"
