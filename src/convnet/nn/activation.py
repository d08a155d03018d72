"""Activation layers: ReLU, LeakyReLU, Sigmoid, Tanh, Softmax."""

from __future__ import annotations

from typing import Any, TypeVar

from convnet._validate import FLOAT_DTYPES, check_float, check_int
from convnet.backend import Array
from convnet.functional import activation as F
from convnet.nn.module import Module


def check_float_array(owner: object, x: Any) -> None:
    """Require a float32/float64 array of any shape (elementwise layers)."""
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{owner} expected a float32 or float64 array, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{owner} expected a float32 or float64 array, got dtype {x.dtype} "
            "(convert with x.astype(np.float32))"
        )


_T = TypeVar("_T")


def _need_forward(owner: object, cache: _T | None) -> _T:
    """Return ``cache``, or raise if forward has not filled it yet."""
    if cache is None:
        raise RuntimeError(f"{owner}.backward called before forward")
    return cache


class ReLU(Module):
    """Rectified linear unit: ``y = max(x, 0)``.

    The gradient at 0 is 0 (as in PyTorch). Backward uses the cached output.
    ``inplace=True`` (a call argument, which :class:`~convnet.nn.Sequential`
    passes when the layer before it made the array and dropped it) writes
    the output over the input, and the input gradient over ``grad_out``: no
    new array, so no page faults on its first writes. In PyTorch the same is
    ``ReLU(inplace=True)``, chosen by the user.

    Shape: input ``(*)``, output ``(*)``, same shape and dtype.

    Raises
    ------
    TypeError
        If the input is not a float32/float64 array.

    Examples
    --------
    >>> import numpy as np
    >>> ReLU()(np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 2.])
    """

    works_in_place = True
    commutes_with_max_pool = True

    def __init__(self) -> None:
        self._y: Array | None = None

    def forward(self, x: Array, training: bool = False, inplace: bool = False) -> Array:
        check_float_array(self, x)
        self._y = F.relu(x, out=x if inplace else None)
        return self._y

    def backward(self, grad_out: Array, inplace: bool = False) -> Array:
        _need_forward(self, self._y)
        return F.relu_backward(grad_out, self._y, out=grad_out if inplace else None)


class LeakyReLU(Module):
    """Leaky ReLU: ``y = x`` if ``x > 0`` else ``negative_slope * x``.

    Parameters
    ----------
    negative_slope : float, default 0.01
        Slope for ``x <= 0`` (the gradient at 0 is ``negative_slope``, as in PyTorch).

    Shape: input ``(*)``, output ``(*)``.

    Raises
    ------
    TypeError
        If ``negative_slope`` is not a number or the input not a float array.

    Examples
    --------
    >>> import numpy as np
    >>> LeakyReLU(0.1)(np.array([-2.0, 3.0]))
    array([-0.2,  3. ])
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        self.negative_slope = check_float("LeakyReLU", "negative_slope", negative_slope)
        self._mask: Array | None = None

    def forward(self, x: Array, training: bool = False) -> Array:
        check_float_array(self, x)
        y, self._mask = F.leaky_relu(x, self.negative_slope)
        return y

    def backward(self, grad_out: Array) -> Array:
        _need_forward(self, self._mask)
        return F.leaky_relu_backward(grad_out, self._mask, self.negative_slope)

    def extra_repr(self) -> str:
        return "" if self.negative_slope == 0.01 else f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """Logistic sigmoid: ``y = 1 / (1 + exp(-x))``, computed without overflow.

    Backward from the cached output: ``dx = g * y * (1 - y)``.

    Shape: input ``(*)``, output ``(*)``.

    Examples
    --------
    >>> import numpy as np
    >>> Sigmoid()(np.array([-1e4, 0.0, 1e4]))
    array([0. , 0.5, 1. ])
    """

    def __init__(self) -> None:
        self._y: Array | None = None

    def forward(self, x: Array, training: bool = False) -> Array:
        check_float_array(self, x)
        self._y = F.sigmoid(x)
        return self._y

    def backward(self, grad_out: Array) -> Array:
        _need_forward(self, self._y)
        return F.sigmoid_backward(grad_out, self._y)


class Tanh(Module):
    """Hyperbolic tangent: ``y = tanh(x)``; backward ``dx = g * (1 - y**2)``.

    Shape: input ``(*)``, output ``(*)``.

    Examples
    --------
    >>> import numpy as np
    >>> Tanh()(np.array([0.0]))
    array([0.])
    """

    def __init__(self) -> None:
        self._y: Array | None = None

    def forward(self, x: Array, training: bool = False) -> Array:
        check_float_array(self, x)
        self._y = F.tanh(x)
        return self._y

    def backward(self, grad_out: Array) -> Array:
        _need_forward(self, self._y)
        return F.tanh_backward(grad_out, self._y)


def implicit_softmax_dim(ndim: int) -> int:
    """PyTorch's legacy rule for ``dim=None``: 0 for 0-, 1- or 3-D input, else 1."""
    return 0 if ndim in (0, 1, 3) else 1


class Softmax(Module):
    """Softmax along ``dim``: ``y_i = exp(x_i - max) / sum_j exp(x_j - max)``.

    Parameters
    ----------
    dim : int or None, default None
        Axis to normalise. ``None`` follows PyTorch's legacy implicit choice:
        dim 0 for 0-, 1- or 3-D input, otherwise dim 1.

    Shape: input ``(*)``, output ``(*)``; backward
    ``dx = y * (g - sum(g * y, dim))`` from the cached output.

    Raises
    ------
    TypeError
        If ``dim`` is not an int or None.
    ValueError
        If ``dim`` is out of range for the input.

    Examples
    --------
    >>> import numpy as np
    >>> Softmax(dim=1)(np.zeros((1, 4)))
    array([[0.25, 0.25, 0.25, 0.25]])
    """

    def __init__(self, dim: int | None = None) -> None:
        self.dim = None if dim is None else check_int("Softmax", "dim", dim)
        self._y: Array | None = None
        self._axis = 0

    def _axis_for(self, ndim: int) -> int:
        dim = implicit_softmax_dim(ndim) if self.dim is None else self.dim
        span = max(ndim, 1)  # a 0-d input behaves like one of shape (1,)
        if not -span <= dim < span:
            raise ValueError(
                f"{self!r}: dim out of range for a {ndim}-D input "
                f"(expected in [{-span}, {span - 1}], got {dim})"
            )
        return dim % span

    def forward(self, x: Array, training: bool = False) -> Array:
        check_float_array(self, x)
        self._axis = self._axis_for(x.ndim)
        if x.ndim == 0:
            self._y = F.softmax(x.reshape(1), 0).reshape(())
        else:
            self._y = F.softmax(x, self._axis)
        return self._y

    def backward(self, grad_out: Array) -> Array:
        y = _need_forward(self, self._y)
        if y.ndim == 0:
            return grad_out * 0  # the output is constant 1
        return F.softmax_backward(grad_out, y, self._axis)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._axis_for(len(input_shape))
        return tuple(input_shape)

    def extra_repr(self) -> str:
        return "" if self.dim is None else f"dim={self.dim}"
