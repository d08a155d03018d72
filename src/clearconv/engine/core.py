"""The :class:`Engine`: the tuning, the threads and the buffer pools, in one object.

Every engine function takes an ``eng`` argument (keyword, last), by default
:data:`DEFAULT`, the one engine the layers and containers use; tests and
experiments pass their own (``DEFAULT.with_tuning(Tuning(...))``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from clearconv.backend import Array, memory_order
from clearconv.engine.memory import ResultPool, Workspace
from clearconv.engine.threads import ThreadPool
from clearconv.engine.tuning import Tuning


class Engine:
    """Where the engine's state lives: its :class:`Tuning`, threads and buffer pools.

    Entered as a context (``with eng:``, re-entrant) it holds BLAS at one
    thread and shares blocks of work among its own threads
    (:class:`~clearconv.engine.threads.ThreadPool`); the containers hold it
    around a whole forward or backward pass.

    Parameters
    ----------
    threads : int or None, default None
        Threads to share work among; None: as many as NumPy's BLAS pool has
        when the engine is entered.
    tuning : Tuning, optional
        The speed settings (:class:`Tuning`'s defaults when not given).
    pool : ThreadPool, optional
        Share another engine's threads (then ``threads`` is not used).

    Attributes
    ----------
    tuning : Tuning
    pool : ThreadPool
        The helper threads and the hold on BLAS.
    workspace : Workspace
        Per-thread scratch buffers (:meth:`scratch`).
    results : ResultPool
        Memory of dropped results (:meth:`fresh`).

    Examples
    --------
    >>> import numpy as np
    >>> eng = Engine(threads=1, tuning=Tuning(block_bytes=1 << 20))
    >>> eng.tuning.block_bytes, eng.map(lambda i: i * i, [1, 2, 3], np.zeros(1))
    (1048576, [1, 4, 9])
    """

    # Bound methods of the pools, set per instance so that a hot path's call
    # costs one attribute lookup, as the module functions they replace did.
    map: Callable[[Callable[[Any], Any], Sequence[Any], Array], list[Any]]
    threads_for: Callable[[Array], int]
    scratch: Callable[..., Array]
    fresh: Callable[[tuple[int, ...], Any, Array], Array]

    def __init__(
        self,
        threads: int | None = None,
        tuning: Tuning | None = None,
        *,
        pool: ThreadPool | None = None,
    ) -> None:
        if tuning is not None and not isinstance(tuning, Tuning):
            raise TypeError(f"Engine: tuning must be a Tuning, got {type(tuning).__name__}")
        self.tuning = Tuning() if tuning is None else tuning
        self.pool = ThreadPool(threads) if pool is None else pool
        self.workspace = Workspace(self.tuning.workspace_max_bytes)
        self.results = ResultPool(self.tuning.kept_min_bytes, self.tuning.kept_max_bytes)
        self.map = self.pool.map
        self.threads_for = self.pool.count
        self.scratch = self.workspace.get
        self.fresh = self.results.fresh

    def with_tuning(self, tuning: Tuning) -> Engine:
        """An engine with ``tuning``, sharing this one's threads (new buffer pools)."""
        return Engine(tuning=tuning, pool=self.pool)

    def __enter__(self) -> Engine:
        self.pool.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.__exit__(*exc)

    def release(self) -> None:
        """Free this thread's scratch buffers and every kept result's memory."""
        self.workspace.release()
        self.results.release()

    # -- sharing work ------------------------------------------------------
    def slice_count(self, length: int, like: Array, work: int) -> int:
        """How many slices :meth:`slices` cuts ``range(length)`` into (1: no cut).

        Two per thread, and none under ``tuning.min_parallel_work`` of
        ``work`` (values or multiply-adds in all).
        """
        per = self.tuning.min_parallel_work
        return max(1, min(length, 2 * self.pool.count(like), work // per))

    def slices(self, fn: Callable[[slice], Any], length: int, like: Array, work: int) -> list[Any]:
        """``fn(slice)`` over a few slices that cover ``range(length)``, via :meth:`map`.

        For elementwise work along one axis (a layer's outermost axis in
        memory, :func:`clearconv.backend.outer_axis`). Results in slice order.
        """
        pieces = self.slice_count(length, like, work)
        if pieces < 2:
            return [fn(slice(0, length))]
        bounds = [length * i // pieces for i in range(pieces + 1)]
        return self.map(lambda i: fn(slice(bounds[i], bounds[i + 1])), range(pieces), like)

    # -- memory ------------------------------------------------------------
    def empty_like(
        self, shape: tuple[int, ...], like: Array, dtype: Any = None, buffer: Array | None = None
    ) -> Array:
        """An uninitialised array of ``shape`` whose memory order of axes follows ``like``.

        The engine hands NCHW arrays from layer to layer whatever their memory
        order (a convolution's output is stored as its matrix product writes
        it: channels-last, "NHWC", or channel-major, "CNHW"). Buffers for
        results are laid out like their inputs so that elementwise work runs
        over memory in order and no layer pays for a transposing copy.
        ``like`` must have as many axes as ``shape``. With ``buffer`` (1-D,
        as many values as ``shape`` holds, of ``dtype``) the array is a view
        of that memory; otherwise it is made by :meth:`fresh`.
        """
        dtype = like.dtype if dtype is None else dtype
        order = memory_order(like)
        stored = [shape[a] for a in order]
        out = self.fresh(tuple(stored), dtype, like) if buffer is None else buffer.reshape(stored)
        if order == list(range(like.ndim)):
            return out
        inverse = [0] * like.ndim
        for position, axis in enumerate(order):
            inverse[axis] = position
        return out.transpose(inverse)

    def zeros_like(self, shape: tuple[int, ...], like: Array, dtype: Any = None) -> Array:
        """As :meth:`empty_like`, filled with zeros."""
        out = self.empty_like(shape, like, dtype)
        out[...] = 0
        return out


#: The engine the layers and containers use.
DEFAULT = Engine()
