"""Affine map ``y = x @ W.T + b``: one GEMM for the output and one for each gradient.

Large products are done in slices of the rows (the samples), shared among
the engine's threads (:func:`convnet.backend.parallel_slices`), each slice's
product on one core: ``y`` and ``dx`` slice by slice, ``dW`` as a sum of the
slices' products taken in slice order, the same whichever thread made each.
"""

from __future__ import annotations

from convnet.backend import MACS_PER_VALUE, Array, parallel_slices, quiet_products, xp_of


def linear(x: Array, weight: Array, bias: Array | None) -> Array:
    """``x @ weight.T + bias``.

    Shape: ``x`` ``(..., in)``, ``weight`` ``(out, in)``, ``bias`` ``(out,)``;
    output ``(..., out)``.
    """
    xp = xp_of(x)
    out_f, in_f = weight.shape
    x2 = x.reshape(-1, in_f)  # (..., in) -> (M, in)
    y = xp.empty((x2.shape[0], out_f), dtype=xp.result_type(x, weight))

    def rows(sl: slice) -> None:
        with quiet_products():
            xp.matmul(x2[sl], weight.T, out=y[sl])
        if bias is not None:
            y[sl] += bias

    parallel_slices(rows, x2.shape[0], x, x2.size * out_f // MACS_PER_VALUE)
    return y.reshape(*x.shape[:-1], out_f)


def linear_backward(
    grad_out: Array, x: Array, weight: Array, need_bias: bool = True
) -> tuple[Array, Array, Array | None]:
    """Gradients ``(dx, dweight, dbias)`` of :func:`linear`.

    Leading dimensions are folded into one: ``(..., in) -> (M, in)`` and
    ``(..., out) -> (M, out)``, so ``dW = g.T @ x`` is a single product (a
    sum of products over slices of the ``M`` rows).
    ``dbias`` is None when ``need_bias`` is False.
    """
    xp = xp_of(grad_out)
    out_f, in_f = weight.shape
    g2 = grad_out.reshape(-1, out_f)  # (..., out) -> (M, out)
    x2 = x.reshape(-1, in_f)  # (..., in) -> (M, in)
    dx = xp.empty((g2.shape[0], in_f), dtype=xp.result_type(grad_out, weight))

    def rows(sl: slice) -> Array:
        with quiet_products():
            xp.matmul(g2[sl], weight, out=dx[sl])  # (m, out) @ (out, in) -> (m, in)
            return g2[sl].T @ x2[sl]  # (out, m) @ (m, in) -> (out, in)

    macs = 2 * g2.shape[0] * out_f * in_f
    parts = parallel_slices(rows, g2.shape[0], grad_out, macs // MACS_PER_VALUE)
    dw = parts[0]
    for part in parts[1:]:  # in slice order
        dw += part
    db = g2.sum(axis=0) if need_bias else None
    return dx.reshape(*grad_out.shape[:-1], in_f), dw, db
