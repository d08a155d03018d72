"""The one place that knows NumPy from CuPy, and that controls threads.

Every array function in clearconv asks :func:`xp_of` for the array module of its
input, so the same code runs on NumPy arrays (CPU) and CuPy arrays (GPU).

Threads: the engine shares a layer's independent blocks of work (samples,
rows, planes) among as many threads as NumPy's BLAS pool has, with BLAS held
at one thread meanwhile (:class:`engine`, :func:`parallel_map`,
:func:`parallel_slices`), and keeps per-thread scratch memory
(:func:`workspace`) and the memory of dropped results for the next ones
(:func:`fresh`). Both need only the standard library; setting BLAS's
threads needs ``threadpoolctl`` (the ``cli`` extra), without which the
engine keeps to the calling thread and BLAS threads its products itself.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
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
    array is a view of that memory instead of a new allocation. A new one
    is made by :func:`fresh` (memory of a dropped result, reused).
    """
    dtype = like.dtype if dtype is None else dtype
    order = memory_order(like)
    stored = [shape[a] for a in order]
    out = fresh(tuple(stored), dtype, like) if buffer is None else buffer.reshape(stored)
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


#: Work buffers larger than this are made for each call and not kept.
WORKSPACE_MAX_BYTES = 64 << 20


def workspace(name: str, size: int, like: Array, dtype: Any = None) -> Array:
    """A 1-D work buffer of ``size`` values, reused by later calls in this thread.

    For scratch memory that a function fills and reads before it returns and
    never hands out (the convolution's gathered fields, a padded copy of its
    input). A fresh ``empty`` on every call faults its pages in again: 871
    faults per LeNet-5 training step at batch 128 fell to 226 with these
    buffers, and the step ran 1.15-1.23x faster. One buffer per ``name``, per
    thread (so threads may share layers) and per device and dtype; it grows
    to the largest size asked for, up to :data:`WORKSPACE_MAX_BYTES` (larger
    ones are made for the call and not kept, so one huge batch does not pin
    its memory), and is kept until :func:`release_workspace`. Two buffers in
    use at once need two names.
    """
    xp = xp_of(like)
    dtype = np.dtype(like.dtype if dtype is None else dtype)
    if size * dtype.itemsize > WORKSPACE_MAX_BYTES:
        return xp.empty(size, dtype=dtype)
    pool = _WORKSPACE.__dict__.setdefault("buffers", {})
    key = (name, str(getattr(like, "device", "cpu")), dtype.str)
    buf = pool.get(key)
    if buf is None or buf.size < size:
        pool[key] = buf = None  # drop the old one before the new one is allocated
        pool[key] = buf = xp.empty(size, dtype=dtype)
    return buf[:size]


def release_workspace() -> None:
    """Free this thread's work buffers (:func:`workspace`) and the kept results (:func:`fresh`)."""
    _WORKSPACE.__dict__.pop("buffers", None)
    with _KEPT_LOCK:
        _KEPT.clear()


#: Results smaller than this are left to the allocator, which reuses them well.
KEPT_MIN_BYTES = 1 << 17

#: Memory that :func:`fresh` keeps for later results, in all, at most.
KEPT_MAX_BYTES = 256 << 20

_KEPT: dict[int, list[Any]] = {}  # nbytes -> 1-D uint8 buffers, in use or free
_KEPT_LOCK = threading.Lock()
# CPython counts references; without that (PyPy, free-threaded builds) nothing is kept.
_COUNTS = hasattr(sys, "getrefcount") and getattr(sys, "_is_gil_enabled", lambda: True)()


def fresh(shape: tuple[int, ...], dtype: Any, like: Array) -> Array:
    """An uninitialised C-order array of ``shape``, in memory reused from an earlier result.

    A layer's results (outputs, input gradients) are made anew on every call
    and dropped a call later; the C library's allocator returns such large
    blocks to the system and faults their pages in again on the next call
    (2.3 us a page on this machine: 150-440 faults per LeNet-5 training step
    at batch 64, 1,700-1,850 for the 4-conv net). So the memory of a result
    of at least :data:`KEPT_MIN_BYTES` is kept, and handed out again only
    once nothing refers to it any more: no array, view or buffer export
    (CPython's reference count of the kept buffer is back to the cache's
    own), so an array a caller still holds is never written. At most
    :data:`KEPT_MAX_BYTES` are kept; free buffers of other sizes are dropped
    to make room. :func:`release_workspace` drops them all.
    """
    xp = xp_of(like)
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize  # math.prod: 0.06 us; np.prod: 3 us
    if nbytes < KEPT_MIN_BYTES or xp is not np or not _COUNTS:
        return xp.empty(shape, dtype=dtype)
    with _KEPT_LOCK:
        buf = _free_kept(nbytes)
    return buf.view(dtype).reshape(shape)


def _free_kept(nbytes: int) -> Any:
    """A kept buffer of ``nbytes`` that nothing refers to, or a new one (kept when room is left)."""
    bucket = _KEPT.setdefault(nbytes, [])
    for i in range(len(bucket)):
        if sys.getrefcount(bucket[i]) == 2:  # the list's reference and the argument's
            return bucket[i]
    buf = np.empty(nbytes, dtype=np.uint8)
    kept = sum(len(b) * n for n, b in _KEPT.items())
    for n, b in list(_KEPT.items()):  # make room: drop free buffers of other sizes
        if kept + nbytes <= KEPT_MAX_BYTES:
            break
        if n != nbytes:
            free = [j for j in range(len(b)) if sys.getrefcount(b[j]) == 2]
            for j in reversed(free):
                del b[j]
                kept -= n
    if kept + nbytes <= KEPT_MAX_BYTES:
        bucket.append(buf)
    elif not bucket:
        del _KEPT[nbytes]
    return buf


_BLAS: list[Any] = []  # [] before the first look; then [controller] or [None]
_HELPERS: list[queue.SimpleQueue] = []  # one task queue per helper thread, made on first use
_HELPERS_LOCK = threading.Lock()


def _blas() -> Any:
    """threadpoolctl's controller of NumPy's BLAS; None without threadpoolctl or one BLAS."""
    if not _BLAS:
        try:
            from threadpoolctl import ThreadpoolController

            found = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:  # not installed, or a BLAS it cannot read
            found = []
        _BLAS.append(found[0] if len(found) == 1 else None)
    return _BLAS[0]


def _helper(tasks: queue.SimpleQueue) -> None:
    """A helper thread's life: run each ``(work, done)`` task and say so on ``done``."""
    while True:
        work, done = tasks.get()
        try:
            work()
        except BaseException as e:  # handed to the caller, which raises it
            done.put(e)
        else:
            done.put(None)


def _helpers(n: int) -> list[queue.SimpleQueue]:
    """The task queues of ``n`` helper threads, kept for the life of the process.

    Plain threads fed through ``queue.SimpleQueue``: a hand-over took 19 us
    here, against 69 us for ``concurrent.futures.ThreadPoolExecutor`` with
    ``contextvars.copy_context`` timed beside it, and 40-50 us while the
    hypervisor was slow to wake threads (a batch-1 layer's product takes
    50-200 us). Polling for a while before sleeping gained nothing.
    """
    with _HELPERS_LOCK:
        while len(_HELPERS) < n:
            tasks: queue.SimpleQueue = queue.SimpleQueue()
            threading.Thread(target=_helper, args=(tasks,), name="clearconv", daemon=True).start()
            _HELPERS.append(tasks)
        return _HELPERS[:n]


def _forget_helpers() -> None:
    """In a forked child the helper threads are gone: make new ones when asked.

    The kept results' lock may have been held by one of them: a new lock,
    and nothing kept (the child starts its own).
    """
    global _KEPT_LOCK
    _HELPERS.clear()
    _KEPT_LOCK = threading.Lock()
    _KEPT.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_forget_helpers)


class engine:
    """A context in which the engine, not BLAS, shares work among the threads.

    On entry NumPy's BLAS is set to one thread and its former count becomes
    the engine's: :func:`parallel_map` shares blocks of a layer's work among
    that many threads, each running its products on one core; on exit BLAS
    gets its count back. Re-entrant (only the outermost entry in a thread
    acts); the containers hold it around a whole forward or backward pass, so
    no product in between wakes BLAS's own threads, whose busy-waiting after
    each product took a core from the engine's threads (the 4-conv net's
    training step at batch 64 took 111 ms that way against 82 ms with BLAS
    alone). Does nothing without ``threadpoolctl`` or when another Python
    thread controls BLAS's threads (both leave the engine one thread).
    """

    def __enter__(self) -> engine:
        state = _STATE
        depth = getattr(state, "depth", 0)
        state.depth = depth + 1
        if depth == 0:
            blas = _blas()
            saved = blas.num_threads if blas is not None else 1
            if saved > 1:
                blas.set_num_threads(1)
                if blas.num_threads != 1:  # another thread controls BLAS: leave it be
                    saved = 1
            state.saved = saved  # BLAS's count on entry: the engine's threads
        return self

    def __exit__(self, *exc: object) -> None:
        state = _STATE
        state.depth -= 1
        if state.depth == 0 and state.saved > 1:
            _blas().set_num_threads(state.saved)


_STATE = threading.local()  # .depth, .saved: this thread's engine; .section: in a section


def engine_threads(like: Array) -> int:
    """How many threads :func:`parallel_map` would share ``like``'s work among."""
    if xp_of(like) is not np or getattr(_STATE, "section", False):
        return 1
    if getattr(_STATE, "depth", 0):
        return _STATE.saved
    blas = _blas()
    return max(1, blas.num_threads) if blas is not None else 1


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], like: Array) -> list[Any]:
    """``[fn(item) for item in items]``, the items shared out among the engine's threads.

    The engine's threads are as many as NumPy's BLAS pool had on entering
    :class:`engine` (entered here when it is not held already): its default,
    ``OPENBLAS_NUM_THREADS``, or a ``threadpoolctl`` limit such as the CLI's
    ``--threads``. Each thread takes the next item as soon as it is free and
    runs its products on one core, so a block of the batch is gathered and
    multiplied on one core, and a core that the machine slows down takes
    fewer blocks. A hand-over costs 20-50 us (:func:`_helpers`). On this
    project's 2-core virtual machine, OpenBLAS splitting each block's product
    over its two threads ran the 4-conv net's second convolution (batch 128)
    in 19 ms, or 51 ms for long stretches when the hypervisor delayed its
    threads' wake-ups; blocks shared this way ran in 14-16 ms throughout.

    ``fn`` must write only to memory no other item writes; results come back
    in the order of ``items`` whichever thread made them, so sums over them
    do not depend on the scheduling. Runs the items in order in the calling
    thread when the engine has one thread, there are fewer than two items,
    ``like`` is a CuPy array, or a section already runs in this thread. The
    caller's NumPy error state (e.g. :func:`quiet_products`) holds in every
    thread.
    """
    with engine():
        threads = min(engine_threads(like), len(items))
        if threads < 2:
            return [fn(item) for item in items]
        results: list[Any] = [None] * len(items)
        order = iter(range(len(items)))
        take = threading.Lock()
        failed: list[bool] = []  # set when an item raises: the others stop taking items

        def work() -> None:
            _STATE.section = True
            try:
                while not failed:
                    with take:
                        i = next(order, None)
                    if i is None:
                        return
                    try:
                        results[i] = fn(items[i])
                    except BaseException:
                        failed.append(True)
                        raise
            finally:
                _STATE.section = False

        errstate = np.geterr()  # the caller's, for the helpers (each thread has its own)

        def helper_work() -> None:
            with np.errstate(**errstate):
                work()

        done: queue.SimpleQueue = queue.SimpleQueue()
        helpers = _helpers(threads - 1)
        for tasks in helpers:
            tasks.put((helper_work, done))
        try:
            work()
        finally:
            errors = [done.get() for _ in helpers]  # every helper done before we go on
        for error in errors:
            if error is not None:
                raise error
        return results


#: A multiply-add in a matrix product costs about this many times less than a
#: value of elementwise work (the unit of :func:`parallel_slices`'s ``work``).
MACS_PER_VALUE = 16

#: Values (or multiply-adds) below which :func:`parallel_slices` keeps work in one thread:
#: handing a chunk to another thread costs tens of microseconds.
MIN_PARALLEL_WORK = 1 << 18


def outer_axis(a: Array) -> int:
    """The axis of ``a`` with the largest stride: slices along it are contiguous blocks."""
    return max(range(a.ndim), key=lambda ax: abs(a.strides[ax])) if a.ndim else 0


def along(axis: int, sl: slice) -> tuple[slice, ...]:
    """An index taking ``sl`` of axis ``axis`` and all of the axes before it."""
    return (slice(None),) * axis + (sl,)


def slice_count(length: int, like: Array, work: int) -> int:
    """How many slices :func:`parallel_slices` cuts ``range(length)`` into (1: no cut)."""
    return max(1, min(length, 2 * engine_threads(like), work // MIN_PARALLEL_WORK))


def parallel_slices(fn: Callable[[slice], Any], length: int, like: Array, work: int) -> list[Any]:
    """``fn(slice)`` over a few slices that cover ``range(length)``, via :func:`parallel_map`.

    For elementwise work along one axis (a layer's outermost axis in memory,
    :func:`outer_axis`): two slices per engine thread, or one slice for all
    when ``work`` (values or multiply-adds in all) is under
    :data:`MIN_PARALLEL_WORK` per slice. Results in slice order.
    """
    pieces = slice_count(length, like, work)
    if pieces < 2:
        return [fn(slice(0, length))]
    bounds = [length * i // pieces for i in range(pieces + 1)]
    return parallel_map(lambda i: fn(slice(bounds[i], bounds[i + 1])), range(pieces), like)


def sum_in_order(parts: Sequence[Array]) -> Array:
    """``parts[0] + parts[1] + ...``, added in that order into ``parts[0]``.

    For per-piece partial sums from :func:`parallel_map`: the same total
    whichever thread made each piece.
    """
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


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
