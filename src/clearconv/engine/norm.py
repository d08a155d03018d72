"""Batch normalisation: forward in training and eval mode, and the backward pass.

Channels are axis 1; statistics reduce over every other axis: ``(0,)`` for
``(N, C)``, ``(0, 2)`` for ``(N, C, L)``, ``(0, 2, 3)`` for ``(N, C, H, W)``.
Per-channel arrays ``(C,)`` are broadcast as ``(1, C, 1, ...)``.
"""

from __future__ import annotations

from clearconv.backend import Array, xp_of
from clearconv.engine.core import DEFAULT, Engine
from clearconv.engine.threads import sum_in_order


def reduce_axes(ndim: int) -> tuple[int, ...]:
    """The axes batch norm reduces over for an input of rank ``ndim`` (all but 1)."""
    return (0, *range(2, ndim))


def channel_dot(a: Array, b: Array) -> Array:
    """Per-channel ``sum(a * b)`` over every axis but 1, with no temporary product.

    ``einsum`` fuses the multiply into the sum: about half the time of
    ``(a * b).sum(axes)`` on a batch of feature maps, in one pass over memory.
    Shape: (N, C, ...) twice -> (C,).
    """
    xp = xp_of(a)
    idx = "nc" + "hwd"[: a.ndim - 2]
    return xp.einsum(f"{idx},{idx}->c", a, b)


def _bcast(v: Array, ndim: int) -> Array:
    """``(C,) -> (1, C, 1, ...)`` so it broadcasts against a rank-``ndim`` input."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def _in_batch_slices(fn, x: Array, eng: Engine) -> list:
    """``fn(slice)`` over slices of the batch axis, shared among the engine's threads."""
    return eng.slices(fn, x.shape[0], x, x.size)


def batch_stats(x: Array, *, eng: Engine = DEFAULT) -> tuple[Array, Array, Array]:
    """Per-channel ``(mean, biased variance, centred x)``; one reduction each.

    The variance is the mean of the squared centred values (not
    ``E[x^2] - E[x]^2``, which cancels badly in float32). Large batches are
    reduced in slices of the batch (:meth:`Engine.slices <clearconv.engine.Engine.slices>`),
    whose partial sums are added in slice order.
    """
    xp = xp_of(x)
    axes = reduce_axes(x.ndim)
    m = x.size // x.shape[1]
    mean = sum_in_order(_in_batch_slices(lambda sl: xp.sum(x[sl], axis=axes), x, eng)) / m
    mean = mean.astype(x.dtype, copy=False)
    xc = eng.empty_like(x.shape, x)  # the memory order of x; kept memory (Engine.fresh)

    def centre(sl: slice) -> Array:  # (C,): this slice's sum of squares
        xp.subtract(x[sl], _bcast(mean, x.ndim), out=xc[sl])
        return channel_dot(xc[sl], xc[sl])

    var = sum_in_order(_in_batch_slices(centre, x, eng)) / m
    return mean, var, xc


def batch_norm_train(
    x: Array, weight: Array | None, bias: Array | None, eps: float, *, eng: Engine = DEFAULT
) -> tuple[Array, Array, Array, Array, Array]:
    """Normalise with the batch's own statistics.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` with the biased
    variance, made as ``xc * (inv_std * weight) + bias`` from the centred
    ``xc``: ``xhat = xc * inv_std`` is never written out (one pass over the
    maps fewer). Returns ``(y, xc, inv_std, mean, var)``; ``xc`` and
    ``inv_std`` ``(C,)`` are what :func:`batch_norm_backward` needs.
    """
    xp = xp_of(x)
    mean, var, xc = batch_stats(x, eng=eng)
    inv_std = 1 / xp.sqrt(var + eps)
    scale = inv_std if weight is None else inv_std * weight
    y = eng.empty_like(x.shape, x)
    _in_batch_slices(lambda sl: _affine(xc[sl], scale, bias, eng, out=y[sl]), x, eng)
    return y, xc, inv_std, mean, var


def batch_norm_eval(
    x: Array,
    running_mean: Array,
    running_var: Array,
    weight: Array | None,
    bias: Array | None,
    eps: float,
    *,
    eng: Engine = DEFAULT,
) -> tuple[Array, Array, Array]:
    """Normalise with fixed statistics: an affine map of ``x``.

    Returns ``(y, xc, inv_std)`` with ``xc = x - running_mean`` and
    ``inv_std = 1 / sqrt(running_var + eps)``, as :func:`batch_norm_train`.
    """
    xp = xp_of(x)
    inv_std = 1 / xp.sqrt(running_var.astype(x.dtype, copy=False) + eps)
    xc = eng.empty_like(x.shape, x)
    xp.subtract(x, _bcast(running_mean.astype(x.dtype, copy=False), x.ndim), out=xc)
    scale = inv_std if weight is None else inv_std * weight
    return _affine(xc, scale, bias, eng), xc, inv_std


def _affine(
    a: Array, scale: Array, bias: Array | None, eng: Engine, out: Array | None = None
) -> Array:
    """``a * scale + bias`` per channel, into ``out`` when given."""
    xp = xp_of(a)
    if out is None:
        out = eng.empty_like(a.shape, a)
    xp.multiply(a, _bcast(scale, a.ndim), out=out)
    if bias is not None:
        out += _bcast(bias, a.ndim)
    return out


def batch_norm_backward(
    grad_out: Array,
    xc: Array,
    inv_std: Array,
    weight: Array | None,
    training: bool,
    *,
    eng: Engine = DEFAULT,
) -> tuple[Array, Array, Array]:
    """Gradients ``(dx, dweight, dbias)`` from the forward's ``xc`` and ``inv_std``.

    With ``xhat = xc * inv_std``: ``dbias = sum(g)``, ``dweight = sum(g *
    xhat)`` over the reduced axes (``inv_std * sum(g * xc)``: ``xhat`` is
    not made). With ``dxhat = g * weight`` and ``M`` values per channel:

    - training (statistics depend on x):
      ``dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))``;
    - eval (fixed statistics): ``dx = inv_std * dxhat``.

    In slices of the batch as the forward pass: the sums first, then ``dx``.
    """
    xp = xp_of(grad_out)
    nd = grad_out.ndim
    axes = reduce_axes(nd)

    def sums(sl: slice) -> tuple[Array, Array]:
        return xp.sum(grad_out[sl], axis=axes), channel_dot(grad_out[sl], xc[sl])

    parts = _in_batch_slices(sums, grad_out, eng)
    dbias = sum_in_order([p[0] for p in parts])
    dweight = sum_in_order([p[1] for p in parts]) * inv_std
    scale = inv_std if weight is None else inv_std * weight
    if not training:
        return grad_out * _bcast(scale, nd), dweight, dbias
    m = grad_out.size // grad_out.shape[1]
    # mean(dxhat) = weight * dbias / M and mean(dxhat * xhat) = weight * dweight / M,
    # so the sums already taken for the parameter gradients serve dx as well;
    # xhat * mean(..) is xc * (inv_std * dweight / M).
    shift, slope = _bcast(dbias / m, nd), _bcast(dweight * inv_std / m, nd)
    dx = eng.empty_like(grad_out.shape, grad_out, xp.result_type(grad_out, xc))

    def input_grad(sl: slice) -> None:
        d = dx[sl]
        xp.multiply(xc[sl], slope, out=d)
        xp.subtract(grad_out[sl], d, out=d)
        d -= shift
        d *= _bcast(scale, nd)

    _in_batch_slices(input_grad, grad_out, eng)
    return dx, dweight, dbias
