"""The array helpers of convnet.backend: layouts of new buffers and window views."""

import itertools
import threading

import numpy as np
import pytest

from convnet.backend import (
    as_strided,
    empty_like_layout,
    release_workspace,
    workspace,
    zeros_like_layout,
)


def _memory_order(a):
    """Axes from the largest stride to the smallest."""
    return sorted(range(a.ndim), key=lambda ax: -a.strides[ax])


@pytest.mark.parametrize("perm", list(itertools.permutations(range(4))))
def test_new_buffers_follow_the_memory_order_of_like(perm):
    base = np.zeros([(2, 3, 4, 5)[p] for p in perm], np.float32)
    like = base.transpose(np.argsort(perm))  # shape (2, 3, 4, 5), memory order perm
    out = empty_like_layout((2, 3, 6, 7), like, np.float64)
    assert out.shape == (2, 3, 6, 7) and out.dtype == np.float64
    assert _memory_order(out) == _memory_order(like) == list(perm)
    assert out.transpose(perm).flags.c_contiguous  # dense, no gaps
    z = zeros_like_layout((2, 3, 6, 7), like)
    assert z.dtype == np.float32 and not z.any() and _memory_order(z) == list(perm)


def test_window_views_read_the_source_and_are_read_only():
    x = np.arange(12, dtype=np.float32)
    v = as_strided(x, (5, 4), (8, 4))  # overlapping windows of 4, step 2
    np.testing.assert_array_equal(v, [x[2 * i : 2 * i + 4] for i in range(5)])
    assert not v.flags.writeable
    with pytest.raises(ValueError):
        v[0, 0] = 1.0
    x[2] = -1.0  # a view, not a copy
    assert v[0, 2] == v[1, 0] == -1.0


def test_window_views_of_a_strided_source():
    x = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]  # not contiguous
    v = as_strided(x, (4, 2), (x.strides[0], x.strides[1]))
    np.testing.assert_array_equal(v, x[:, :2])
    assert not v.flags.writeable


def test_buffers_can_be_views_of_given_memory():
    like = np.zeros((2, 5, 4, 3), np.float32).transpose(0, 3, 1, 2)  # channels-last
    memory = np.empty(2 * 3 * 6 * 7, np.float32)
    out = empty_like_layout((2, 3, 6, 7), like, buffer=memory)
    assert np.shares_memory(out, memory) and _memory_order(out) == _memory_order(like)


def test_workspace_is_reused_and_grows():
    like = np.zeros(1, np.float32)
    release_workspace()
    a = workspace("test", 100, like)
    b = workspace("test", 60, like)
    assert a.shape == (100,) and b.shape == (60,) and np.shares_memory(a, b)
    assert not np.shares_memory(workspace("other", 60, like), b)  # one buffer per name
    assert workspace("test", 60, like, np.float64).dtype == np.float64  # and per dtype
    c = workspace("test", 1000, like)  # larger: a new buffer
    assert c.shape == (1000,) and not np.shares_memory(a, c)
    release_workspace()
    assert not np.shares_memory(workspace("test", 10, like), c)


def test_workspace_is_private_to_each_thread():
    like = np.zeros(1, np.float32)
    mine = workspace("test", 10, like)
    theirs = []
    worker = threading.Thread(target=lambda: theirs.append(workspace("test", 10, like)))
    worker.start()
    worker.join()
    assert not np.shares_memory(mine, theirs[0])
