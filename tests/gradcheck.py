"""Finite-difference gradient checks for layers and losses (float64).

``check_layer(layer, x)`` compares, for a random projection ``L = sum(r * y)``
of the layer's output, the analytic gradients from ``layer.backward(r)`` (input
and every parameter) with central differences of ``L``.
"""

from __future__ import annotations

import numpy as np


def numerical_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function ``f()`` with respect to ``x`` (in place)."""
    g = np.zeros_like(x)
    flat = x.reshape(-1)
    gflat = g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def check_layer(layer, x: np.ndarray, training: bool = True, seed: int = 0, rtol=1e-5, atol=1e-7):
    """Assert that ``layer``'s backward matches finite differences for ``x`` and parameters.

    The layer and ``x`` must be float64. Returns the analytic input gradient.
    """
    assert x.dtype == np.float64
    for p in layer.parameters():
        assert p.data.dtype == np.float64, "gradient checks run in float64"
    rng = np.random.default_rng(seed)
    y = layer.forward(x, training=training)
    r = rng.standard_normal(y.shape)

    def loss() -> float:
        return float(np.sum(layer.forward(x, training=training) * r))

    for p in layer.parameters():
        p.grad = None
    layer.forward(x, training=training)
    dx = layer.backward(r.copy())
    assert dx.shape == x.shape
    assert dx.dtype == x.dtype
    np.testing.assert_allclose(dx, numerical_grad(loss, x), rtol=rtol, atol=atol)
    for name, p in layer.named_parameters():
        analytic = p.grad.copy()
        numeric = numerical_grad(loss, p.data)
        np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol, err_msg=name)
    return dx
