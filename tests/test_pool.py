"""Pooling layers: loops, finite differences, PyTorch, fast path vs general path, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearconv import nn
from clearconv.engine import DEFAULT, Tuning
from clearconv.engine import pool as F
from tests.gradcheck import check_layer
from tests.reference import maxpool_grad_loops, pool2d_loops


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))  # max pooling only
    # the input must hold one dilated window (the average's is never larger)
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 11))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 11))
    ceil_mode = draw(st.booleans())
    cip = draw(st.booleans())
    return (kh, kw), (sh, sw), (ph, pw), (dh, dw), h, w, ceil_mode, cip


@settings(max_examples=60, deadline=None)
@given(pool_cases(), st.integers(0, 2**31))
def test_pools_match_loops(case, seed):
    k, s, p, d, h, w, ceil_mode, cip = case
    rng = np.random.default_rng(seed)
    # Rounded values give ties, which must go to the first maximum.
    x = np.round(rng.standard_normal((2, 2, h, w)), 1)
    mp = nn.MaxPool2d(k, s, p, ceil_mode=ceil_mode, dilation=d)
    y = mp(x)
    ref, winners = pool2d_loops(x, "max", k, s, p, d, ceil_mode=ceil_mode)
    np.testing.assert_array_equal(y, ref)
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(mp.backward(g), maxpool_grad_loops(x.shape, winners, g), atol=1e-12)
    ap = nn.AvgPool2d(k, s, p, ceil_mode, cip)
    ref, _ = pool2d_loops(x, "avg", k, s, p, ceil_mode=ceil_mode, count_include_pad=cip)
    np.testing.assert_allclose(ap(x), ref, rtol=1e-12, atol=1e-12)


LAYOUTS = {
    "NCHW": (0, 1, 2, 3),
    "channels-last": (0, 2, 3, 1),
    "channel-major": (1, 0, 2, 3),
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k", [(2, 2), (3, 3), (2, 3), (1, 2), (4, 5)])
def test_tiled_windows_match_loops_and_the_separable_path(layout, k):
    # Windows that tile x (stride = kernel, no padding) are reduced over their
    # kH*kW taps, copied into contiguous planes when W is innermost in memory
    # (4x5, over Tuning.taps_max, goes separably); the sizes leave rows and columns
    # past the last window (floor mode).
    # Results, ties included, equal the loop reference and the separable path.
    rng = np.random.default_rng(0)
    order = LAYOUTS[layout]
    stored = np.round(rng.standard_normal([(3, 4, 9, 8)[a] for a in order]), 1)
    x = stored.transpose(np.argsort(order))  # (3, 4, 9, 8), laid out as `layout` says
    s, p, d = k, (0, 0), (1, 1)
    y, found = F.max_pool2d_forward(x, k, s, p, d, False)  # the winners, in either form
    ref, ref_winners = pool2d_loops(x, "max", k, s, p)
    np.testing.assert_array_equal(y, ref)
    g = rng.standard_normal(y.shape)
    dx = F.max_pool2d_backward(g, found, x.shape, k, s, p, d)
    np.testing.assert_allclose(dx, maxpool_grad_loops(x.shape, ref_winners, g))
    separable = DEFAULT.with_tuning(Tuning(taps_max=0))  # no window goes by taps
    y_sep, winners = F.max_pool2d_forward(x, k, s, p, d, False, eng=separable)
    assert isinstance(winners, tuple)  # the separable path's (col, row) winners
    np.testing.assert_array_equal(y, y_sep)
    dx_sep = F.max_pool2d_backward(g, winners, x.shape, k, s, p, d, eng=separable)
    np.testing.assert_array_equal(dx, dx_sep)
    avg = F.avg_pool2d_forward(x, k, s, p, False, True)
    np.testing.assert_allclose(avg, pool2d_loops(x, "avg", k, s, p)[0], atol=1e-12)


POOL_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), ceil_mode=True),
    dict(kernel_size=2, ceil_mode=True),
]


@pytest.mark.parametrize("kwargs", POOL_CASES)
def test_maxpool_gradcheck(kwargs):
    rng = np.random.default_rng(0)
    check_layer(nn.MaxPool2d(**kwargs), rng.standard_normal((2, 2, 7, 6)))


def test_maxpool_dilation_gradcheck():
    rng = np.random.default_rng(0)
    check_layer(nn.MaxPool2d(3, 2, 1, dilation=2), rng.standard_normal((1, 2, 9, 8)))


@pytest.mark.parametrize("kwargs", POOL_CASES)
@pytest.mark.parametrize("cip", [True, False])
def test_avgpool_gradcheck(kwargs, cip):
    rng = np.random.default_rng(0)
    check_layer(nn.AvgPool2d(**kwargs, count_include_pad=cip), rng.standard_normal((2, 2, 7, 6)))


def test_pool1d_and_adaptive_gradcheck():
    rng = np.random.default_rng(0)
    check_layer(nn.MaxPool1d(3, 2, 1, ceil_mode=True), rng.standard_normal((2, 3, 10)))
    check_layer(nn.AvgPool1d(3, 2, 1, count_include_pad=False), rng.standard_normal((2, 3, 10)))
    for out in (1, (3, 2), (None, 4)):
        check_layer(nn.AdaptiveAvgPool2d(out), rng.standard_normal((2, 2, 7, 5)))


@pytest.mark.parametrize("kwargs", POOL_CASES)
@pytest.mark.parametrize("kind", ["max", "avg_pad", "avg_nopad"])
def test_pools_match_torch(kwargs, kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 11, 9)).astype(np.float32)
    if kind == "max":
        ours, ref = nn.MaxPool2d(**kwargs), torch.nn.MaxPool2d(**kwargs)
    else:
        cip = kind == "avg_pad"
        ours = nn.AvgPool2d(**kwargs, count_include_pad=cip)
        ref = torch.nn.AvgPool2d(**kwargs, count_include_pad=cip)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    y = ours(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-6, atol=1e-6)
    g = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ours.backward(g), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs", [*POOL_CASES, dict(kernel_size=(2, 3))])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_eval_mode_pools_without_winners_and_backward_still_works(kwargs, layout):
    # Evaluation computes only the max (no winner indices); a backward after it,
    # as a saliency map makes, finds the winners from the input it kept, and
    # both equal training mode's, ties included.
    rng = np.random.default_rng(3)
    order = LAYOUTS[layout]
    x = np.round(rng.standard_normal([(2, 3, 9, 10)[a] for a in order]), 1)
    x = x.astype(np.float32).transpose(np.argsort(order))
    train, ev = nn.MaxPool2d(**kwargs), nn.MaxPool2d(**kwargs)
    y = train(x, training=True)
    y_eval = ev(x, training=False)
    np.testing.assert_array_equal(y_eval, y)
    g = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(ev.backward(g), train.backward(g))
    ref, winners = pool2d_loops(
        x.astype(np.float64), "max", ev.kernel_size, ev.stride, ev.padding, ceil_mode=ev.ceil_mode
    )
    np.testing.assert_array_equal(y_eval, ref)


def test_maxpool_ties_and_constant_image_match_torch():
    torch = pytest.importorskip("torch")
    x = np.ones((1, 2, 6, 6), np.float32)
    for ours, ref in [
        (nn.MaxPool2d(2), torch.nn.MaxPool2d(2)),
        (nn.MaxPool2d(3, 1, 1), torch.nn.MaxPool2d(3, 1, 1)),
    ]:
        xt = torch.tensor(x, requires_grad=True)
        ref(xt).sum().backward()
        y = ours(x)
        np.testing.assert_array_equal(ours.backward(np.ones_like(y)), xt.grad.numpy())


def test_pool1d_and_adaptive_match_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x1 = rng.standard_normal((2, 3, 17)).astype(np.float32)
    x2 = rng.standard_normal((2, 3, 7, 9)).astype(np.float32)
    pairs = [
        (nn.MaxPool1d(3, 2, 1), torch.nn.MaxPool1d(3, 2, 1), x1),
        (nn.AvgPool1d(4, 3, 2, ceil_mode=True), torch.nn.AvgPool1d(4, 3, 2, ceil_mode=True), x1),
        (nn.AdaptiveAvgPool2d(1), torch.nn.AdaptiveAvgPool2d(1), x2),
        (nn.AdaptiveAvgPool2d((3, 4)), torch.nn.AdaptiveAvgPool2d((3, 4)), x2),
    ]
    for ours, ref, x in pairs:
        xt = torch.tensor(x, requires_grad=True)
        yt = ref(xt)
        y = ours(x)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
        g = rng.standard_normal(y.shape).astype(np.float32)
        yt.backward(torch.from_numpy(g))
        np.testing.assert_allclose(ours.backward(g), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_golden_values():
    x = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
    np.testing.assert_array_equal(nn.MaxPool2d(2)(x)[0, 0], [[6, 8], [16, 18]])
    np.testing.assert_array_equal(
        nn.MaxPool2d(2, ceil_mode=True)(x)[0, 0], [[6, 8, 9], [16, 18, 19], [21, 23, 24]]
    )
    # count_include_pad: the corner window (pad 1) sees 0, 1, 5, 6 and five zeros of padding.
    avg = nn.AvgPool2d(3, 2, 1)(x)[0, 0]
    assert avg[0, 0] == pytest.approx((0 + 1 + 5 + 6) / 9)
    avg = nn.AvgPool2d(3, 2, 1, count_include_pad=False)(x)[0, 0]
    assert avg[0, 0] == pytest.approx((0 + 1 + 5 + 6) / 4)


def test_output_shape_agrees_with_forward():
    for kwargs in POOL_CASES:
        for layer in (nn.MaxPool2d(**kwargs), nn.AvgPool2d(**kwargs)):
            x = np.zeros((2, 3, 11, 8), np.float32)
            assert layer(x).shape == layer.output_shape(x.shape)


@pytest.mark.parametrize(
    "make, exc, message",
    [
        (lambda: nn.MaxPool2d(0), ValueError, r"kernel_size must be >= 1, got 0"),
        (lambda: nn.MaxPool2d(2, stride=0), ValueError, r"stride must be >= 1, got 0"),
        (lambda: nn.MaxPool2d(3, padding=-1), ValueError, r"padding must be >= 0, got -1"),
        (lambda: nn.MaxPool2d(2, padding=2), ValueError, r"at most half"),
        (lambda: nn.AvgPool2d(2, count_include_pad=None), TypeError, r"count_include_pad"),
        (lambda: nn.AdaptiveAvgPool2d(0), ValueError, r"output_size must be >= 1"),
    ],
)
def test_bad_constructor_arguments(make, exc, message):
    with pytest.raises(exc, match=message):
        make()


def test_bad_inputs():
    with pytest.raises(
        ValueError,
        match=r"MaxPool2d\(kernel_size=2\) expected input of shape "
        r"\(N, C, H, W\), got \(4, 4\)",
    ):
        nn.MaxPool2d(2)(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=r"smaller than the window"):
        nn.MaxPool2d(5)(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, L\)"):
        nn.AvgPool1d(2)(np.zeros((1, 1, 3, 3), np.float32))
