"""PyTorch's default initialisations, with an explicit random generator."""

from __future__ import annotations

import math

import numpy as np


def uniform(
    rng: np.random.Generator, shape: tuple[int, ...], bound: float, dtype: np.dtype
) -> np.ndarray:
    """Samples from U(-bound, bound) of ``shape`` in ``dtype``."""
    return rng.uniform(-bound, bound, size=shape).astype(dtype, copy=False)


def default_weight_bias(
    rng: np.random.Generator,
    weight_shape: tuple[int, ...],
    fan_in: int,
    dtype: np.dtype,
    bias: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """PyTorch's default init of Linear and Conv layers.

    ``kaiming_uniform_(a=sqrt(5))`` on the weight gives U(-b, b) with
    ``b = gain * sqrt(3 / fan_in)``, ``gain = sqrt(2 / (1 + 5)) `` so
    ``b = 1 / sqrt(fan_in)``; the bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    Shape: weight ``weight_shape``; bias ``(weight_shape[0],)``.
    """
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    w = uniform(rng, weight_shape, bound, dtype)
    b = uniform(rng, (weight_shape[0],), bound, dtype) if bias else None
    return w, b
