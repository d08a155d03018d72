"""Affine map ``y = x @ W.T + b``: one GEMM for the output and one for each gradient.

Large products are done in slices shared among the engine's threads
(:meth:`Engine.slices <clearconv.engine.Engine.slices>`), each slice's product on one core,
each slice writing its own part of the result (no partial sums).
"""

from __future__ import annotations

from clearconv.backend import Array, quiet_products, xp_of
from clearconv.engine.core import DEFAULT, Engine


def linear(x: Array, weight: Array, bias: Array | None, *, eng: Engine = DEFAULT) -> Array:
    """``x @ weight.T + bias``.

    Shared among the engine's threads in slices of the rows of ``y`` (the
    samples) or, when there are fewer samples than outputs, of its columns.

    Shape: ``x`` ``(..., in)``, ``weight`` ``(out, in)``, ``bias`` ``(out,)``;
    output ``(..., out)``.
    """
    xp = xp_of(x)
    out_f, in_f = weight.shape
    x2 = x.reshape(-1, in_f)  # (..., in) -> (M, in)
    m = x2.shape[0]
    y = xp.empty((m, out_f), dtype=xp.result_type(x, weight))
    by_rows = m > out_f

    def part(sl: slice) -> None:
        rows, cols = (sl, slice(None)) if by_rows else (slice(None), sl)
        with quiet_products():
            xp.matmul(x2[rows], weight[cols].T, out=y[rows, cols])
        if bias is not None:
            y[rows, cols] += bias[cols]

    eng.slices(part, m if by_rows else out_f, x, m * in_f * out_f // eng.tuning.macs_per_value)
    return y.reshape(*x.shape[:-1], out_f)


def linear_backward(
    grad_out: Array, x: Array, weight: Array, need_bias: bool = True, *, eng: Engine = DEFAULT
) -> tuple[Array, Array, Array | None]:
    """Gradients ``(dx, dweight, dbias)`` of :func:`linear`.

    Leading dimensions are folded into one: ``(..., in) -> (M, in)`` and
    ``(..., out) -> (M, out)``, so ``dW = g.T @ x`` is a single product.
    Shared among the engine's threads in slices of the input features: slice
    ``i`` makes columns ``i`` of ``dx`` and of ``dW``, so no slice adds into
    another's result. ``dbias`` is None when ``need_bias`` is False.
    """
    xp = xp_of(grad_out)
    out_f, in_f = weight.shape
    g2 = grad_out.reshape(-1, out_f)  # (..., out) -> (M, out)
    x2 = x.reshape(-1, in_f)  # (..., in) -> (M, in)
    m = g2.shape[0]
    dx = xp.empty((m, in_f), dtype=xp.result_type(grad_out, weight))
    dw = xp.empty((out_f, in_f), dtype=xp.result_type(grad_out, x))

    def part(c: slice) -> None:
        with quiet_products():
            xp.matmul(g2, weight[:, c], out=dx[:, c])  # (M, out) @ (out, in_c) -> (M, in_c)
            xp.matmul(g2.T, x2[:, c], out=dw[:, c])  # (out, M) @ (M, in_c) -> (out, in_c)

    eng.slices(part, in_f, grad_out, 2 * m * out_f * in_f // eng.tuning.macs_per_value)
    db = g2.sum(axis=0) if need_bias else None
    return dx.reshape(*grad_out.shape[:-1], in_f), dw, db
