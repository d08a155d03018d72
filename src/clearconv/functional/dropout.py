"""Inverted dropout, with the random generator passed in (no global random state)."""

from __future__ import annotations

import numpy as np


def dropout_mask(shape, p, rng, dtype=np.float32):
    """The scaled mask ``m / (1 - p)``, ``m`` 0 with probability ``p`` and 1 otherwise.

    Drawn as ``rng.random(shape) >= p``. Shape: ``shape``.

    >>> dropout_mask((6,), 0.5, np.random.default_rng(0)).tolist()
    [2.0, 2.0, 2.0, 0.0, 0.0, 0.0]
    """
    keep = rng.random(shape, dtype=dtype) >= p
    return keep * np.asarray(1.0 / (1.0 - p), dtype=dtype)


def dropout(input, p=0.5, training=True, rng=None):
    """Zero each value with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    As ``torch.nn.functional.dropout``, but the random numbers come from
    ``rng`` (a ``numpy.random.Generator``, needed in training): ``y = x * mask``
    (:func:`dropout_mask`); the identity when not ``training``. Backward:
    ``dx = dy * mask``, the same mask. Shape: any, kept.

    >>> dropout(np.ones(6), 0.5, rng=np.random.default_rng(0)).tolist()
    [2.0, 0.0, 0.0, 0.0, 2.0, 2.0]
    """
    if not training or p == 0.0:
        return input
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"dropout: training needs rng, a numpy.random.Generator, got {rng!r}")
    return input * dropout_mask(input.shape, p, rng, input.dtype)
