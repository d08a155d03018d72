"""The one place that knows NumPy from CuPy, and that controls BLAS threads.

Every array function in convnet asks :func:`xp_of` for the array module of its
input, so the same code runs on NumPy arrays (CPU) and CuPy arrays (GPU).
"""

from __future__ import annotations

import contextlib
import threading
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


def empty_like_layout(
    shape: tuple[int, ...], like: Array, dtype: Any = None, buffer: Array | None = None
) -> Array:
    """An uninitialised array of ``shape`` whose memory order of axes follows ``like``.

    The engine hands NCHW arrays from layer to layer whatever their memory
    order (a convolution's output is stored as its matrix product writes it:
    channels-last, "NHWC", or channel-major, "CNHW"). Buffers for results are
    laid out like their inputs so that elementwise work runs over memory in
    order and no layer pays for a transposing copy. ``like`` must have as many axes as ``shape``.
    With ``buffer`` (1-D, as many values as ``shape`` holds, of ``dtype``) the
    array is a view of that memory instead of a new allocation.
    """
    xp = xp_of(like)
    dtype = like.dtype if dtype is None else dtype
    # Axes from the largest stride to the smallest (ties keep their order).
    order = sorted(range(like.ndim), key=lambda a: -abs(like.strides[a]))
    stored = [shape[a] for a in order]
    out = xp.empty(stored, dtype=dtype) if buffer is None else buffer.reshape(stored)
    if order == list(range(like.ndim)):
        return out
    inverse = [0] * like.ndim
    for position, axis in enumerate(order):
        inverse[axis] = position
    return out.transpose(inverse)


def zeros_like_layout(shape: tuple[int, ...], like: Array, dtype: Any = None) -> Array:
    """As :func:`empty_like_layout`, filled with zeros."""
    out = empty_like_layout(shape, like, dtype)
    out[...] = 0
    return out


_WORKSPACE = threading.local()  # per thread: {(name, device, dtype): 1-D buffer}


def workspace(name: str, size: int, like: Array, dtype: Any = None) -> Array:
    """A 1-D work buffer of ``size`` values, reused by later calls in this thread.

    For scratch memory that a function fills and reads before it returns and
    never hands out (the convolution's gathered fields, a padded copy of its
    input). Asking a fresh ``empty`` for it on every call costs more than the
    work on a machine where freed memory goes back to the system: each call
    faults its pages in again (LeNet-5 training at batch 128 took 13-14 ms a
    step without page faults and 17-40 ms with its 2,000). One buffer per
    ``name``, per thread (so threads may share layers) and per device and
    dtype; it grows to the largest size asked for and is kept until
    :func:`release_workspace`. Two buffers in use at once need two names.
    """
    xp = xp_of(like)
    dtype = np.dtype(like.dtype if dtype is None else dtype)
    pool = _WORKSPACE.__dict__.setdefault("buffers", {})
    key = (name, str(getattr(like, "device", "cpu")), dtype.str)
    buf = pool.get(key)
    if buf is None or buf.size < size:
        pool[key] = buf = None  # drop the old one before the new one is allocated
        pool[key] = buf = xp.empty(size, dtype=dtype)
    return buf[:size]


def release_workspace() -> None:
    """Free this thread's work buffers (:func:`workspace`); later calls make new ones."""
    _WORKSPACE.__dict__.pop("buffers", None)


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
