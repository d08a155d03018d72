"""The engine's state objects: result layouts, the buffer pools, the thread pool.

Each test builds its own pools (or uses the default engine's), so the
limits are explicit :class:`Tuning` values or constructor arguments.
"""

import itertools
import os
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

from clearconv.engine import DEFAULT, Engine, Tuning
from clearconv.engine.memory import ResultPool, Workspace
from clearconv.engine.threads import ThreadPool

TUNING = Tuning()


def _workspace(max_bytes=TUNING.workspace_max_bytes):
    return Workspace(max_bytes)


def _results(max_bytes=TUNING.kept_max_bytes):
    return ResultPool(TUNING.kept_min_bytes, max_bytes)


def _memory_order(a):
    """Axes from the largest stride to the smallest."""
    return sorted(range(a.ndim), key=lambda ax: -a.strides[ax])


@pytest.mark.parametrize("perm", list(itertools.permutations(range(4))))
def test_new_buffers_follow_the_memory_order_of_like(perm):
    base = np.zeros([(2, 3, 4, 5)[p] for p in perm], np.float32)
    like = base.transpose(np.argsort(perm))  # shape (2, 3, 4, 5), memory order perm
    out = DEFAULT.empty_like((2, 3, 6, 7), like, np.float64)
    assert out.shape == (2, 3, 6, 7) and out.dtype == np.float64
    assert _memory_order(out) == _memory_order(like) == list(perm)
    assert out.transpose(perm).flags.c_contiguous  # dense, no gaps
    z = DEFAULT.zeros_like((2, 3, 6, 7), like)
    assert z.dtype == np.float32 and not z.any() and _memory_order(z) == list(perm)


def test_buffers_can_be_views_of_given_memory():
    like = np.zeros((2, 5, 4, 3), np.float32).transpose(0, 3, 1, 2)  # channels-last
    memory = np.empty(2 * 3 * 6 * 7, np.float32)
    out = DEFAULT.empty_like((2, 3, 6, 7), like, buffer=memory)
    assert np.shares_memory(out, memory) and _memory_order(out) == _memory_order(like)


def test_workspace_is_reused_and_grows():
    like = np.zeros(1, np.float32)
    ws = _workspace()
    a = ws.get("test", 100, like)
    b = ws.get("test", 60, like)
    assert a.shape == (100,) and b.shape == (60,) and np.shares_memory(a, b)
    assert not np.shares_memory(ws.get("other", 60, like), b)  # one buffer per name
    assert ws.get("test", 60, like, np.float64).dtype == np.float64  # and per dtype
    c = ws.get("test", 1000, like)  # larger: a new buffer
    assert c.shape == (1000,) and not np.shares_memory(a, c)
    ws.release()
    assert not np.shares_memory(ws.get("test", 10, like), c)


def test_workspace_does_not_keep_huge_buffers():
    like = np.zeros(1, np.float32)
    ws = _workspace(max_bytes=400)
    kept = ws.get("test", 100, like)  # 400 bytes: kept
    assert np.shares_memory(kept, ws.get("test", 100, like))
    big = ws.get("test", 101, like)  # 404 bytes: made for this call only
    assert not np.shares_memory(big, ws.get("test", 101, like))
    assert np.shares_memory(kept, ws.get("test", 50, like))  # the kept one stays


def test_workspace_is_private_to_each_thread():
    like = np.zeros(1, np.float32)
    ws = _workspace()
    mine = ws.get("test", 10, like)
    theirs = []
    worker = threading.Thread(target=lambda: theirs.append(ws.get("test", 10, like)))
    worker.start()
    worker.join()
    assert not np.shares_memory(mine, theirs[0])


# -- kept results (fresh) -------------------------------------------------------

BIG = (64, 1024)  # 256 KiB of float32: above Tuning.kept_min_bytes


def test_fresh_memory_is_reused_only_once_nothing_refers_to_it():
    like = np.zeros(1, np.float32)
    pool = _results()
    a = pool.fresh(BIG, np.float32, like)
    assert a.shape == BIG and a.dtype == np.float32 and a.flags.c_contiguous
    b = pool.fresh(BIG, np.float32, like)
    assert not np.shares_memory(a, b)  # a is held: not handed out again
    a_address = a.__array_interface__["data"][0]
    del a
    c = pool.fresh(BIG, np.float32, like)
    assert c.__array_interface__["data"][0] == a_address  # its memory, back in use
    del b, c


@pytest.mark.parametrize(
    "hold",
    [
        lambda a: a[3:],  # a view
        lambda a: a.T.reshape(-1)[::2],  # a view of a view
        lambda a: memoryview(a),  # a buffer export
        lambda a: np.frombuffer(a.data, np.uint8),  # an array over its buffer
        lambda a: a.view(np.int32).reshape(-1),  # another dtype's view
    ],
)
def test_fresh_memory_is_not_reused_while_something_holds_part_of_it(hold):
    like = np.zeros(1, np.float32)
    pool = _results()
    a = pool.fresh(BIG, np.float32, like)
    a[...] = 7.0
    held = hold(a)
    del a
    for _ in range(3):  # other results of the same size get other memory
        b = pool.fresh(BIG, np.float32, like)
        assert not np.shares_memory(b, np.asarray(held))
        b[...] = -1.0
    assert (np.asarray(held).view(np.float32) == 7.0).all()  # never written


def test_fresh_leaves_small_results_to_the_allocator_and_serves_any_dtype():
    like = np.zeros(1, np.float32)
    pool = _results()
    assert pool.fresh((10,), np.float64, like).dtype == np.float64
    assert not pool.kept  # under kept_min_bytes: nothing kept
    a = pool.fresh(BIG, np.float32, like)
    del a
    b = pool.fresh((BIG[0], BIG[1] // 2), np.float64, like)  # the same bytes as another dtype
    assert b.dtype == np.float64 and b.shape == (BIG[0], BIG[1] // 2) and len(pool.kept) == 1
    b[...] = 1.5
    assert (b == 1.5).all()


def test_fresh_keeps_at_most_kept_max_bytes():
    like = np.zeros(1, np.float32)
    pool = _results(max_bytes=3 * 256 * 1024)
    held = [pool.fresh(BIG, np.float32, like) for _ in range(3)]  # fills the room
    extra = pool.fresh(BIG, np.float32, like)  # no room: made for this call, not kept
    assert pool.kept_bytes() == 3 * 256 * 1024
    del held, extra
    other = pool.fresh((32, 1024), np.float32, like)  # another size: free ones make room
    assert pool.kept_bytes() <= 3 * 256 * 1024
    assert any(b for n, b in pool.kept.items() if n == other.nbytes)
    pool.release()
    assert not pool.kept


def test_fresh_hands_each_buffer_to_one_thread_at_a_time():
    like = np.zeros(1, np.float32)
    pool = _results()
    got: list = []

    def take():
        for _ in range(50):
            got.append(pool.fresh(BIG, np.float32, like))  # all held: none may repeat

    workers = [threading.Thread(target=take) for _ in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    addresses = [a.__array_interface__["data"][0] for a in got]
    assert len(set(addresses)) == len(addresses) == 200
    pool.release()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_is_not_stuck_on_the_kept_results_lock():
    # A helper thread may hold the lock when the process forks; the child
    # gets a new lock and keeps results of its own.
    like = np.zeros(1, np.float32)
    pool = _results()
    held = pool.fresh(BIG, np.float32, like)
    pool.lock.acquire()  # as if a helper were inside fresh() at the fork
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # the child: must not block, and starts with nothing kept
            code = 1
            try:
                fresh_ok = not pool.kept
                a = pool.fresh(BIG, np.float32, like)
                code = 0 if fresh_ok and not np.shares_memory(a, held) else 2
            finally:
                os._exit(code)
    finally:
        pool.lock.release()
    _child_succeeds(pid, "the forked child blocked in fresh()")


# -- the engine's threads ------------------------------------------------------

try:  # the cli extra; the engine shares no work without it (a test below says so)
    import threadpoolctl
except ImportError:  # pragma: no cover - test installs have it
    threadpoolctl = None
needs_threadpoolctl = pytest.mark.skipif(threadpoolctl is None, reason="needs threadpoolctl")


def _blas_threads():
    """BLAS's thread count as the engine reads it (a new threadpoolctl controller would
    probe BLAS from a thread of its own and take control of it away from this one)."""
    return DEFAULT.pool.blas().num_threads


@needs_threadpoolctl
def test_engine_holds_blas_at_one_thread_and_gives_its_threads_back():
    like = np.zeros(1, np.float32)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        assert DEFAULT.threads_for(like) == 2
        with DEFAULT:
            assert _blas_threads() == 1 and DEFAULT.threads_for(like) == 2
            with DEFAULT:  # re-entrant: only the outermost entry acts
                assert _blas_threads() == 1
            assert _blas_threads() == 1
        assert _blas_threads() == 2
        with pytest.raises(RuntimeError), DEFAULT:
            raise RuntimeError("boom")
        assert _blas_threads() == 2  # given back on an exception too


@needs_threadpoolctl
def test_engine_map_shares_items_among_threads_in_order():
    like = np.zeros(1, np.float32)
    # Items 0 and 1 wait for each other: each thread takes the next item when
    # it is free, so they run at once in two threads (in one, the wait breaks).
    both = threading.Barrier(2, timeout=30)

    def item(i):
        if i < 2:
            both.wait()
        return i * i, threading.get_ident(), _blas_threads(), np.geterr()["invalid"]

    with threadpoolctl.threadpool_limits(2, user_api="blas"), np.errstate(invalid="ignore"):
        out = DEFAULT.map(item, range(12), like)
        assert _blas_threads() == 2
    assert [r[0] for r in out] == [i * i for i in range(12)]
    assert len({r[1] for r in out}) == 2  # the caller and one helper
    assert {r[2] for r in out} == {1}  # each item's products on one core
    assert {r[3] for r in out} == {"ignore"}  # the caller's error state in every thread


@needs_threadpoolctl
def test_engine_map_runs_in_the_caller_with_one_thread_or_nested():
    like = np.zeros(1, np.float32)
    me = threading.get_ident()
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert DEFAULT.map(lambda i: threading.get_ident(), range(4), like) == [me] * 4
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        inner = DEFAULT.map(
            lambda i: {t for t in DEFAULT.map(lambda j: threading.get_ident(), range(3), like)},
            range(4),
            like,
        )
    assert all(len(s) == 1 for s in inner)  # a section inside a section runs in one thread


@needs_threadpoolctl
def test_engine_map_raises_an_items_error_and_gives_blas_back():
    like = np.zeros(1, np.float32)

    def item(i):
        time.sleep(0.002)
        if i == 5:
            raise ValueError("item 5")
        return i

    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with pytest.raises(ValueError, match="item 5"):
            DEFAULT.map(item, range(10), like)
        assert _blas_threads() == 2


@needs_threadpoolctl
def test_an_engine_with_its_own_thread_count_ignores_blas_count():
    # Engine(threads=2) shares work between two threads even with BLAS at one.
    like = np.zeros(1, np.float32)
    eng = Engine(threads=2)
    both = threading.Barrier(2, timeout=30)  # items 0 and 1 meet: two threads, not timing

    def item(i):
        if i < 2:
            both.wait()
        return threading.get_ident(), _blas_threads()

    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert eng.threads_for(like) == 2 and DEFAULT.threads_for(like) == 1
        out = eng.map(item, range(12), like)
    assert len({r[0] for r in out}) == 2 and {r[1] for r in out} == {1}


@needs_threadpoolctl
@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_forked_child_makes_new_helper_threads():
    # The parent's helpers do not exist in a child: its first map must not
    # wait for them forever.
    like = np.zeros(1, np.float32)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        DEFAULT.map(lambda i: time.sleep(0.002), range(4), like)  # the helpers exist
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:
            code = 1
            try:
                both = threading.Barrier(2, timeout=10)  # items 0 and 1 meet in two threads
                idents = DEFAULT.map(
                    lambda i: (i >= 2 or both.wait() is None) and threading.get_ident(),
                    range(8),
                    like,
                )
                code = 0 if len(set(idents)) == 2 else 2
            finally:
                os._exit(code)
    _child_succeeds(pid, "the forked child waited for its parent's helper threads")


def test_tuning_is_validated_and_shared_engines_share_threads():
    with pytest.raises(ValueError, match=r"Tuning: block_bytes must be an int >= 0, got -1"):
        Tuning(block_bytes=-1)
    with pytest.raises(ValueError, match=r"Tuning: taps_max must be an int >= 0, got 2.5"):
        Tuning(taps_max=2.5)
    with pytest.raises(TypeError, match=r"Engine: tuning must be a Tuning, got dict"):
        Engine(tuning={"block_bytes": 1})
    with pytest.raises(ValueError, match=r"ThreadPool: threads must be a positive int or None"):
        ThreadPool(0)
    eng = DEFAULT.with_tuning(Tuning(workspace_max_bytes=400, kept_max_bytes=1 << 20))
    assert eng.pool is DEFAULT.pool and eng.tuning.workspace_max_bytes == 400
    assert eng.workspace is not DEFAULT.workspace and eng.workspace.max_bytes == 400
    assert eng.results.max_bytes == 1 << 20


@needs_threadpoolctl
def test_the_engine_finds_numpys_blas_when_scipy_brought_its_own():
    # SciPy's wheels load a second OpenBLAS; the engine must still hold NumPy's
    # (it once saw two BLAS libraries, gave up, and ran every layer on one thread).
    pytest.importorskip("scipy")
    code = (
        "import scipy.signal, numpy as np\n"
        "from clearconv.engine import DEFAULT\n"
        "from threadpoolctl import threadpool_limits\n"
        "blas = DEFAULT.pool.blas()\n"
        "with threadpool_limits(2, user_api='blas'):\n"
        "    print(blas is not None and 'numpy' in str(blas.filepath),"
        " DEFAULT.threads_for(np.zeros(1)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "2"]


def _child_succeeds(pid: int, failure: str) -> None:
    """Wait up to 20 s for a forked child to exit 0; kill it and fail with ``failure``
    if it hangs (a fork that inherits a held lock or absent threads waits forever)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(failure)
