"""Linear and Flatten."""

import numpy as np
import pytest

from clearconv.nn import Flatten, Linear
from gradcheck import check_layer


def linear64(in_f, out_f, bias=True, seed=0):
    return Linear(in_f, out_f, bias, rng=np.random.default_rng(seed), dtype=np.float64)


# -- gradient checks -----------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(5, 4), (4,), (2, 3, 4)])
def test_linear_gradcheck(bias, shape, rng):
    layer = linear64(4, 3, bias)
    check_layer(layer, rng.standard_normal(shape))
    assert len(layer.parameters()) == (2 if bias else 1)


def test_flatten_gradcheck(rng):
    check_layer(Flatten(), rng.standard_normal((2, 3, 2, 2)))
    check_layer(Flatten(1, 2), rng.standard_normal((2, 3, 2, 2)))


# -- PyTorch parity ---------------------------------------------------------------------
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(8, 5), (2, 3, 5)])
def test_linear_torch_parity(bias, shape, rng):
    torch = pytest.importorskip("torch")
    ours = Linear(5, 7, bias, rng=np.random.default_rng(1))
    theirs = torch.nn.Linear(5, 7, bias)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.weight.data))
        if bias:
            theirs.bias.copy_(torch.tensor(ours.bias.data))
    x = rng.standard_normal(shape).astype(np.float32)
    g = rng.standard_normal((*shape[:-1], 7)).astype(np.float32)
    y = ours(x, training=True)
    dx = ours.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(g))
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-5, atol=1e-5)
    if bias:
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_flatten_torch_parity(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    for args in [(), (0,), (1, 2), (2, -1), (-3, -2), (3, 3)]:
        assert Flatten(*args)(x).shape == tuple(torch.nn.Flatten(*args)(torch.tensor(x)).shape)
        np.testing.assert_array_equal(
            Flatten(*args)(x), torch.nn.Flatten(*args)(torch.tensor(x)).numpy()
        )


def test_linear_default_init_distribution():
    layer = Linear(64, 300, rng=np.random.default_rng(0))
    bound = 1 / np.sqrt(64)
    w, b = layer.weight.data, layer.bias.data
    assert w.shape == (300, 64) and b.shape == (300,)
    assert w.dtype == b.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.95 * bound  # uniform over the whole range
    assert abs(w.std() - bound / np.sqrt(3)) < 0.01 * bound * 3
    same = Linear(64, 300, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(same.weight.data, w)


# -- golden values, accumulation, dtypes ----------------------------------------------------
def test_linear_golden_and_accumulation():
    layer = Linear(3, 2, dtype=np.float64)
    layer.weight.data = np.arange(6.0).reshape(2, 3)
    layer.bias.data = np.array([1.0, -1.0])
    x = np.array([[1.0, 0.0, 2.0]])
    np.testing.assert_array_equal(layer(x), [[1 + 4, 3 + 10 - 1]])
    g = np.array([[1.0, 2.0]])
    np.testing.assert_array_equal(layer.backward(g), [[6.0, 9.0, 12.0]])
    np.testing.assert_array_equal(layer.weight.grad, [[1, 0, 2], [2, 0, 4]])
    layer(x)
    layer.backward(g)  # gradients add up until zero_grad
    np.testing.assert_array_equal(layer.bias.grad, [2.0, 4.0])
    layer.zero_grad()
    assert layer.weight.grad is None


@pytest.mark.parametrize("wdtype", [np.float32, np.float64])
@pytest.mark.parametrize("xdtype", [np.float32, np.float64])
def test_linear_dtype_in_equals_dtype_out(wdtype, xdtype, rng):
    layer = Linear(4, 3, rng=rng, dtype=wdtype)
    x = rng.standard_normal((2, 4)).astype(xdtype)
    y = layer(x)
    assert y.dtype == xdtype
    assert layer.backward(np.ones_like(y)).dtype == xdtype
    assert layer.weight.grad.dtype == layer.bias.grad.dtype == wdtype


def test_flatten_dtype_and_shapes():
    x = np.zeros((2, 3, 4, 5), dtype=np.float32)
    f = Flatten()
    assert f(x).dtype == np.float32 and f.output_shape(x.shape) == (2, 60)
    assert f.backward(np.ones((2, 60), dtype=np.float32)).shape == x.shape
    assert Flatten(0, -2).output_shape((2, 3, 4)) == (6, 4)
    assert Flatten(1, 1).output_shape((2, 3)) == (2, 3)


def test_output_shape_and_repr():
    assert Linear(4, 3).output_shape((10, 4)) == (10, 3)
    assert Linear(4, 3).output_shape((2, 5, 4)) == (2, 5, 3)
    assert repr(Linear(4, 3)) == "Linear(in_features=4, out_features=3)"
    assert repr(Linear(4, 3, bias=False)) == "Linear(in_features=4, out_features=3, bias=False)"
    assert repr(Flatten()) == "Flatten()"
    assert repr(Flatten(0, 2)) == "Flatten(start_dim=0, end_dim=2)"


def test_errors():
    with pytest.raises(TypeError, match="in_features must be an int"):
        Linear(4.0, 3)
    with pytest.raises(ValueError, match="out_features must be >= 1, got 0"):
        Linear(4, 0)
    with pytest.raises(TypeError, match="bias must be a bool"):
        Linear(4, 3, bias=1)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        Linear(4, 3, dtype=np.int32)
    with pytest.raises(TypeError, match="rng must be"):
        Linear(4, 3, rng=42)
    layer = Linear(4, 3)
    with pytest.raises(
        ValueError,
        match=r"Linear\(in_features=4, out_features=3\) expected input of shape "
        r"\(N, 4\), got \(2, 5\)",
    ):
        layer(np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected input of shape \(N, 4\), got \(2, 5\)"):
        layer.output_shape((2, 5))
    with pytest.raises(TypeError, match="got dtype int64"):
        layer(np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        Linear(4, 3).backward(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=3\): start_dim=3 out of range"):
        Flatten(3)(np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="start_dim cannot come after end_dim"):
        Flatten(2, 1).output_shape((2, 3, 4))
    with pytest.raises(TypeError, match="start_dim must be an int"):
        Flatten("1")
