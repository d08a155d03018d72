"""Elementwise activations and softmax: forward and backward on arrays.

Backward functions take what the forward left behind: the output where the
derivative is a function of it (ReLU, sigmoid, tanh, softmax), a boolean mask
otherwise (LeakyReLU, whose slope may be negative or zero).
"""

from __future__ import annotations

import numpy as np

from clearconv.backend import Array, along, memory_order, outer_axis, xp_of
from clearconv.engine.core import DEFAULT, Engine


def relu(x: Array, out: Array | None = None, *, eng: Engine = DEFAULT) -> Array:
    """``max(x, 0)`` elementwise, same dtype and memory order as ``x``.

    Into ``out`` when given (``out=x`` overwrites ``x``: no new array, whose
    first writes cost page faults). Large inputs are done in slices of their
    outermost axis in memory, shared among the engine's threads
    (:meth:`Engine.slices <clearconv.engine.Engine.slices>`).
    """
    xp = xp_of(x)
    if x.ndim == 0:
        return xp.maximum(x, 0, out=out)
    y = eng.empty_like(x.shape, x) if out is None else out  # kept memory (Engine.fresh)
    axis = outer_axis(x)

    def part(sl: slice) -> None:
        i = along(axis, sl)
        _max0(x[i], y[i], eng)

    eng.slices(part, x.shape[axis], x, x.size)
    return y


def _max0(src: Array, dst: Array, eng: Engine) -> None:
    """``dst = max(src, 0)``: against a row of zeros, broadcast, when it can be.

    NumPy's ``maximum`` has no SIMD loop with a scalar operand: one value a
    nanosecond, where two contiguous operands run 3.6x faster (401,408
    float32 values, one thread: 0.149 against 0.041 ms). So when ``src``
    and ``dst`` are dense in the same memory order, both are seen as rows of
    their innermost axes in memory (up to ``Tuning.zero_row_max`` values) and
    compared with one row of zeros broadcast down them: one call, the same
    values (NaN and -0.0 included). Otherwise the scalar form.

    Shape: ``src``, ``dst`` (*), the same.
    """
    xp = xp_of(src)
    if xp is np and src.ndim:
        order = memory_order(src)
        s, d = src.transpose(order), dst.transpose(order)  # axes in memory order: views
        if s.flags.c_contiguous and d.flags.c_contiguous:
            row, most = 1, eng.tuning.zero_row_max
            for size in reversed(s.shape):
                if row * size > most:
                    break
                row *= size
            if row >= 64:  # shorter rows: a call per row costs more than the SIMD saves
                zeros = eng.workspace.zero_row(row, s.dtype)
                np.maximum(s.reshape(-1, row), zeros, out=d.reshape(-1, row))
                return
    xp.maximum(src, 0, out=dst)


def relu_backward(
    grad_out: Array, y: Array, out: Array | None = None, *, eng: Engine = DEFAULT
) -> Array:
    """Input gradient of ReLU from its output ``y``: ``grad_out * (y > 0)``.

    In the memory order of ``grad_out``, in slices as :func:`relu`; into
    ``out`` when given (``out=grad_out`` overwrites the gradient).
    """
    xp = xp_of(grad_out)
    if grad_out.ndim == 0:
        return xp.multiply(grad_out, y > 0, out=out)
    dtype = xp.result_type(grad_out.dtype, bool)
    dx = eng.empty_like(grad_out.shape, grad_out, dtype) if out is None else out
    axis = outer_axis(grad_out)

    def part(sl: slice) -> None:
        i = along(axis, sl)
        # A multiply by the boolean mask is several times faster than np.where here.
        xp.multiply(grad_out[i], y[i] > 0, out=dx[i])

    eng.slices(part, grad_out.shape[axis], grad_out, dx.size)
    return dx


def leaky_relu(
    x: Array, negative_slope: float = 0.01, out: Array | None = None
) -> tuple[Array, Array]:
    """``x if x > 0 else negative_slope * x``; returns ``(y, mask)`` with ``mask = x > 0``.

    Into ``out`` when given (``out=x`` overwrites the input).
    """
    xp = xp_of(x)
    mask = x > 0
    scaled = x * negative_slope
    if out is None:
        return xp.where(mask, x, scaled), mask
    xp.copyto(out, x)
    xp.copyto(out, scaled, where=~mask)
    return out, mask


def leaky_relu_backward(grad_out: Array, mask: Array, negative_slope: float = 0.01) -> Array:
    """Input gradient of LeakyReLU: ``grad_out`` where ``x > 0``, else ``slope * grad_out``."""
    xp = xp_of(grad_out)
    return xp.where(mask, grad_out, grad_out * negative_slope)


def sigmoid(x: Array) -> Array:
    """``1 / (1 + exp(-x))`` without overflow.

    With ``e = exp(-|x|)`` (always in (0, 1]): ``1 / (1 + e)`` for ``x >= 0``
    and ``e / (1 + e)`` for ``x < 0``, so no ``exp`` of a large positive number
    is ever taken (finite and warning-free for ``|x|`` up to the dtype's max).
    """
    xp = xp_of(x)
    e = xp.exp(-xp.abs(x))
    inv = 1 / (1 + e)
    return xp.where(x >= 0, inv, e * inv)


def sigmoid_backward(grad_out: Array, y: Array) -> Array:
    """Input gradient of the sigmoid from its output: ``grad_out * y * (1 - y)``."""
    return grad_out * (y * (1 - y))


def tanh(x: Array) -> Array:
    """Hyperbolic tangent (NumPy's is already overflow-free)."""
    return xp_of(x).tanh(x)


def tanh_backward(grad_out: Array, y: Array) -> Array:
    """Input gradient of tanh from its output: ``grad_out * (1 - y**2)``."""
    return grad_out * (1 - y * y)


def softmax(x: Array, axis: int) -> Array:
    """``exp(x - max) / sum(exp(x - max))`` along ``axis`` (max subtracted for stability)."""
    xp = xp_of(x)
    # Rows spanning float32's whole range (3e38 beside -3e38) overflow to -inf
    # here, which exp maps to the right 0: the warning is expected, not an error.
    with np.errstate(over="ignore"):
        z = x - xp.max(x, axis=axis, keepdims=True)
    e = xp.exp(z, out=z)
    e /= xp.sum(e, axis=axis, keepdims=True)
    return e


def softmax_backward(grad_out: Array, y: Array, axis: int) -> Array:
    """Input gradient of softmax from its output: ``y * (g - sum(g * y, axis))``."""
    xp = xp_of(y)
    return y * (grad_out - xp.sum(grad_out * y, axis=axis, keepdims=True))


def log_softmax(x: Array, axis: int) -> Array:
    """``x - max - log(sum(exp(x - max)))`` along ``axis``: finite for any finite ``x``."""
    xp = xp_of(x)
    with np.errstate(over="ignore"):  # see softmax: -inf is the right log-probability here
        z = x - xp.max(x, axis=axis, keepdims=True)
    return z - xp.log(xp.sum(xp.exp(z), axis=axis, keepdims=True))
