"""ConvTranspose2d and Upsample: finite differences, PyTorch, the textbook, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearconv import nn
from clearconv.functional import transposed as T
from tests.gradcheck import check_layer

# (in, out, kernel, stride, padding, output_padding, groups, dilation)
CT_CASES = [
    (2, 3, 3, 1, 0, 0, 1, 1),
    (2, 3, 2, 2, 0, 0, 1, 1),  # the U-Net's up-convolution
    (4, 2, 3, 2, 1, 1, 2, 1),  # groups, output padding
    (2, 2, (2, 3), (2, 1), (0, 1), (1, 0), 1, (1, 2)),  # non-square everything
    (3, 3, 3, 1, 3, 0, 1, 1),  # padding beyond the kernel's reach: a crop
    (2, 4, 3, 1, 1, 1, 2, 2),  # stride 1 with output padding (< dilation)
    (2, 3, 3, 3, 2, 2, 1, 1),
]


def _ct(case, rng, dtype=np.float64, bias=True):
    cin, cout, k, s, p, op, g, d = case
    return nn.ConvTranspose2d(cin, cout, k, s, p, op, g, bias, d, rng=rng, dtype=dtype)


@pytest.mark.parametrize("case", CT_CASES)
def test_conv_transpose2d_gradcheck(case):
    rng = np.random.default_rng(0)
    layer = _ct(case, rng)
    x = rng.standard_normal((2, case[0], 6, 5))
    check_layer(layer, x)


@pytest.mark.parametrize(
    "case", [*CT_CASES, (40, 36, 3, 2, 1, 1, 1, 1), (40, 36, 3, 1, 1, 0, 1, 1)]
)
def test_conv_transpose2d_matches_torch(case):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    cin, cout, k, s, p, op, g, d = case
    layer = _ct(case, rng)
    ref = torch.nn.ConvTranspose2d(cin, cout, k, s, p, op, g, True, d).double()
    ref.weight.data = torch.tensor(layer.weight.data)
    ref.bias.data = torch.tensor(layer.bias.data)
    x = rng.standard_normal((3, cin, 7, 6))
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    y = layer(x)
    assert y.shape == tuple(yt.shape) == layer.output_shape(x.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    dx = layer.backward(gy)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, ref.weight.grad.numpy(), rtol=1e-10, atol=1e-11)
    np.testing.assert_allclose(layer.bias.grad, ref.bias.grad.numpy(), rtol=1e-10, atol=1e-11)


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
    st.integers(1, 3), st.integers(0, 2), st.integers(1, 2), st.integers(1, 2), st.integers(1, 5),
    st.booleans(),
)  # fmt: skip
def test_engine_equals_textbook(cg, og, k, s, d, p, g, n, h, bias):
    op = s - 1 if s > 1 else 0
    rng = np.random.default_rng(2)
    layer = nn.ConvTranspose2d(cg * g, og * g, k, s, p, op, g, bias, d, rng=rng, dtype=np.float64)
    x = rng.standard_normal((n, cg * g, h, h + 1))
    try:
        shape = layer.output_shape(x.shape)
    except ValueError:  # the padding leaves nothing: an error, tested below
        return
    b = None if layer.bias is None else layer.bias.data
    ref = T.conv_transpose2d(x, layer.weight.data, b, s, p, op, g, d)
    y = layer(x)
    assert y.shape == shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    dx = layer.backward(gy)
    rdx, rdw, rdb = T.conv_transpose2d_backward(gy, x, layer.weight.data, s, p, op, g, d)
    np.testing.assert_allclose(dx, rdx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, rdw, rtol=1e-12, atol=1e-12)
    if bias:
        np.testing.assert_allclose(layer.bias.grad, rdb, rtol=1e-12, atol=1e-12)


def test_conv_transpose2d_golden_and_dtype():
    # Two input pixels, a 2x2 kernel of ones, stride 2: each pixel becomes a 2x2 block.
    layer = nn.ConvTranspose2d(1, 1, 2, stride=2, bias=False)
    layer.weight.data = np.ones((1, 1, 2, 2), np.float32)
    y = layer(np.array([[[[1.0, 2.0]]]], np.float32))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2]])
    assert repr(layer) == "ConvTranspose2d(1, 1, kernel_size=2, stride=2, bias=False)"


def test_conv_transpose2d_errors():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.ConvTranspose2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="output_padding must be smaller than the stride"):
        nn.ConvTranspose2d(2, 2, 3, stride=2, output_padding=2)
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        nn.ConvTranspose2d(2, 2, "3")
    layer = nn.ConvTranspose2d(2, 3, 3)
    with pytest.raises(
        ValueError, match=r"expected input of shape \(N, 2, H, W\), got \(1, 3, 4, 4\)"
    ):
        layer(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="empty output"):
        nn.ConvTranspose2d(1, 1, 1, padding=2)(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        nn.ConvTranspose2d(1, 1, 1).backward(np.zeros((1, 1, 2, 2)))


UP_CASES = [
    ("nearest", False, 2),
    ("nearest", False, 3),
    ("nearest", False, (2, 1.5)),
    ("nearest", False, 1.7),
    ("bilinear", False, 2),
    ("bilinear", False, (3, 1.5)),
    ("bilinear", True, 2),
    ("bilinear", True, 1.7),
]


@pytest.mark.parametrize(("mode", "align", "scale"), UP_CASES)
def test_upsample_matches_torch_and_textbook(mode, align, scale):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    layer = nn.Upsample(scale, mode=mode, align_corners=align)
    x = rng.standard_normal((2, 3, 5, 7))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.interpolate(
        xt, scale_factor=scale, mode=mode, align_corners=align if mode == "bilinear" else None
    )
    y = layer(x)
    assert y.shape == tuple(yt.shape) == layer.output_shape(x.shape)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(T.upsample(x, scale, mode, align), y, rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(gy))
    dx = layer.backward(gy)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    ref = T.upsample_backward(gy, x.shape, scale, mode, align)
    np.testing.assert_allclose(dx, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("mode", "align", "scale"), UP_CASES[::2])
def test_upsample_gradcheck(mode, align, scale):
    rng = np.random.default_rng(4)
    check_layer(nn.Upsample(scale, mode, align), rng.standard_normal((1, 2, 3, 4)))


def test_upsample_golden_and_errors():
    x = np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2)
    y = nn.Upsample(2)(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y[0, 0], [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    yb = nn.Upsample(2, "bilinear", align_corners=True)(x)
    np.testing.assert_allclose(yb[0, 0, 0], [0, 1 / 3, 2 / 3, 1], rtol=1e-6)
    with pytest.raises(ValueError, match="mode must be 'nearest' or 'bilinear'"):
        nn.Upsample(2, mode="bicubic")
    with pytest.raises(ValueError, match="align_corners=True works only with mode='bilinear'"):
        nn.Upsample(2, align_corners=True)
    with pytest.raises(ValueError, match="scale_factor must be > 0"):
        nn.Upsample(0)
    with pytest.raises(ValueError, match=r"expected input of shape \(N, C, H, W\)"):
        nn.Upsample(2)(np.zeros((1, 2, 3), np.float32))


def test_config_round_trip():
    model = nn.Sequential(
        nn.ConvTranspose2d(2, 4, 2, stride=2, output_padding=1, groups=2, bias=False),
        nn.Upsample(2, mode="bilinear", align_corners=True),
    )
    cfg = nn.to_config(model)
    back = nn.from_config(cfg)
    assert nn.to_config(back) == cfg
    assert repr(back[0]) == repr(model[0]) and repr(back[1]) == repr(model[1])
    inferred = nn.from_config(
        {"type": "ConvTranspose2d", "out_channels": 3, "kernel_size": 2}, input_shape=(5, 4, 4)
    )
    assert inferred.in_channels == 5 and inferred.weight.shape == (5, 3, 2, 2)


@pytest.mark.parametrize(
    "make",
    [
        lambda r: nn.ConvTranspose2d(4, 2, 3, 2, 1, 1, 2, rng=r, dtype=np.float64),
        lambda r: nn.Upsample(2),
        lambda r: nn.Upsample(1.5, mode="bilinear"),
        lambda r: nn.Upsample(2, mode="bilinear", align_corners=True),
    ],
)
def test_textbook_switch_gives_the_engine_results(make):
    # The same layer on the engine and, after nn.use_textbook, on clearconv.functional.
    rng = np.random.default_rng(5)
    fast, slow = make(np.random.default_rng(0)), nn.use_textbook(make(np.random.default_rng(0)))
    assert slow.textbook and not fast.textbook
    x = rng.standard_normal((2, 4, 5, 6))
    y = fast(x, training=True)
    np.testing.assert_allclose(slow(x, training=True), y, rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(slow.backward(gy), fast.backward(gy), rtol=1e-12, atol=1e-12)
    for p, q in zip(slow.parameters(), fast.parameters(), strict=True):
        np.testing.assert_allclose(p.grad, q.grad, rtol=1e-12, atol=1e-12)
    with pytest.raises(RuntimeError, match="before forward"):
        make(None).backward(gy)
