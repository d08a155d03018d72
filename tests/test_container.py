"""Sequential and Residual: order, gradients, names, shapes, repr."""

import numpy as np
import pytest

import clearconv.nn
from clearconv.engine.plan import run_order
from clearconv.nn import (
    AdaptiveAvgPool2d,
    Add,
    AvgPool1d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Concat,
    Conv1d,
    Conv2d,
    ConvTranspose2d,
    Dropout,
    Flatten,
    Identity,
    Linear,
    MaxPool1d,
    MaxPool2d,
    Module,
    Parameter,
    ReLU,
    Residual,
    Sequential,
    Sigmoid,
    Tanh,
    Upsample,
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


# -- in-place ReLU: only on arrays the layers made and dropped --------------------------------
def conv_net(seed=0):
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(2, 4, 3, padding=1, rng=rng),
        ReLU(),
        MaxPool2d(2),
        ReLU(),
        Conv2d(4, 3, 3, rng=rng),
        BatchNorm2d(3),
        ReLU(),
        Flatten(),
        Linear(12, 5, rng=rng),
        ReLU(),
        Residual(Sequential(ReLU(), Linear(5, 5, rng=rng))),
        ReLU(),
        Linear(5, 3, rng=rng),
    )


def layer_by_layer(net, x, g, training):
    """The reference: ``net``'s layers called one by one in the declared order
    (never in place, never reordered); returns ``(y, dx)``."""
    for layer in net:
        x = layer(x, training=training)
    y = x
    for layer in reversed(list(net)):
        g = layer.backward(g)
    return y, g


@pytest.mark.parametrize("training", [True, False])
def test_in_place_relu_gives_the_layer_by_layer_results(training, rng):
    # The same net run layer by layer (never in place) is the reference: outputs,
    # input gradient and every parameter gradient agree exactly, so no in-place
    # write reached an array a layer still needed.
    net, ref = conv_net(), conv_net()
    x = rng.standard_normal((4, 2, 8, 8)).astype(np.float32)
    g = rng.standard_normal((4, 3)).astype(np.float32)
    y = net(x, training=training)
    dx = net.backward(g)
    ref_y, ref_dx = layer_by_layer(ref, x, g, training)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(dx, ref_dx)
    for (name, p), (_, q) in zip(net.named_parameters(), ref.named_parameters(), strict=True):
        np.testing.assert_array_equal(p.grad, q.grad, err_msg=name)


def test_relu_after_a_convolution_writes_over_its_output(rng):
    conv = Conv2d(1, 2, 3, rng=rng)
    made = []
    forward = conv.forward
    conv.forward = lambda x, training=False: made.append(forward(x, training)) or made[-1]
    net = Sequential(conv, ReLU())
    y = net(rng.standard_normal((2, 1, 5, 5)).astype(np.float32))
    assert np.shares_memory(y, made[0])
    assert y.min() >= 0


def test_the_callers_arrays_are_never_written(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    g = rng.standard_normal((3, 4)).astype(np.float32)
    x0, g0 = x.copy(), g.copy()
    for net in (
        Sequential(ReLU(), Linear(4, 4, rng=rng), ReLU()),
        Sequential(Residual(Sequential(ReLU())), ReLU()),
        Sequential(Flatten(), ReLU()),  # Flatten's output is a view of x
        Sequential(Dropout(0.5), ReLU()),  # Dropout in eval returns x itself
    ):
        net(x, training=False)
        net.backward(g)
        np.testing.assert_array_equal(x, x0)
        np.testing.assert_array_equal(g, g0)


def _arrays(value, seen=None):
    """Every NumPy array reachable from ``value`` (a layer's attributes, tuples, Parameters)."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, Parameter):
        yield from _arrays((value.data, value.grad))
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _arrays(v)
    elif isinstance(value, dict):
        yield from _arrays(list(value.values()))
    elif isinstance(value, Module):
        yield from _arrays(list(vars(value).values()))


FRESH = [
    (lambda r: Conv2d(2, 3, 3, padding=1, rng=r), (2, 2, 5, 5)),
    (lambda r: Conv2d(2, 3, 1, stride=2, rng=r), (2, 2, 5, 5)),
    (lambda r: Conv1d(2, 3, 3, rng=r), (2, 2, 7)),
    (lambda r: Linear(4, 3, rng=r), (5, 4)),
    (lambda r: BatchNorm1d(4), (5, 4)),
    (lambda r: BatchNorm2d(2, affine=False), (3, 2, 2, 2)),
    (lambda r: MaxPool2d(2), (2, 2, 4, 4)),
    (lambda r: MaxPool2d(1), (2, 2, 3, 3)),
    (lambda r: MaxPool2d(3, 2, padding=1), (2, 2, 5, 5)),
    (lambda r: MaxPool1d(2), (2, 2, 6)),
    (lambda r: AvgPool2d(2), (2, 2, 4, 4)),
    (lambda r: AvgPool2d(1), (2, 2, 3, 3)),
    (lambda r: AvgPool2d(3, 2, padding=1), (2, 2, 5, 5)),
    (lambda r: AvgPool1d(2), (2, 2, 6)),
    (lambda r: AdaptiveAvgPool2d(1), (2, 2, 3, 3)),
    (lambda r: AdaptiveAvgPool2d((None, 3)), (2, 2, 3, 3)),
    (lambda r: Residual(ReLU()), (3, 4)),
    (lambda r: Residual(Linear(4, 4, rng=r)), (3, 4)),
    (lambda r: Concat(Identity(), ReLU()), (3, 4)),
    (lambda r: ConvTranspose2d(2, 3, 3, rng=r, bias=False), (2, 2, 4, 4)),
    (lambda r: ConvTranspose2d(2, 4, 2, stride=2, groups=2, rng=r), (2, 2, 3, 3)),
    (lambda r: Upsample(2), (2, 2, 3, 3)),
    (lambda r: Upsample(1.5, mode="bilinear"), (2, 2, 4, 4)),
    (lambda r: Concat(Identity(), ReLU()), (2, 2, 3, 3)),
    (lambda r: Add(Identity(), Linear(4, 4, rng=r)), (3, 4)),
]


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("make, shape", FRESH)
def test_fresh_output_layers_return_memory_nobody_else_holds(make, shape, training, rng):
    # What lets Sequential's ReLU overwrite a layer's output (and its input gradient).
    layer = make(rng)
    assert layer.traits.fresh
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer(x, training=training)
    held = [x, *_arrays(layer)]
    assert not any(np.shares_memory(y, a) for a in held)
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = layer.backward(g)
    held = [x, y, g, *_arrays(layer)]
    assert not any(np.shares_memory(dx, a) for a in held)


def test_every_layer_that_claims_fresh_arrays_is_checked(rng):
    claimed = {
        name
        for name in clearconv.nn.__all__
        if isinstance(getattr(clearconv.nn, name), type)
        and issubclass(getattr(clearconv.nn, name), Module)
        and getattr(clearconv.nn, name).traits.fresh
    }
    checked = {type(make(rng)).__name__ for make, _ in FRESH}
    assert claimed == checked


# -- ReLU then max pooling runs as max pooling then ReLU ---------------------------------------
@pytest.mark.parametrize(
    "pool",
    [
        lambda: MaxPool2d(2),
        lambda: MaxPool2d(3, 1, padding=1),  # overlapping windows, padding
        lambda: MaxPool2d(3, 2, ceil_mode=True),  # windows past the edge
        lambda: MaxPool2d(2, dilation=2),
    ],
)
@pytest.mark.parametrize("training", [True, False])
def test_relu_before_max_pool_gives_the_layer_by_layer_results(pool, training, rng):
    # Small integers make ties (among positives, among zeros) and windows with
    # no positive value: the gradient must still reach exactly the same places.
    copy = Linear(12, 12)  # an identity: x as a new array, ties kept
    copy.weight.data[...] = np.eye(12)
    copy.bias.data[...] = 0
    net = Sequential(copy, ReLU(), pool(), ReLU(), pool())
    x = rng.integers(-3, 4, (3, 2, 13, 12)).astype(np.float32)
    x[0, 0, :3] = -1.0  # whole windows of negatives
    x[0, 1] = np.nan  # NaN spreads alike either way
    g = rng.standard_normal(net(x, training=training).shape).astype(np.float32)
    y = net(x, training=training)
    dx = net.backward(g)
    ref_y, ref_dx = layer_by_layer(net, x, g, training)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(dx, ref_dx)


def test_relu_before_max_pool_works_on_the_pooled_array(rng):
    relu, seen = ReLU(), []
    forward, in_place = relu.forward, relu.forward_in_place  # the planner calls one of them
    relu.forward = lambda x, *a, **kw: seen.append(x.shape) or forward(x, *a, **kw)
    relu.forward_in_place = lambda x, *a, **kw: seen.append(x.shape) or in_place(x, *a, **kw)
    net = Sequential(Conv2d(1, 2, 3, padding=1, rng=rng), relu, MaxPool2d(2))
    assert net(rng.standard_normal((2, 1, 6, 6)).astype(np.float32)).shape == (2, 2, 3, 3)
    assert seen == [(2, 2, 3, 3)]
    assert [type(m).__name__ for m in run_order(list(net))] == [
        "Conv2d",
        "MaxPool2d",
        "ReLU",
    ]
    # Not for average pooling, which does not commute with ReLU.
    order = run_order([ReLU(), AvgPool2d(2), ReLU(), MaxPool1d(2)])
    assert [type(m).__name__ for m in order] == ["ReLU", "AvgPool2d", "MaxPool1d", "ReLU"]


# -- the planner: the first layer's unused input gradient ------------------------------------
@pytest.mark.parametrize(
    "first",
    [
        lambda r: Conv2d(1, 2, 3, padding=1, rng=r),  # backward_params: no dx at all
        lambda r: Sequential(Conv2d(1, 2, 3, padding=1, rng=r), ReLU()),  # nested, the same
        lambda r: BatchNorm2d(1),  # parameters, no backward_params: dx made and dropped
        lambda r: ReLU(),  # nothing to learn: not run backward at all
    ],
)
def test_without_input_grad_the_parameter_gradients_stay_and_none_is_returned(first, rng):
    def net():
        r = np.random.default_rng(3)
        head = first(r)
        width = 2 if not isinstance(head, (ReLU, BatchNorm2d)) else 1
        return Sequential(head, Flatten(), Linear(width * 16, 3, rng=r))

    x = rng.standard_normal((2, 1, 4, 4)).astype(np.float32)
    g = rng.standard_normal((2, 3)).astype(np.float32)
    full, skipped = net(), net()
    full(x, training=True)
    assert full.backward(g) is not None
    skipped.needs_input_grad = False
    skipped(x, training=True)
    assert skipped.backward(g) is None
    for (name, a), (_, b) in zip(full.named_parameters(), skipped.named_parameters()):
        np.testing.assert_array_equal(a.grad, b.grad, err_msg=name)
    steps = {type(s.layer).__name__: s.backward for s in skipped._plan(False)}
    assert (
        steps[type(skipped[0]).__name__]
        == {
            "Conv2d": "backward_params",
            "Sequential": "backward_params",
            "BatchNorm2d": "backward",
            "ReLU": None,
        }[type(skipped[0]).__name__]
    )
