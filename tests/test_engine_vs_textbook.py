"""The engine equals the textbook: every function, forward and backward, float64 and float32.

The engine (clearconv.engine, fast) and the textbook (clearconv.functional,
readable) are run on the same arrays over shapes drawn by hypothesis. Where
the engine's own signature is simple it is called directly (convolution with
tiny cache blocks and channels-last inputs, to reach every path); elsewhere
through its layer, once on the engine and once switched to the textbook
(``layer.textbook = True``) with the same weights and random generator.
float64 agrees to 1e-10, float32 to its rounding.
"""

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import clearconv.functional as T
from clearconv import nn
from clearconv.engine import DEFAULT, Tuning
from clearconv.engine import activation as EA
from clearconv.engine import conv as EC
from clearconv.engine import grouped as EG

DTYPES = [np.float64, np.float32]


def _close(a, b, dtype):
    """Equal to rounding: 1e-10 in float64, float32's epsilon times a few hundred otherwise."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    assert a.dtype == b.dtype == dtype
    tol = 1e-10 if dtype == np.float64 else 2e-5
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale)


def _channels_last(x):
    """The same values, stored (N, H, W, C): how a wide convolution hands on its output."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _both_ways(layer, x, training=True, seed=1):
    """Forward and backward on the engine, then on the textbook, from the same state.

    Returns ``(engine, textbook)``, each ``(y, dx, {param name: grad}, layer)``.
    """
    runs = []
    for textbook in (False, True):
        m = copy.deepcopy(layer)  # same weights, buffers and generator state
        nn.use_textbook(m, textbook)
        y = m(x.copy(), training=training)
        g = np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
        dx = m.backward(g)
        runs.append((y, dx, {k: p.grad for k, p in m.named_parameters()}, m))
    return runs


def _assert_same(layer, x, training=True):
    (y, dx, grads, m), (y2, dx2, grads2, m2) = _both_ways(layer, x, training)
    dt = x.dtype
    _close(y, y2, dt)
    _close(dx, dx2, dt)
    for k in grads:
        _close(grads[k], grads2[k], grads[k].dtype)
    return m, m2


# -- convolution, engine functions called directly -----------------------------------


@st.composite
def conv_cases(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    cg = draw(st.integers(1, 3))
    og = draw(st.sampled_from([1, 2, 3, 33]))  # 33: the engine's channels-last results
    if groups > 1:
        og = min(og, 3)
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    same = s == (1, 1) and draw(st.booleans())
    p = "same" if same else (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    pads = T.conv_padding(p, k, d)
    hw = tuple(
        draw(st.integers(max(1, dd * (kk - 1) + 1 - sum(pp)), 9)) for kk, dd, pp in zip(k, d, pads)
    )
    return dict(
        n=draw(st.integers(1, 4)),
        groups=groups,
        cg=cg,
        og=og,
        k=k,
        s=s,
        p=p,
        d=d,
        hw=hw,
        bias=draw(st.booleans()),
        channels_last=draw(st.booleans()),
        block_bytes=draw(st.sampled_from([Tuning().block_bytes, 64])),  # 64: a block per sample
        dtype=draw(st.sampled_from(DTYPES)),
    )


@settings(max_examples=80, deadline=None)
@given(conv_cases())
def test_conv2d_engine_equals_textbook(case):
    dt, g = case["dtype"], case["groups"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((case["n"], g * case["cg"], *case["hw"])).astype(dt)
    if case["channels_last"]:
        x = _channels_last(x)
    w = rng.standard_normal((g * case["og"], case["cg"], *case["k"])).astype(dt)
    b = rng.standard_normal(w.shape[0]).astype(dt) if case["bias"] else None
    s, p, d = case["s"], case["p"], case["d"]
    pads = T.conv_padding(p, case["k"], d)
    want = T.conv2d(x, w, b, s, p, d, g)
    dy = rng.standard_normal(want.shape).astype(dt)
    dx_t, dw_t, db_t = T.conv2d_backward(dy, x, w, s, p, d, g)
    if g == 1:
        eng = DEFAULT.with_tuning(Tuning(block_bytes=case["block_bytes"]))
        y = EC.conv2d_forward(x, w, b, s, pads, d, eng=eng)
        dx, dw, db = EC.conv2d_backward(dy, x, w, s, pads, d, b is not None, True, eng=eng)
    else:
        y = EG.conv2d_forward(x, w, b, s, pads, d, g)
        dx, dw, db = EG.conv2d_backward(dy, x, w, s, pads, d, g, b is not None)
    _close(y, want, dt)
    _close(dx, dx_t, dt)
    _close(dw, dw_t, dt)
    if b is not None:
        _close(db, db_t, dt)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 3),
    st.sampled_from([1, 2]),
    st.integers(1, 5),
    st.integers(1, 3),
    st.integers(0, 2),
    st.integers(1, 2),
    st.integers(5, 12),
    st.sampled_from(DTYPES),
)
def test_conv1d_layer_engine_equals_textbook(n, groups, k, s, p, d, length, dt):
    layer = nn.Conv1d(
        2 * groups, 2 * groups, k, s, p, d, groups, rng=np.random.default_rng(0), dtype=dt
    )
    x = np.random.default_rng(1).standard_normal((n, 2 * groups, length)).astype(dt)
    if length + 2 * p >= d * (k - 1) + 1:
        _assert_same(layer, x)


@pytest.mark.parametrize("dt", DTYPES)
def test_conv2d_layer_engine_equals_textbook_with_same_padding_and_depthwise(dt):
    x = np.random.default_rng(1).standard_normal((3, 4, 9, 8)).astype(dt)
    for layer in (
        nn.Conv2d(
            4, 6, (4, 3), padding="same", dilation=(1, 2), rng=np.random.default_rng(0), dtype=dt
        ),
        nn.Conv2d(
            4,
            8,
            3,
            stride=2,
            padding=1,
            groups=4,
            bias=False,
            rng=np.random.default_rng(0),
            dtype=dt,
        ),
    ):
        _assert_same(layer, x)


# -- pooling, through the layers ------------------------------------------------------


@st.composite
def pool_cases(draw, nd=2):
    k = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    d = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    p = tuple(draw(st.integers(0, kk // 2)) for kk in k)
    size = tuple(
        draw(st.integers(max(1, dd * (kk - 1) + 1 - 2 * pp), 11)) for kk, dd, pp in zip(k, d, p)
    )
    return dict(
        n=draw(st.integers(1, 3)),
        c=draw(st.integers(1, 3)),
        k=k,
        s=s,
        p=p,
        d=d,
        size=size,
        ceil_mode=draw(st.booleans()),
        count_include_pad=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)),
        training=draw(st.booleans()),
    )


def _distinct(shape, dt, seed=0):
    """Values with no ties, so that every window's maximum is one value."""
    return (np.random.default_rng(seed).permutation(int(np.prod(shape))).reshape(shape) / 8).astype(
        dt
    )


@settings(max_examples=60, deadline=None)
@given(pool_cases())
def test_max_pool2d_engine_equals_textbook(c):
    x = _distinct((c["n"], c["c"], *c["size"]), c["dtype"])
    layer = nn.MaxPool2d(c["k"], c["s"], c["p"], c["ceil_mode"], c["d"])
    y = layer(x)
    if np.isfinite(y).all():  # a window wholly on the padding is -inf, its gradient moot
        _assert_same(layer, x, c["training"])


@settings(max_examples=60, deadline=None)
@given(pool_cases())
def test_avg_pool2d_engine_equals_textbook(c):
    x = np.random.default_rng(0).standard_normal((c["n"], c["c"], *c["size"])).astype(c["dtype"])
    layer = nn.AvgPool2d(c["k"], c["s"], c["p"], c["ceil_mode"], c["count_include_pad"])
    if all(sz + 2 * p >= k for sz, p, k in zip(c["size"], c["p"], c["k"])):
        _assert_same(layer, x, c["training"])


@settings(max_examples=40, deadline=None)
@given(pool_cases(nd=1))
def test_pool1d_engine_equals_textbook(c):
    (k,), (s,), (p,), (d,) = c["k"], c["s"], c["p"], c["d"]
    x = _distinct((c["n"], c["c"], *c["size"]), c["dtype"])
    layer = nn.MaxPool1d(k, s, p, c["ceil_mode"], d)
    if np.isfinite(layer(x)).all():
        _assert_same(layer, x, c["training"])
    if c["size"][0] + 2 * p >= k:
        _assert_same(nn.AvgPool1d(k, s, p, c["ceil_mode"], c["count_include_pad"]), x)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("out", [1, 2, 3, (3, 1), (None, 2)])
def test_adaptive_avg_pool2d_engine_equals_textbook(out, dt):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 5)).astype(dt)
    _assert_same(nn.AdaptiveAvgPool2d(out), x)


# -- elementwise, softmax, linear, batch norm, dropout, flatten -----------------------


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(1, 5), min_size=1, max_size=4),
    st.sampled_from(DTYPES),
    st.sampled_from(["relu", "leaky", "sigmoid", "tanh", "softmax", "flatten"]),
)
def test_elementwise_layers_engine_equal_textbook(shape, dt, kind):
    x = (np.random.default_rng(0).standard_normal(shape) * 4).astype(dt)
    x.reshape(-1)[:1] = 0  # the kink of the ReLUs
    layer = {
        "relu": nn.ReLU(),
        "leaky": nn.LeakyReLU(0.2),
        "sigmoid": nn.Sigmoid(),
        "tanh": nn.Tanh(),
        "softmax": nn.Softmax(dim=len(shape) - 1),
        "flatten": nn.Flatten(0),
    }[kind]
    _assert_same(layer, x)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_log_softmax_engine_equals_textbook(dim, dt):
    x = (np.random.default_rng(0).standard_normal((3, 4, 5)) * 5).astype(dt)
    _close(EA.log_softmax(x, dim), T.log_softmax(x, dim), dt)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.integers(1, 4), min_size=0, max_size=2),
    st.integers(1, 7),
    st.integers(1, 7),
    st.booleans(),
    st.sampled_from(DTYPES),
)
def test_linear_engine_equals_textbook(lead, fin, fout, bias, dt):
    layer = nn.Linear(fin, fout, bias, rng=np.random.default_rng(0), dtype=dt)
    x = np.random.default_rng(1).standard_normal((*lead, 2, fin)).astype(dt)
    _assert_same(layer, x)


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([(5, 3), (4, 3, 6), (2, 3, 4, 5)]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from([0.1, None]),
    st.sampled_from(DTYPES),
)
def test_batch_norm_engine_equals_textbook(shape, affine, track, training, momentum, dt):
    cls = nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d
    layer = cls(3, momentum=momentum, affine=affine, track_running_stats=track, dtype=dt)
    rng = np.random.default_rng(0)
    if affine:
        layer.weight.data = rng.standard_normal(3).astype(dt)
        layer.bias.data = rng.standard_normal(3).astype(dt)
    if track:
        layer.running_mean[...] = rng.standard_normal(3)
        layer.running_var[...] = rng.random(3) + 0.5
        layer.num_batches_tracked[...] = 2
    x = (rng.standard_normal(shape) * 3 + 1).astype(dt)
    m, m2 = _assert_same(layer, x, training)
    if track:  # the running statistics, updated alike
        _close(m2.running_mean, m.running_mean, dt)
        _close(m2.running_var, m.running_var, dt)
        assert int(m2.num_batches_tracked) == int(m.num_batches_tracked) == 2 + training


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("training", [True, False])
def test_dropout_engine_equals_textbook(dt, training):
    x = np.random.default_rng(0).standard_normal((4, 7)).astype(dt)
    m, m2 = _assert_same(nn.Dropout(0.3, rng=np.random.default_rng(5)), x, training)
    assert m.rng.random() == m2.rng.random()  # the generators advanced alike


# -- losses ------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(2, 5), st.sampled_from([0.0, 0.2]), st.sampled_from(DTYPES))
def test_cross_entropy_engine_equals_textbook(n, c, smoothing, dt):
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((n, c)) * 4).astype(dt)
    labels = rng.integers(0, c, n)
    engine = nn.CrossEntropyLoss(label_smoothing=smoothing)
    book = nn.use_textbook(nn.CrossEntropyLoss(label_smoothing=smoothing))
    _close(np.asarray(engine(logits, labels)), np.asarray(book(logits, labels)), dt)
    _close(engine.backward(0.5), book.backward(0.5), dt)


@pytest.mark.parametrize("dt", DTYPES)
def test_mse_engine_equals_textbook(dt):
    rng = np.random.default_rng(0)
    pred, target = rng.standard_normal((3, 4)).astype(dt), rng.standard_normal((3, 4))
    engine, book = nn.MSELoss(), nn.use_textbook(nn.MSELoss())
    _close(np.asarray(engine(pred, target)), np.asarray(book(pred, target)), dt)
    _close(engine.backward(2.0), book.backward(2.0), dt)
