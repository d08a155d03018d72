"""Sequential and Residual: order, gradients, names, shapes, repr."""

import numpy as np
import pytest

from convnet.nn import (
    BatchNorm1d,
    Dropout,
    Flatten,
    Linear,
    Module,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Tanh,
)
from gradcheck import check_layer


def lin(i, o, seed=0, dtype=np.float64):
    return Linear(i, o, rng=np.random.default_rng(seed), dtype=dtype)


def mlp(dtype=np.float64):
    return Sequential(
        lin(4, 6, 0, dtype),
        BatchNorm1d(6, dtype=dtype),
        Tanh(),
        Residual(Sequential(lin(6, 6, 1, dtype), Sigmoid())),
        lin(6, 3, 2, dtype),
    )


# -- gradient checks -------------------------------------------------------------------
@pytest.mark.parametrize("training", [True, False])
def test_sequential_gradcheck(training, rng):
    check_layer(mlp(), rng.standard_normal((5, 4)), training=training)


def test_residual_gradcheck(rng):
    check_layer(Residual(lin(3, 3)), rng.standard_normal((4, 3)))
    check_layer(Residual(Sequential(lin(3, 3), Tanh(), lin(3, 3, 1))), rng.standard_normal((2, 3)))


# -- PyTorch parity and names ----------------------------------------------------------------
def test_sequential_torch_parity_and_state_dict_names(rng):
    torch = pytest.importorskip("torch")
    ours = Sequential(
        Flatten(), Linear(12, 8, rng=rng), BatchNorm1d(8), ReLU(), Linear(8, 3, rng=rng)
    )
    theirs = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(12, 8),
        torch.nn.BatchNorm1d(8),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 3),
    )
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    theirs.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((5, 3, 2, 2)).astype(np.float32)
    g = rng.standard_normal((5, 3)).astype(np.float32)
    y = ours(x, training=True)
    dx = ours.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    for (name, p), (_, pt) in zip(ours.named_parameters(), theirs.named_parameters(), strict=True):
        np.testing.assert_allclose(p.grad, pt.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(ours[2].running_var, theirs[2].running_var.numpy(), rtol=1e-5)


def test_residual_names():
    r = Residual(Sequential(Linear(3, 3), ReLU(), Linear(3, 3)))
    assert list(r.state_dict()) == [
        "block.0.weight",
        "block.0.bias",
        "block.2.weight",
        "block.2.bias",
    ]
    assert [n for n, _ in r.children()] == ["block"]


# -- Sequential behaviour ----------------------------------------------------------------------
def test_forward_order_and_backward_reverse():
    calls = []

    class Tag(Module):
        def __init__(self, name):
            self.name = name

        def forward(self, x, training=False):
            calls.append(("f", self.name, training))
            return x + 1

        def backward(self, g):
            calls.append(("b", self.name))
            return g * 2

    net = Sequential(Tag("a"), Tag("b"), Tag("c"))
    assert net(np.zeros(1), training=True).tolist() == [3.0]
    assert net.backward(np.ones(1)).tolist() == [8.0]
    assert calls == [
        ("f", "a", True),
        ("f", "b", True),
        ("f", "c", True),
        ("b", "c"),
        ("b", "b"),
        ("b", "a"),
    ]


def test_indexing_len_iteration_append():
    a, b, c = Linear(4, 3), ReLU(), Linear(3, 2)
    net = Sequential(a, b)
    assert len(net) == 2 and net[0] is a and net[-1] is b and list(net) == [a, b]
    assert net.append(c) is net and len(net) == 3 and net[2] is c
    head = net[:2]
    assert isinstance(head, Sequential) and list(head) == [a, b]
    assert head.output_shape((7, 4)) == (7, 3)
    assert [n for n, _ in net.children()] == ["0", "1", "2"]
    assert len(net.parameters()) == 4
    assert len(Sequential()) == 0
    np.testing.assert_array_equal(Sequential()(np.ones(2)), np.ones(2))


def test_output_shape_chains():
    net = Sequential(Flatten(), Linear(12, 5), ReLU(), Dropout(), Linear(5, 2))
    assert net.output_shape((8, 3, 2, 2)) == (8, 2)
    with pytest.raises(ValueError, match=r"Linear\(in_features=12, out_features=5\) expected"):
        net.output_shape((8, 3, 2, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_in_equals_dtype_out(dtype, rng):
    net = mlp(np.float32)
    x = rng.standard_normal((4, 4)).astype(dtype)
    y = net(x, training=True)
    assert y.dtype == dtype and net.backward(np.ones_like(y)).dtype == dtype


def test_repr_like_torch():
    net = Sequential(Linear(4, 3), ReLU(), Residual(Sequential(Linear(3, 3), Tanh())))
    assert repr(net) == (
        "Sequential(\n"
        "  (0): Linear(in_features=4, out_features=3)\n"
        "  (1): ReLU()\n"
        "  (2): Residual(\n"
        "    (block): Sequential(\n"
        "      (0): Linear(in_features=3, out_features=3)\n"
        "      (1): Tanh()\n"
        "    )\n"
        "  )\n"
        ")"
    )
    assert repr(Sequential()) == "Sequential()"


# -- Residual behaviour -------------------------------------------------------------------------
def test_residual_golden_and_shape():
    r = Residual(ReLU())
    np.testing.assert_array_equal(r(np.array([-1.0, 2.0])), [-1.0, 4.0])
    np.testing.assert_array_equal(r.backward(np.array([1.0, 1.0])), [1.0, 2.0])
    assert r.output_shape((2, 5)) == (2, 5)


def test_errors():
    with pytest.raises(TypeError, match="Sequential expected Module layers, got ufunc"):
        Sequential(np.tanh)
    with pytest.raises(TypeError, match="expected Module layers, got int"):
        Sequential().append(3)
    with pytest.raises(IndexError, match="index 2 is out of range for Sequential of length 2"):
        Sequential(ReLU(), ReLU())[2]
    with pytest.raises(TypeError, match="indices must be ints or slices, got str"):
        Sequential(ReLU())["0"]
    with pytest.raises(TypeError, match="Residual expected Module layers"):
        Residual("block")
    with pytest.raises(
        ValueError,
        match=r"Residual: the block must keep the shape of its input, got \(2, 4\) -> \(2, 3\)",
    ):
        Residual(Linear(4, 3)).output_shape((2, 4))
    with pytest.raises(ValueError, match=r"got \(2, 4\) -> \(2, 3\)"):
        Residual(Linear(4, 3))(np.zeros((2, 4), dtype=np.float32))
