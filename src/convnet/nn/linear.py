"""Linear (fully connected) and Flatten layers."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from convnet._validate import check_dtype, check_int, check_rng
from convnet.backend import Array, empty_like_layout
from convnet.functional import linear as F
from convnet.nn.activation import check_float_array
from convnet.nn.init import default_weight_bias
from convnet.nn.module import Module
from convnet.nn.parameter import Parameter


class Flatten(Module):
    """Flatten dims ``start_dim`` .. ``end_dim`` (inclusive) into one, like ``torch.nn.Flatten``.

    Parameters
    ----------
    start_dim : int, default 1
        First dim to flatten (negative counts from the end).
    end_dim : int, default -1
        Last dim to flatten.

    Shape: input ``(N, C, H, W)``, output ``(N, C * H * W)`` with the defaults;
    in general the dims ``start_dim..end_dim`` are replaced by their product.
    Backward reshapes the gradient to the input shape.

    Raises
    ------
    TypeError
        If a dim is not an int.
    ValueError
        If a dim is out of range for the input or ``start_dim`` comes after ``end_dim``.

    Examples
    --------
    >>> import numpy as np
    >>> Flatten()(np.zeros((2, 3, 4, 5))).shape
    (2, 60)
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        self.start_dim = check_int("Flatten", "start_dim", start_dim)
        self.end_dim = check_int("Flatten", "end_dim", end_dim)
        self._in_shape: tuple[int, ...] | None = None
        self._x: Array | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(input_shape)
        span = max(len(shape), 1)
        dims = []
        for name, d in (("start_dim", self.start_dim), ("end_dim", self.end_dim)):
            if not -span <= d < span:
                raise ValueError(
                    f"{self!r}: {name}={d} out of range for an input of shape {shape} "
                    f"(expected in [{-span}, {span - 1}])"
                )
            dims.append(d % span)
        start, end = dims
        if start > end:
            raise ValueError(
                f"{self!r}: start_dim cannot come after end_dim for an input of shape {shape}"
            )
        if not shape:  # torch flattens a 0-d tensor to shape (1,)
            return (1,)
        return (*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])

    def forward(self, x: Array, training: bool = False) -> Array:
        check_float_array(self, x)
        out = self.output_shape(x.shape)
        self._in_shape = tuple(x.shape)
        self._x = x  # a reference, kept for its memory order
        return x.reshape(out)

    def backward(self, grad_out: Array) -> Array:
        if self._in_shape is None or self._x is None:
            raise RuntimeError(f"{self!r}.backward called before forward")
        g = grad_out.reshape(self._in_shape)
        if self._x.ndim != g.ndim or self._x.flags.c_contiguous:
            return g
        # Hand the gradient back in the memory order the input came in (a
        # convolution's channels-last or channel-major output), so the layers below it do not
        # mix orders: one small transposing copy here instead of many there.
        out = empty_like_layout(self._in_shape, self._x, g.dtype)
        out[...] = g
        return out

    def extra_repr(self) -> str:
        parts = []
        if self.start_dim != 1:
            parts.append(f"start_dim={self.start_dim}")
        if self.end_dim != -1:
            parts.append(f"end_dim={self.end_dim}")
        return ", ".join(parts)


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

    fresh_output = fresh_input_grad = True  # new arrays, not kept (Module)

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
        return F.linear(x, w, b)

    def backward(self, grad_out: Array) -> Array:
        if self._x is None:
            raise RuntimeError(f"{self!r}.backward called before forward")
        dx, dw, db = F.linear_backward(grad_out, self._x, self._w, self.bias is not None)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self) -> str:
        s = f"in_features={self.in_features}, out_features={self.out_features}"
        return s if self.bias is not None else s + ", bias=False"
