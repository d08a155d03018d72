"""Activation layers: ReLU, LeakyReLU, Sigmoid, Tanh, Softmax."""

from __future__ import annotations

from typing import Any

from clearconv import functional as T
from clearconv._validate import check_bool, check_float, check_float_array, check_int
from clearconv.backend import Array
from clearconv.engine import activation as F
from clearconv.engine.plan import Traits
from clearconv.nn.module import Module


def check_writable(owner: object, x: Any) -> None:
    """Require an array that may be written (for ``inplace=True``)."""
    if not getattr(getattr(x, "flags", None), "writeable", True):
        raise ValueError(
            f"{owner} writes its output over its input, which is read-only "
            "(pass a writable array, e.g. x.copy(), or leave inplace=False)"
        )


class ReLU(Module):
    """Rectified linear unit: ``y = max(x, 0)``.

    The gradient at 0 is 0 (as in PyTorch). Backward uses the cached output.

    :class:`~clearconv.nn.Sequential` already runs a ReLU in place where that
    is safe (its planner calls :meth:`forward_in_place` and
    :meth:`backward_in_place` when the layer before made the array and
    dropped it): no new array, so no page faults on its first writes.
    ``ReLU(inplace=True)``, as in PyTorch, asks for it always: the output is
    written over the input, even one the caller holds.

    Parameters
    ----------
    inplace : bool, default False
        Write the output over the input array on every call.

    Shape: input ``(*)``, output ``(*)``, same shape and dtype.

    Raises
    ------
    TypeError
        If ``inplace`` is not a bool or the input not a float32/float64 array.
    ValueError
        If ``inplace`` and the input is read-only.

    Examples
    --------
    >>> import numpy as np
    >>> ReLU()(np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 2.])
    """

    traits = Traits(in_place=True, commutes_with_max_pool=True)
    textbook = False  # True: run on clearconv.functional, never in place (use_textbook)

    def __init__(self, inplace: bool = False) -> None:
        self.inplace = check_bool("ReLU", "inplace", inplace)
        self._y: Array | None = None

    def forward(self, x: Array, training: bool = False) -> Array:
        check_float_array(self, x)
        if self.textbook:
            self._y = T.relu(x)
            return self._y
        if self.inplace:
            check_writable(self, x)
        self._y = F.relu(x, out=x if self.inplace else None)
        return self._y

    def forward_in_place(self, x: Array, training: bool = False) -> Array:
        """:meth:`forward`, written over ``x`` (the planner's call: ``x`` is nobody else's)."""
        if self.textbook:  # the textbook never writes in place
            return self.forward(x, training)
        check_float_array(self, x)
        self._y = F.relu(x, out=x)
        return self._y

    def backward(self, grad_out: Array) -> Array:
        y = self._cached(self._y)
        if self.textbook:  # the output is positive where the input is: either will do
            return T.relu_backward(grad_out, y)
        return F.relu_backward(grad_out, y)

    def backward_in_place(self, grad_out: Array) -> Array:
        """:meth:`backward`, written over ``grad_out`` (the planner's call, as above)."""
        if self.textbook:
            return self.backward(grad_out)
        return F.relu_backward(grad_out, self._cached(self._y), out=grad_out)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """Leaky ReLU: ``y = x`` if ``x > 0`` else ``negative_slope * x``.

    Parameters
    ----------
    negative_slope : float, default 0.01
        Slope for ``x <= 0`` (the gradient at 0 is ``negative_slope``, as in PyTorch).
    inplace : bool, default False
        Write the output over the input array, as PyTorch's ``inplace=True``.

    Shape: input ``(*)``, output ``(*)``.

    Raises
    ------
    TypeError
        If ``negative_slope`` is not a number, ``inplace`` not a bool, or
        the input not a float array.
    ValueError
        If ``inplace`` and the input is read-only.

    Examples
    --------
    >>> import numpy as np
    >>> LeakyReLU(0.1)(np.array([-2.0, 3.0]))
    array([-0.2,  3. ])
    """

    textbook = False  # True: run on clearconv.functional, never in place (use_textbook)

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        self.negative_slope = check_float("LeakyReLU", "negative_slope", negative_slope)
        self.inplace = check_bool("LeakyReLU", "inplace", inplace)
        self._mask: Array | None = None  # the engine's x > 0
        self._x: Array | None = None  # the textbook's input

    def forward(self, x: Array, training: bool = False) -> Array:
        check_float_array(self, x)
        if self.textbook:
            self._mask, self._x = None, x
            return T.leaky_relu(x, self.negative_slope)
        if self.inplace:
            check_writable(self, x)
        y, self._mask = F.leaky_relu(x, self.negative_slope, out=x if self.inplace else None)
        self._x = None
        return y

    def backward(self, grad_out: Array) -> Array:
        if self._x is not None:
            return T.leaky_relu_backward(grad_out, self._x, self.negative_slope)
        mask = self._cached(self._mask)
        return F.leaky_relu_backward(grad_out, mask, self.negative_slope)

    def extra_repr(self) -> str:
        parts = [] if self.negative_slope == 0.01 else [f"negative_slope={self.negative_slope}"]
        return ", ".join(parts + (["inplace=True"] if self.inplace else []))


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

    textbook = False  # True: run on clearconv.functional (clearconv.nn.use_textbook)

    def __init__(self) -> None:
        self._y: Array | None = None

    def forward(self, x: Array, training: bool = False) -> Array:
        check_float_array(self, x)
        self._y = T.sigmoid(x) if self.textbook else F.sigmoid(x)
        return self._y

    def backward(self, grad_out: Array) -> Array:
        y = self._cached(self._y)  # the output, either way
        return (T if self.textbook else F).sigmoid_backward(grad_out, y)


class Tanh(Module):
    """Hyperbolic tangent: ``y = tanh(x)``; backward ``dx = g * (1 - y**2)``.

    Shape: input ``(*)``, output ``(*)``.

    Examples
    --------
    >>> import numpy as np
    >>> Tanh()(np.array([0.0]))
    array([0.])
    """

    textbook = False  # True: run on clearconv.functional (clearconv.nn.use_textbook)

    def __init__(self) -> None:
        self._y: Array | None = None

    def forward(self, x: Array, training: bool = False) -> Array:
        check_float_array(self, x)
        self._y = T.tanh(x) if self.textbook else F.tanh(x)
        return self._y

    def backward(self, grad_out: Array) -> Array:
        y = self._cached(self._y)  # the output, either way
        return (T if self.textbook else F).tanh_backward(grad_out, y)


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

    textbook = False  # True: run on clearconv.functional (clearconv.nn.use_textbook)

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
        softmax = T.softmax if self.textbook else F.softmax
        if x.ndim == 0:
            self._y = softmax(x.reshape(1), 0).reshape(())
        else:
            self._y = softmax(x, self._axis)
        return self._y

    def backward(self, grad_out: Array) -> Array:
        y = self._cached(self._y)
        if y.ndim == 0:
            return grad_out * 0  # the output is constant 1
        return (T if self.textbook else F).softmax_backward(grad_out, y, self._axis)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._axis_for(len(input_shape))
        return tuple(input_shape)

    def extra_repr(self) -> str:
        return "" if self.dim is None else f"dim={self.dim}"
