"""The engine's threads: a layer's independent blocks of work shared among helpers.

A :class:`ThreadPool` shares blocks of a layer's work (samples, rows, planes)
among as many threads as NumPy's BLAS pool has (or as it is told), with BLAS
held at one thread meanwhile, so each block's products run on one core.
Setting BLAS's threads needs ``threadpoolctl`` (the ``cli`` extra); without
it the pool keeps to the calling thread and BLAS threads its products
itself.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from clearconv.backend import Array, xp_of
from clearconv.engine.fork import reset_after_fork


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


def _find_blas() -> Any:
    """threadpoolctl's controller of NumPy's BLAS; None without threadpoolctl, or when
    NumPy's cannot be told apart from others.

    Other packages load BLAS libraries of their own (SciPy's wheels bring a second
    OpenBLAS): NumPy's is the one shipped in NumPy's folder (``numpy.libs`` on
    Linux, ``numpy/.dylibs`` on macOS), or else the only one loaded.
    """
    try:
        from threadpoolctl import ThreadpoolController

        found = ThreadpoolController().select(user_api="blas").lib_controllers
    except Exception:  # not installed, or a BLAS it cannot read
        found = []
    home = os.path.dirname(os.path.dirname(np.__file__))  # site-packages (or the like)
    numpy_own = [
        c for c in found if os.path.relpath(str(c.filepath), home).split(os.sep)[0]
        in ("numpy.libs", "numpy")
    ]  # fmt: skip
    if len(numpy_own) == 1:
        return numpy_own[0]
    return found[0] if len(found) == 1 else None


class ThreadPool:
    """Helper threads fed through queues, and the hold on BLAS's threads.

    Entered as a context (re-entrant; only the outermost entry in a thread
    acts), it sets NumPy's BLAS to one thread and makes BLAS's former count
    the pool's: :meth:`map` shares items among that many threads, each
    running its products on one core; on exit BLAS gets its count back. The
    containers hold it around a whole forward or backward pass, so no
    product in between wakes BLAS's own threads, whose busy-waiting after
    each product took a core from the pool's threads (the 4-conv net's
    training step at batch 64 took 111 ms that way against 82 ms with BLAS
    alone). Does nothing without ``threadpoolctl`` or when another Python
    thread controls BLAS's threads (both leave the pool one thread).

    Helpers are plain threads fed through ``queue.SimpleQueue``: a hand-over
    took 19 us here, against 69 us for ``concurrent.futures.ThreadPoolExecutor``
    with ``contextvars.copy_context`` timed beside it, and 40-50 us while the
    hypervisor was slow to wake threads (a batch-1 layer's product takes
    50-200 us). Polling for a while before sleeping gained nothing. They are
    made on first use and live as long as the process; a forked child makes
    new ones when asked.

    Parameters
    ----------
    threads : int or None, default None
        Threads to share work among; None: as many as BLAS's pool has on
        entry (its default, ``OPENBLAS_NUM_THREADS``, or a ``threadpoolctl``
        limit such as the CLI's ``--threads``).

    Attributes
    ----------
    local : threading.local
        Per thread: ``depth`` (entries held), ``saved`` (the thread count
        taken on entry), ``section`` (inside an item of :meth:`map`).
    """

    def __init__(self, threads: int | None = None) -> None:
        if threads is not None and (
            not isinstance(threads, int) or isinstance(threads, bool) or threads < 1
        ):
            raise ValueError(f"ThreadPool: threads must be a positive int or None, got {threads!r}")
        self.threads = threads
        self.local = threading.local()
        self._blas: list[Any] = []  # [] before the first look; then [controller] or [None]
        self._helpers: list[queue.SimpleQueue] = []  # one task queue per helper thread
        self._lock = threading.Lock()
        reset_after_fork(self)

    def blas(self) -> Any:
        """threadpoolctl's controller of NumPy's BLAS (looked up once), or None."""
        if not self._blas:
            self._blas.append(_find_blas())
        return self._blas[0]

    def __enter__(self) -> ThreadPool:
        state = self.local
        depth = getattr(state, "depth", 0)
        state.depth = depth + 1
        if depth == 0:
            blas = self.blas()
            restore = blas.num_threads if blas is not None else 1
            held = blas is not None
            if restore > 1:
                blas.set_num_threads(1)
                if blas.num_threads != 1:  # another thread controls BLAS: leave it be
                    restore, held = 1, False
            state.restore = restore  # BLAS's count on entry, given back on exit
            state.saved = (restore if self.threads is None else self.threads) if held else 1
        return self

    def __exit__(self, *exc: object) -> None:
        state = self.local
        state.depth -= 1
        if state.depth == 0 and state.restore > 1:
            self.blas().set_num_threads(state.restore)

    def count(self, like: Array) -> int:
        """How many threads :meth:`map` would share ``like``'s work among."""
        state = self.local
        if xp_of(like) is not np or getattr(state, "section", False):
            return 1
        if getattr(state, "depth", 0):
            return state.saved
        blas = self.blas()
        if blas is None:
            return 1
        return max(1, blas.num_threads) if self.threads is None else self.threads

    def _helper_queues(self, n: int) -> list[queue.SimpleQueue]:
        """The task queues of ``n`` helper threads, kept for the life of the process."""
        with self._lock:
            while len(self._helpers) < n:
                tasks: queue.SimpleQueue = queue.SimpleQueue()
                threading.Thread(
                    target=_helper, args=(tasks,), name="clearconv", daemon=True
                ).start()
                self._helpers.append(tasks)
            return self._helpers[:n]

    def _after_fork(self) -> None:
        # The helper threads are gone in a forked child: make new ones when asked.
        self._helpers = []
        self._lock = threading.Lock()

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any], like: Array) -> list[Any]:
        """``[fn(item) for item in items]``, the items shared out among the threads.

        Each thread takes the next item as soon as it is free and runs its
        products on one core, so a block of the batch is gathered and
        multiplied on one core, and a core that the machine slows down takes
        fewer blocks. On this project's 2-core virtual machine, OpenBLAS
        splitting each block's product over its two threads ran the 4-conv
        net's second convolution (batch 128) in 19 ms, or 51 ms for long
        stretches when the hypervisor delayed its threads' wake-ups; blocks
        shared this way ran in 14-16 ms throughout.

        ``fn`` must write only to memory no other item writes; results come
        back in the order of ``items`` whichever thread made them, so sums
        over them do not depend on the scheduling. Runs the items in order in
        the calling thread when the pool has one thread, there are fewer
        than two items, ``like`` is a CuPy array, or an item of a map already
        runs in this thread. The caller's NumPy error state (e.g.
        :func:`clearconv.backend.quiet_products`) holds in every thread.
        """
        with self:
            threads = min(self.count(like), len(items))
            if threads < 2:
                return [fn(item) for item in items]
            results: list[Any] = [None] * len(items)
            order = iter(range(len(items)))
            take = threading.Lock()
            failed: list[bool] = []  # set when an item raises: the others stop taking items
            local = self.local

            def work() -> None:
                local.section = True
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
                    local.section = False

            errstate = np.geterr()  # the caller's, for the helpers (each thread has its own)

            def helper_work() -> None:
                with np.errstate(**errstate):
                    work()

            done: queue.SimpleQueue = queue.SimpleQueue()
            helpers = self._helper_queues(threads - 1)
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


def sum_in_order(parts: Sequence[Array]) -> Array:
    """``parts[0] + parts[1] + ...``, added in that order into ``parts[0]``.

    For per-piece partial sums from :meth:`ThreadPool.map`: the same total
    whichever thread made each piece.
    """
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total
