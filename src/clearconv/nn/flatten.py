"""Flatten: the bridge from feature maps to the fully connected layers."""

from __future__ import annotations

import math

from clearconv._validate import check_float_array, check_int
from clearconv.backend import Array
from clearconv.engine import DEFAULT as ENGINE
from clearconv.nn.module import Module


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

    textbook = False  # True: plain reshapes, no memory-order copy (clearconv.nn.use_textbook)

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
        in_shape, x = self._cached(self._in_shape), self._cached(self._x)
        g = grad_out.reshape(in_shape)
        if self.textbook or x.ndim != g.ndim or x.flags.c_contiguous:
            return g
        # Hand the gradient back in the memory order the input came in (a
        # convolution's channels-last or channel-major output), so the layers below it do not
        # mix orders: one small transposing copy here instead of many there.
        out = ENGINE.empty_like(in_shape, x, g.dtype)
        out[...] = g
        return out

    def extra_repr(self) -> str:
        parts = []
        if self.start_dim != 1:
            parts.append(f"start_dim={self.start_dim}")
        if self.end_dim != -1:
            parts.append(f"end_dim={self.end_dim}")
        return ", ".join(parts)
