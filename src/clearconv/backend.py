"""The one place that knows NumPy from CuPy.

Every array function in clearconv asks :func:`xp_of` for the array module of its
input, so the same code runs on NumPy arrays (CPU) and CuPy arrays (GPU). The
rest are small facts about arrays and their libraries: window views
(:func:`as_strided`), the order of axes in memory (:func:`memory_order`,
:func:`outer_axis`), host copies (:func:`to_numpy`) and BLAS's thread count
(:func:`blas_threads`). What exists for speed (threads, buffer pools, tuning)
is the engine's: :mod:`clearconv.engine`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

try:  # CuPy is optional: only present on machines with an NVIDIA GPU.
    import cupy as _cupy  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the machine
    _cupy = None

Array = Any  # numpy.ndarray or cupy.ndarray


def xp_of(x: Array) -> Any:
    """Return the array module (``numpy`` or ``cupy``) that owns ``x``."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy
    return np


def quiet_products() -> contextlib.AbstractContextManager[Any]:
    """A context in which matrix products do not warn "invalid value encountered in matmul".

    OpenBLAS's small-matrix kernels can raise the FE_INVALID flag on finite
    inputs (stale vector lanes: numpy#24067, OpenBLAS#1924), and NumPy then
    warns at random, depending on what ran before. Only that flag is silenced,
    and only around the engine's products: a NaN or infinity that a product
    makes still reaches its output (and the training loop stops on a
    non-finite loss). A fresh context per call, so threads may share layers.
    """
    return np.errstate(invalid="ignore")


def as_strided(x: Array, shape: tuple[int, ...], strides: tuple[int, ...]) -> Array:
    """A read-only strided view of ``x`` (windows without copying)."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)
    if x.flags.c_contiguous:  # a direct view of its memory: 1.4 against 5.7 us
        view = np.ndarray(shape, x.dtype, buffer=x, strides=strides)  # checks the bounds
        view.flags.writeable = False
        return view
    return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)


def memory_order(a: Array) -> list[int]:
    """The axes of ``a`` from the largest stride to the smallest (ties keep their order).

    ``a.transpose(memory_order(a))`` lists its axes as they lie in memory.
    """
    return sorted(range(a.ndim), key=lambda ax: -abs(a.strides[ax]))


def outer_axis(a: Array) -> int:
    """The axis of ``a`` with the largest stride: slices along it are contiguous blocks."""
    return max(range(a.ndim), key=lambda ax: abs(a.strides[ax])) if a.ndim else 0


def along(axis: int, sl: slice) -> tuple[slice, ...]:
    """An index taking ``sl`` of axis ``axis`` and all of the axes before it."""
    return (slice(None),) * axis + (sl,)


def to_numpy(x: Array) -> np.ndarray:
    """Copy ``x`` to host memory as a NumPy array (no copy when it is one)."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy.asnumpy(x)
    return np.asarray(x)


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Limit the BLAS thread pool to ``n`` threads inside the block.

    Multi-threaded BLAS on tall, thin products can be far slower than one
    thread when another process competes for the cores, so the CLI and the
    benchmarks pin the count. Uses ``threadpoolctl`` when it is installed (the
    ``cli`` extra); without it the block runs with the default pool.
    ``n=None`` leaves the pool as it is.
    """
    if n is None:
        yield
        return
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"blas_threads expected a positive int, got {n!r}")
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n, user_api="blas"):
        yield
