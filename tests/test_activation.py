"""Activations (ReLU, LeakyReLU, Sigmoid, Tanh, Softmax) and Dropout."""

import warnings

import numpy as np
import pytest

from clearconv.nn import Dropout, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from gradcheck import check_layer

ELEMENTWISE = [ReLU, lambda: LeakyReLU(0.2), Sigmoid, Tanh]


def away_from_zero(rng, shape):
    """Values with |x| >= 0.1 so finite differences never straddle a kink."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.1, np.sign(x) * 0.1 + x, x)


# -- gradient checks (float64) -------------------------------------------------
@pytest.mark.parametrize("make", ELEMENTWISE)
def test_elementwise_gradcheck(make, rng):
    check_layer(make(), away_from_zero(rng, (2, 3, 4)))


@pytest.mark.parametrize(
    ("dim", "shape"),
    [(None, (3, 5)), (None, (2, 3, 4)), (1, (2, 3, 4)), (-1, (2, 5)), (0, (4,)), (2, (2, 2, 3, 2))],
)
def test_softmax_gradcheck(dim, shape, rng):
    check_layer(Softmax(dim=dim), rng.standard_normal(shape))


def test_leaky_relu_negative_slope_gradcheck(rng):
    check_layer(LeakyReLU(-0.5), away_from_zero(rng, (4, 5)))


# -- PyTorch parity ----------------------------------------------------------------
def _torch_pairs(torch):
    return [
        (ReLU(), torch.nn.ReLU()),
        (LeakyReLU(), torch.nn.LeakyReLU()),
        (LeakyReLU(0.3), torch.nn.LeakyReLU(0.3)),
        (Sigmoid(), torch.nn.Sigmoid()),
        (Tanh(), torch.nn.Tanh()),
        (Softmax(dim=1), torch.nn.Softmax(dim=1)),
        (Softmax(dim=-1), torch.nn.Softmax(dim=-1)),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_torch_parity(dtype, rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((4, 6, 3)) * 3).astype(dtype)
    x[0, 0, 0] = 0.0  # the gradient at the kink must match too
    g = rng.standard_normal(x.shape).astype(dtype)
    for ours, theirs in _torch_pairs(torch):
        y = ours(x, training=True)
        dx = ours.backward(g)
        xt = torch.tensor(x, requires_grad=True)
        yt = theirs(xt)
        yt.backward(torch.tensor(g))
        assert y.dtype == dx.dtype == dtype, ours
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=repr(ours))
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-6, err_msg=repr(ours))


@pytest.mark.parametrize("shape", [(), (5,), (3, 4), (2, 3, 4), (2, 3, 4, 5)])
def test_softmax_implicit_dim_matches_torch(shape, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape).astype(np.float32)
    # torch.nn.Softmax() itself picks the dim (its legacy rule), warning that
    # an implicit dim is deprecated: the rule is torch's, not a copy of ours.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Implicit dimension choice", UserWarning)
        expected = torch.nn.Softmax()(torch.tensor(x)).numpy()
    np.testing.assert_allclose(Softmax()(x), expected, rtol=1e-6, atol=1e-7)


# -- numerical stability -----------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_extremes_are_finite_and_warning_free(dtype):
    x = np.array([-1e4, -100.0, -20.0, 0.0, 20.0, 100.0, 1e4], dtype=dtype)
    s = Sigmoid()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = s(x)
        dx = s.backward(np.ones_like(x))
    assert y.dtype == dx.dtype == dtype
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert y[0] == 0.0 and y[-1] == 1.0 and y[3] == 0.5
    np.testing.assert_allclose(
        y, 1 / (1 + np.exp(-x.astype(np.float64).clip(-700, 700))), rtol=1e-6, atol=1e-30
    )


def test_softmax_large_inputs_stable():
    x = np.array([[1e4, 0.0, -1e4], [1e4, 1e4, 1e4]], dtype=np.float32)
    y = Softmax(dim=1)(x)
    np.testing.assert_allclose(y, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)


# -- golden values, shapes, repr, errors --------------------------------------------
def test_golden_values():
    x = np.arange(-2.0, 3.0)
    np.testing.assert_array_equal(ReLU()(x), [0, 0, 0, 1, 2])
    np.testing.assert_allclose(LeakyReLU()(x), [-0.02, -0.01, 0, 1, 2])
    np.testing.assert_allclose(Tanh()(x), np.tanh(x))
    np.testing.assert_allclose(Softmax(dim=0)(np.log(np.array([1.0, 3.0]))), [0.25, 0.75])


@pytest.mark.parametrize("make", [*ELEMENTWISE, lambda: Softmax(dim=1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_shape_preserved(make, dtype, rng):
    layer = make()
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    y = layer(x)
    assert y.dtype == dtype and y.shape == layer.output_shape(x.shape) == x.shape
    assert layer.backward(np.ones_like(y)).dtype == dtype
    assert layer.parameters() == []


def test_repr_shows_non_default_settings():
    assert repr(ReLU()) == "ReLU()"
    assert repr(LeakyReLU()) == "LeakyReLU()"
    assert repr(LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(Softmax()) == "Softmax()"
    assert repr(Softmax(dim=1)) == "Softmax(dim=1)"


def test_errors():
    with pytest.raises(
        TypeError, match=r"ReLU\(\) expected a float32 or float64 array, got dtype int64"
    ):
        ReLU()(np.arange(3))
    with pytest.raises(TypeError, match="got list"):
        Tanh()([1.0, 2.0])
    with pytest.raises(TypeError, match="negative_slope must be a number"):
        LeakyReLU("0.1")
    with pytest.raises(TypeError, match="dim must be an int"):
        Softmax(dim=1.0)
    with pytest.raises(ValueError, match=r"Softmax\(dim=2\): dim out of range for a 2-D input"):
        Softmax(dim=2)(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dim out of range"):
        Softmax(dim=-3).output_shape((2, 3))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        Sigmoid().backward(np.ones(3))


# -- Dropout --------------------------------------------------------------------------
def test_dropout_mask_statistics_and_scaling():
    p = 0.3
    d = Dropout(p, rng=np.random.default_rng(1))
    x = np.ones((200, 500), dtype=np.float32)
    y = d(x, training=True)
    assert y.dtype == np.float32
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-6)
    assert abs(kept.mean() - (1 - p)) < 0.005  # 1e5 draws: std of the mean ~0.0015
    assert abs(y.mean() - 1.0) < 0.01  # inverted dropout keeps the expectation


def test_dropout_identity_in_eval():
    d = Dropout(0.5, rng=np.random.default_rng(0))
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(d(x), x)
    np.testing.assert_array_equal(d(x, training=False), x)
    np.testing.assert_array_equal(d.backward(np.ones_like(x)), np.ones_like(x))
    np.testing.assert_array_equal(Dropout(0.0)(x, training=True), x)


def test_dropout_reproducible_with_same_seed():
    x = np.ones((8, 16))
    a = Dropout(0.5, rng=np.random.default_rng(7))
    b = Dropout(0.5, rng=np.random.default_rng(7))
    for _ in range(3):
        np.testing.assert_array_equal(a(x, training=True), b(x, training=True))
    assert not np.array_equal(a(x, training=True), a(x, training=True))  # fresh masks each call
    assert isinstance(a.rng, np.random.Generator)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dropout_backward_uses_the_same_mask(dtype, rng):
    d = Dropout(0.4, rng=np.random.default_rng(3))
    x = rng.standard_normal((5, 7)).astype(dtype) + 10  # never zero
    y = d(x, training=True)
    g = rng.standard_normal(x.shape).astype(dtype)
    dx = d.backward(g)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, g * y / x, rtol=1e-6)


def test_dropout_gradcheck(rng):
    # The mask is redrawn on every forward, so check a fixed mask: reseed before each call.
    class Fixed(Dropout):
        def forward(self, x, training=False):
            self.rng = np.random.default_rng(5)
            return super().forward(x, training)

    check_layer(Fixed(0.5), rng.standard_normal((3, 4)))


def test_dropout_errors_and_repr():
    with pytest.raises(ValueError, match=r"Dropout: p must be < 1.0, got 1"):
        Dropout(1)
    with pytest.raises(ValueError, match=r"p must be >= 0.0, got -0.1"):
        Dropout(-0.1)
    with pytest.raises(TypeError, match=r"rng must be a numpy\.random\.Generator"):
        Dropout(0.5, rng=0)
    with pytest.raises(TypeError, match="expected a float32 or float64 array"):
        Dropout()(np.ones(3, dtype=np.int32), training=True)
    assert repr(Dropout()) == "Dropout()"
    assert repr(Dropout(0.2)) == "Dropout(p=0.2)"
    assert Dropout().output_shape((2, 3)) == (2, 3)


def test_softmax_over_the_whole_float32_range_is_finite_and_silent():
    from clearconv.engine.activation import log_softmax, softmax

    x = np.array([[3e38, -3e38, 0.0]], dtype=np.float32)
    p = softmax(x, axis=1)
    np.testing.assert_array_equal(p, [[1.0, 0.0, 0.0]])
    assert log_softmax(x, axis=1)[0, 0] == 0.0


# -- inplace=True, as PyTorch's ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inplace_layers_write_over_their_input_as_torch_does(dtype, rng):
    torch = pytest.importorskip("torch")
    x0 = (rng.standard_normal((4, 6, 3)) * 3).astype(dtype)
    x0[0, 0, 0] = 0.0
    g = rng.standard_normal(x0.shape).astype(dtype)
    pairs = [
        (ReLU(inplace=True), torch.nn.ReLU(inplace=True)),
        (LeakyReLU(0.3, inplace=True), torch.nn.LeakyReLU(0.3, inplace=True)),
    ]
    for ours, theirs in pairs:
        x = x0.copy()
        y = ours(x, training=True)
        assert y is x or np.shares_memory(y, x), ours  # no new array
        xt = torch.tensor(x0)
        yt = theirs(xt)
        np.testing.assert_allclose(x, xt.numpy(), rtol=1e-6, err_msg=repr(ours))  # both overwrote
        np.testing.assert_allclose(y, yt.numpy(), rtol=1e-6, err_msg=repr(ours))
        # The gradient is the out-of-place layer's (computed from the output or mask).
        plain = type(ours)() if isinstance(ours, ReLU) else LeakyReLU(0.3)
        plain(x0.copy(), training=True)
        np.testing.assert_array_equal(ours.backward(g), plain.backward(g))


def test_inplace_dropout_writes_over_its_input_in_training_only(rng):
    x0 = rng.standard_normal((50, 40)).astype(np.float32)
    ours = Dropout(0.3, inplace=True, rng=np.random.default_rng(5))
    plain = Dropout(0.3, rng=np.random.default_rng(5))
    x = x0.copy()
    y = ours(x, training=True)
    assert np.shares_memory(y, x)
    np.testing.assert_array_equal(y, plain(x0, training=True))  # the same mask and scale
    g = rng.standard_normal(x0.shape).astype(np.float32)
    np.testing.assert_array_equal(ours.backward(g), plain.backward(g))
    x = x0.copy()
    assert ours(x) is x and (x == x0).all()  # eval: the identity, nothing written


def test_inplace_layers_in_a_sequential_match_the_plain_ones(rng):
    from clearconv.nn import Conv2d, Flatten, Linear, MaxPool2d, Sequential

    def net(inplace):
        r = np.random.default_rng(0)
        return Sequential(
            Conv2d(1, 4, 3, rng=r), ReLU(inplace=inplace), MaxPool2d(2),
            LeakyReLU(0.1, inplace=inplace), Flatten(), Dropout(0.2, inplace, rng=r),
            Linear(144, 3, rng=r),
        )  # fmt: skip

    x = rng.standard_normal((5, 1, 14, 14)).astype(np.float32)
    g = rng.standard_normal((5, 3)).astype(np.float32)
    a, b = net(False), net(True)
    x_before = x.copy()
    np.testing.assert_array_equal(a(x, training=True), b(x, training=True))
    np.testing.assert_array_equal(a.backward(g), b.backward(g))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        np.testing.assert_array_equal(pa.grad, pb.grad)
    assert (x == x_before).all()  # the first layer makes its own array: the input is kept


def test_inplace_repr_config_and_errors():
    from clearconv.nn import from_config, to_config

    assert repr(ReLU(inplace=True)) == "ReLU(inplace=True)"
    assert repr(LeakyReLU(0.2, inplace=True)) == "LeakyReLU(negative_slope=0.2, inplace=True)"
    assert repr(LeakyReLU(inplace=True)) == "LeakyReLU(inplace=True)"
    assert repr(Dropout(0.5, True)) == "Dropout(inplace=True)"
    for layer in (ReLU(inplace=True), LeakyReLU(0.2, True), Dropout(0.1, inplace=True)):
        again = from_config(to_config(layer))
        assert repr(again) == repr(layer) and again.inplace
    assert not from_config({"type": "ReLU"}).inplace  # files written before the setting
    assert to_config(ReLU()) == {"type": "ReLU"}  # and files older versions can read
    assert to_config(Dropout(0.3)) == {"type": "Dropout", "p": 0.3}
    with pytest.raises(TypeError, match=r"ReLU: inplace must be True or False, got 'yes'"):
        ReLU(inplace="yes")
    with pytest.raises(TypeError, match=r"Dropout: inplace must be True or False, got 1"):
        Dropout(0.5, 1)
    frozen = np.ones(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match=r"ReLU\(inplace=True\) writes its output over its input"):
        ReLU(inplace=True)(frozen)
    with pytest.raises(ValueError, match="read-only"):
        Dropout(0.5, True)(frozen, training=True)


# -- ReLU against a row of zeros (functional._max0) ----------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "make",
    [
        lambda a: a,  # NCHW, dense
        lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2),  # NHWC
        lambda a: np.ascontiguousarray(a.transpose(1, 0, 2, 3)).transpose(1, 0, 2, 3),  # CNHW
        lambda a: a[:, :, 1:, ::2],  # not dense: the scalar form
        lambda a: a.reshape(a.shape[0], -1),  # 2-D
        lambda a: a.reshape(-1),  # one long axis, longer than the zero row
    ],
)
def test_relu_against_a_zero_row_equals_max_with_zero(make, dtype, rng):
    from clearconv.engine.activation import relu

    a = rng.standard_normal((9, 7, 40, 33)).astype(dtype)
    a.reshape(-1)[:6] = [-0.0, 0.0, np.nan, np.inf, -np.inf, -1e-45]
    x = make(a)
    expected = np.maximum(x, 0)
    y = relu(x)
    np.testing.assert_array_equal(y, expected)
    assert not np.signbit(y).any()  # -0.0 comes out as 0.0, as with the scalar
    assert y.strides == np.empty_like(x).strides
    before = x.copy()
    assert relu(x, out=x) is x
    np.testing.assert_array_equal(x, expected)
    assert np.isnan(before).sum() == np.isnan(x).sum()
