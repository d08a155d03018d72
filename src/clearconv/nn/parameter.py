"""A learnable array and the gradient accumulated for it."""

from __future__ import annotations

from typing import Any

import numpy as np

from clearconv._validate import FLOAT_DTYPES
from clearconv.backend import Array, xp_of


class Parameter:
    """A learnable array with its gradient.

    Parameters
    ----------
    data : array
        The value, float32 or float64.

    Attributes
    ----------
    data : array
        The value. Assigning a new array replaces it; the shape must stay the
        same and the dtype must be floating (it is kept as given, so float64
        weights make a float64 layer for gradient checks).
    grad : array or None
        Same shape as ``data``; ``None`` until the first backward. Backward
        passes add into it; an optimizer's ``zero_grad()`` clears it.

    Examples
    --------
    >>> import numpy as np
    >>> p = Parameter(np.zeros((2, 3), dtype=np.float32))
    >>> p.shape, p.grad is None
    ((2, 3), True)
    """

    __slots__ = ("_data", "grad")

    def __init__(self, data: Array) -> None:
        xp = xp_of(data)
        arr = xp.asarray(data)
        if arr.dtype not in FLOAT_DTYPES:
            raise TypeError(f"Parameter data must be float32 or float64, got dtype {arr.dtype}")
        self._data = arr
        self.grad: Array | None = None

    @property
    def data(self) -> Array:
        return self._data

    @data.setter
    def data(self, value: Any) -> None:
        xp = xp_of(value)
        arr = xp.asarray(value)
        if arr.shape != self._data.shape:
            raise ValueError(
                f"Parameter data must keep its shape {self._data.shape}, got {arr.shape}"
            )
        if arr.dtype not in FLOAT_DTYPES:
            raise TypeError(f"Parameter data must be float32 or float64, got dtype {arr.dtype}")
        # Copy so that later in-place updates never write into the caller's array.
        self._data = arr.copy()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def size(self) -> int:
        return int(self._data.size)

    def accumulate(self, g: Array) -> None:
        """Add ``g`` into ``grad`` (cast to this parameter's dtype)."""
        g = g.astype(self._data.dtype, copy=False)
        if self.grad is None:
            self.grad = g.copy() if not g.flags.owndata else g
        else:
            self.grad += g

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"
