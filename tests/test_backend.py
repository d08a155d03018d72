"""The array helpers of clearconv.backend: window views."""

import numpy as np
import pytest

from clearconv.backend import as_strided


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
