"""Affine map ``y = x @ W.T + b``: one GEMM for the output and one for each gradient."""

from __future__ import annotations

from convnet.backend import Array, quiet_products


def linear(x: Array, weight: Array, bias: Array | None) -> Array:
    """``x @ weight.T + bias``.

    Shape: ``x`` ``(..., in)``, ``weight`` ``(out, in)``, ``bias`` ``(out,)``;
    output ``(..., out)``.
    """
    with quiet_products():
        y = x @ weight.T
    if bias is not None:
        y += bias
    return y


def linear_backward(
    grad_out: Array, x: Array, weight: Array, need_bias: bool = True
) -> tuple[Array, Array, Array | None]:
    """Gradients ``(dx, dweight, dbias)`` of :func:`linear`.

    Leading dimensions are folded into one: ``(..., in) -> (M, in)`` and
    ``(..., out) -> (M, out)``, so ``dW = g.T @ x`` is a single product.
    ``dbias`` is None when ``need_bias`` is False.
    """
    out_f, in_f = weight.shape
    g2 = grad_out.reshape(-1, out_f)  # (..., out) -> (M, out)
    x2 = x.reshape(-1, in_f)  # (..., in) -> (M, in)
    with quiet_products():
        dx = grad_out @ weight  # (..., out) @ (out, in) -> (..., in)
        dw = g2.T @ x2  # (out, M) @ (M, in) -> (out, in)
    db = g2.sum(axis=0) if need_bias else None
    return dx, dw, db
