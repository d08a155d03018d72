"""Layers whose work the engine shares among threads give the one-thread results.

CI pins BLAS (and so the engine) to one thread; these tests ask for two, so
the sliced and blocked paths run whatever the machine's default.
"""

import numpy as np
import pytest

from clearconv import nn
from clearconv.engine import DEFAULT, Tuning
from clearconv.engine import activation as A
from clearconv.engine import linear as L

threadpoolctl = pytest.importorskip("threadpoolctl")  # the cli extra; test installs have it


def _threads(n):
    return threadpoolctl.threadpool_limits(n, user_api="blas")


def _layouts(a):
    """``a`` as it is (NCHW), channels-last and channel-major in memory."""
    return {
        "nchw": a,
        "channels_last": np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),
        "channel_major": np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3),
    }


def test_slices_cover_the_range_once_in_order():
    seen = []
    with _threads(2):
        out = DEFAULT.slices(lambda sl: seen.append(sl) or sl, 10, np.zeros(1), 1 << 30)
    assert out == sorted(out, key=lambda s: s.start) and len(out) == 4
    covered = np.concatenate([np.arange(10)[s] for s in out])
    np.testing.assert_array_equal(covered, np.arange(10))
    with _threads(2):  # too little work to share: one slice, in the caller
        assert DEFAULT.slices(lambda sl: sl, 10, np.zeros(1), 100) == [slice(0, 10)]


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "channel_major"])
def test_relu_in_slices_keeps_values_and_memory_order(layout):
    rng = np.random.default_rng(0)
    x = _layouts(rng.standard_normal((64, 8, 32, 32)).astype(np.float32))[layout]
    g = _layouts(rng.standard_normal(x.shape).astype(np.float32))["channels_last"]
    with _threads(2):
        y = A.relu(x)
        dx = A.relu_backward(g, y)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(dx, g * (x > 0))
    assert y.strides == x.strides and dx.strides == g.strides and y.dtype == np.float32


@pytest.mark.parametrize("bias", [True, False])
def test_linear_in_slices_matches_one_product(bias):
    rng = np.random.default_rng(1)
    layer = nn.Linear(3000, 70, bias=bias, rng=rng)
    x = rng.standard_normal((129, 3000)).astype(np.float32)  # slices of unequal sizes
    g = rng.standard_normal((129, 70)).astype(np.float32)
    with _threads(2):
        y = layer(x, training=True)
        dx = layer.backward(g)
    w = layer.weight.data.astype(np.float64)
    ref = x @ w.T + (layer.bias.data if bias else 0)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, g @ w, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.weight.grad, g.T.astype(np.float64) @ x, rtol=1e-4, atol=1e-3)
    if bias:
        np.testing.assert_allclose(layer.bias.grad, g.sum(0), rtol=1e-4, atol=1e-4)
    with _threads(1):
        np.testing.assert_allclose(
            L.linear(x, layer.weight.data, None),
            y - (layer.bias.data if bias else 0),
            rtol=1e-5,
            atol=1e-5,
        )


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "channel_major"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: nn.MaxPool2d(2),
        lambda: nn.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True),
        lambda: nn.MaxPool2d((2, 3), stride=(1, 2), dilation=(2, 1)),
        lambda: nn.AvgPool2d(2),
        lambda: nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    ],
)
def test_pooling_in_slices_equals_one_thread(layout, make):
    # Each (sample, channel) plane is pooled on its own: slices of the batch or
    # channel axis on two threads give exactly the one-thread results.
    rng = np.random.default_rng(2)
    x = _layouts(rng.standard_normal((64, 8, 33, 32)).astype(np.float32))[layout]
    x[:, :, 4:8, 4:8] = 1.0  # ties: the first maximum must win in every slice
    with _threads(2):
        assert DEFAULT.slice_count(x.shape[0], x, x.size) >= 2  # really shared out
    results = []
    for threads in (1, 2):
        layer = make()
        with _threads(threads):
            y = layer(x, training=True)
            g = np.ones_like(y) * np.arange(y.shape[-1], dtype=np.float32)
            results.append((y, layer.backward(g)))
    (y1, dx1), (y2, dx2) = results
    np.testing.assert_array_equal(y2, y1)
    np.testing.assert_array_equal(dx2, dx1)
    assert y2.strides == y1.strides and dx2.strides == dx1.strides


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_pooling_backward_is_shared_out_by_the_input_gradient_size(pool, monkeypatch):
    # The backward writes the input gradient, k*k times the output gradient:
    # its work is counted by the input's size, so a batch whose output
    # gradient alone is under Tuning.min_parallel_work is still cut into slices
    # (the 4-conv net's first pooling at batch 64 ran on one thread: 1.85 ms,
    # against 1.0-1.1 ms in slices).
    from clearconv.engine import pool as P

    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 16, 32, 32)).astype(np.float32)  # 262,144 values
    g = rng.standard_normal((16, 16, 16, 16)).astype(np.float32)  # 65,536
    eng = DEFAULT.with_tuning(Tuning(min_parallel_work=x.size // 4))
    cuts = []
    real = eng.map
    monkeypatch.setattr(
        eng, "map", lambda fn, items, like: cuts.append(len(items)) or real(fn, items, like)
    )
    with _threads(2):
        if pool == "max":
            _, winners = P.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), (1, 1), False, eng=eng)
            cuts.clear()
            dx = P.max_pool2d_backward(g, winners, x.shape, (2, 2), (2, 2), (0, 0), (1, 1), eng=eng)
        else:
            dx = P.avg_pool2d_backward(g, x.shape, (2, 2), (2, 2), (0, 0), True, eng=eng)
    assert cuts and cuts[0] >= 2, cuts  # shared out
    assert dx.shape == x.shape


@pytest.mark.parametrize("channels", [(8, 16), (16, 40)])  # channel-major or channels-last out
def test_one_image_convolution_in_row_slices_equals_one_thread(channels):
    # A batch of one is one block: its product is shared out in slices of its
    # rows (output positions) instead of blocks of samples.
    rng = np.random.default_rng(3)
    layer = nn.Conv2d(*channels, 3, padding=1, rng=rng)
    x = rng.standard_normal((1, channels[0], 128, 112)).astype(np.float32)
    with _threads(1):
        y1 = layer(x)
    with _threads(2):
        y2 = layer(x)
    np.testing.assert_allclose(y2, y1, rtol=1e-6, atol=1e-6)
    assert y2.strides == y1.strides
    w = layer.weight.data.astype(np.float64)
    np.testing.assert_allclose(
        y2[0, :, 10, 10],
        np.einsum("ocij,cij->o", w, x[0, :, 9:12, 9:12]) + layer.bias.data,
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "channel_major"])
def test_batch_norm_in_batch_slices_matches_one_thread(layout):
    # Statistics and parameter gradients are sums over the batch: taken in
    # slices on two threads, their partial sums added in slice order.
    rng = np.random.default_rng(4)
    x = _layouts((3 + 2 * rng.standard_normal((64, 16, 24, 24))).astype(np.float32))[layout]
    g = rng.standard_normal(x.shape).astype(np.float32)
    results = []
    for threads in (1, 2):
        layer = nn.BatchNorm2d(16)
        layer.weight.data[:] = np.linspace(0.5, 2, 16)
        layer.bias.data[:] = np.linspace(-1, 1, 16)
        with _threads(threads):
            if threads == 2:
                assert DEFAULT.slice_count(x.shape[0], x, x.size) >= 2  # really shared out
            y = layer(x, training=True)
            dx = layer.backward(g)
        results.append(
            (
                y,
                dx,
                layer.weight.grad.copy(),
                layer.bias.grad.copy(),
                layer.running_mean.copy(),
                layer.running_var.copy(),
            )
        )
    for a, b in zip(*results):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=2e-5)
    assert results[1][0].strides == results[0][0].strides
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 2, 3)), x64.var(axis=(0, 2, 3))
    ref = (x64 - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
    ref = ref * np.linspace(0.5, 2, 16)[:, None, None] + np.linspace(-1, 1, 16)[:, None, None]
    np.testing.assert_allclose(results[1][0], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_in_slices_equals_one_thread(amsgrad):
    # Adam is elementwise: a large parameter updated in slices on two threads
    # takes exactly the one-thread values, step after step.
    from clearconv import optim

    rng = np.random.default_rng(5)
    start = rng.standard_normal((700, 900)).astype(np.float32)
    grads = [rng.standard_normal(start.shape).astype(np.float32) for _ in range(3)]
    finals = []
    for threads in (1, 2):
        p = nn.Parameter(start.copy())
        opt = optim.Adam([p], lr=1e-2, amsgrad=amsgrad)
        with _threads(threads):
            if threads == 2:
                assert DEFAULT.slice_count(p.data.size, p.data, 8 * p.data.size) >= 2
            for g in grads:
                p.grad = g.T.copy().T  # a non-contiguous gradient, as a conv's dW can be
                opt.step()
        finals.append(p.data)
    np.testing.assert_array_equal(finals[1], finals[0])
    assert not np.array_equal(finals[0], start)


TUNINGS = [
    Tuning(),
    Tuning(min_parallel_work=1, zero_row_max=0, taps_max=0),  # every cut, no zero row, no taps
    Tuning(min_parallel_work=1 << 40, zero_row_max=64, macs_per_value=1),  # nothing shared
]


@pytest.mark.parametrize("tuning", TUNINGS, ids=["default", "all-cut", "none-cut"])
@pytest.mark.parametrize("threads", [1, 2])
def test_tuning_values_change_no_result(tuning, threads):
    # Each knob picks a way of computing the same values: ReLU against a row
    # of zeros or a scalar, max pooling by taps or separably, slices or none.
    from clearconv.engine import norm as N
    from clearconv.engine import pool as P

    eng = DEFAULT.with_tuning(tuning)
    rng = np.random.default_rng(6)
    x = _layouts(rng.standard_normal((16, 8, 12, 12)).astype(np.float32))["channels_last"]
    g = rng.standard_normal(x.shape).astype(np.float32)
    with _threads(threads):
        y = A.relu(x, eng=eng)
        dx = A.relu_backward(g, y, eng=eng)
        pooled, winners = P.max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), (1, 1), False, eng=eng)
        dpool = P.max_pool2d_backward(
            g[:, :, ::2, ::2], winners, x.shape, (2, 2), (2, 2), (0, 0), (1, 1), eng=eng
        )
        w = rng.standard_normal((5, 12)).astype(np.float32)
        lin = L.linear(x[:, 0, 0], w, None, eng=eng)
        bn, *_ = N.batch_norm_train(x, None, None, 1e-5, eng=eng)
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    np.testing.assert_array_equal(dx, g * (x > 0))
    windows = x.reshape(16, 8, 6, 2, 6, 2)
    np.testing.assert_array_equal(pooled, windows.max(axis=(3, 5)))
    first = windows.transpose(0, 1, 2, 4, 3, 5).reshape(16, 8, 6, 6, 4).argmax(-1)
    routed = np.zeros((16, 8, 6, 6, 4), np.float32)
    np.put_along_axis(routed, first[..., None], g[:, :, ::2, ::2][..., None], axis=-1)
    ref = routed.reshape(16, 8, 6, 6, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(x.shape)
    np.testing.assert_array_equal(dpool, ref)
    np.testing.assert_allclose(lin, x[:, 0, 0].astype(np.float64) @ w.T, rtol=1e-5, atol=1e-5)
    x64 = x.astype(np.float64)
    mean, var = x64.mean(axis=(0, 2, 3), keepdims=True), x64.var(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(bn, (x64 - mean) / np.sqrt(var + 1e-5), rtol=1e-4, atol=1e-4)
