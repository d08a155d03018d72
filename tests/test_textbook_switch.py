"""The textbook switch: nn.use_textbook runs a network on clearconv.functional, same numbers."""

import copy

import numpy as np
import pytest

from clearconv import nn, zoo
from clearconv.engine import activation, conv, grouped, linear, loss, norm, pool
from clearconv.engine.plan import no_input_grad
from clearconv.optim import SGD, Adam

ENGINE_MODULES = [activation, conv, grouped, linear, loss, norm, pool]
SHAPE_ARITHMETIC = {"out_size", "pool_out_size"}  # the layers' output_shape: ints, not arrays


def _lenet_pair(seed=0):
    net, _ = zoo.build("lenet5", rng=np.random.default_rng(seed))
    return net, nn.use_textbook(copy.deepcopy(net))


def _batch(n=16, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, n)


def _step(net, ce, opt, x, y):
    opt.zero_grad()
    value = ce(net(x, training=True), y)
    with no_input_grad(net):  # as training runs: the data is not learned
        net.backward(ce.backward())
    grads = {k: p.grad.copy() for k, p in net.named_parameters()}
    opt.step()
    return float(value), grads


def _close32(a, b):
    """Equal to float32 rounding, relative to the array's largest value (measured: 4e-7)."""
    assert a.dtype == b.dtype == np.float32
    scale = float(np.max(np.abs(b)))
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * scale)


def test_lenet5_training_step_is_the_same_on_engine_and_textbook():
    fast, book = _lenet_pair()
    assert all(m.textbook for m in book.modules())
    assert not any(getattr(m, "textbook", False) for m in fast.modules())
    x, y = _batch()
    ce_fast, ce_book = nn.CrossEntropyLoss(), nn.use_textbook(nn.CrossEntropyLoss())
    opt_fast = SGD(fast.parameters(), lr=0.1, momentum=0.9)
    opt_book = SGD(book.parameters(), lr=0.1, momentum=0.9)
    loss_fast, g_fast = _step(fast, ce_fast, opt_fast, x, y)
    loss_book, g_book = _step(book, ce_book, opt_book, x, y)
    assert loss_fast == pytest.approx(loss_book, rel=1e-6)
    assert set(g_fast) == set(g_book) and len(g_fast) == 10
    for k in g_fast:
        assert g_book[k].dtype == np.float32
        _close32(g_book[k], g_fast[k])
    for (_, a), (_, b) in zip(fast.named_parameters(), book.named_parameters()):
        _close32(b.data, a.data)


def test_lenet5_loss_curve_is_the_same_both_ways():
    fast, book = _lenet_pair(seed=3)
    ce_fast, ce_book = nn.CrossEntropyLoss(), nn.use_textbook(nn.CrossEntropyLoss())
    opt_fast, opt_book = Adam(fast.parameters(), lr=1e-3), Adam(book.parameters(), lr=1e-3)
    curves = ([], [])
    for step in range(6):
        x, y = _batch(seed=10 + step)
        curves[0].append(_step(fast, ce_fast, opt_fast, x, y)[0])
        curves[1].append(_step(book, ce_book, opt_book, x, y)[0])
    np.testing.assert_allclose(curves[1], curves[0], rtol=1e-5)
    assert curves[0][-1] < curves[0][0]  # it learns, so the curve is not flat by accident


def _every_layer_net(rng):
    """A network with every layer type the switch must reach.

    No bias before a batch norm: its gradient is 0 up to rounding, nothing to compare.
    """
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False, rng=rng),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(4, 4, 3, padding=1, groups=4, rng=rng),
        nn.LeakyReLU(0.1),
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        nn.Residual(nn.Sequential(nn.Conv2d(4, 4, 1, rng=rng), nn.Tanh())),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16, 12, bias=False, rng=rng),
        nn.BatchNorm1d(12),
        nn.Dropout(0.3, rng=np.random.default_rng(7)),
        nn.Sigmoid(),
        nn.Linear(12, 5, rng=rng),
        nn.Softmax(dim=1),
    )


def _every_layer_net_1d(rng):
    return nn.Sequential(
        nn.Conv1d(2, 4, 3, padding="same", rng=rng),
        nn.MaxPool1d(2),
        nn.Conv1d(4, 4, 3, groups=2, rng=rng),
        nn.AvgPool1d(2, ceil_mode=True),
        nn.Flatten(),
    )


@pytest.fixture
def no_engine(monkeypatch):
    """Make every public function of the engine raise, to show that the textbook never calls it."""

    def refuse(*args, **kwargs):
        raise AssertionError("the engine ran on the textbook")

    for module in ENGINE_MODULES:
        for name, value in vars(module).items():
            if name in SHAPE_ARITHMETIC or name.startswith("_") or not callable(value):
                continue
            if getattr(value, "__module__", None) == module.__name__:
                monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize("build", [_every_layer_net, _every_layer_net_1d])
def test_the_switch_reaches_every_layer(build):
    net = build(np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal(
        (4, 2, 8, 8)[: 3 if build is _every_layer_net_1d else 4]
    )
    x = x.astype(np.float32)
    book = nn.use_textbook(copy.deepcopy(net))
    outputs, grads = [], []
    for m in (net, book):
        y = m(x, training=True)
        outputs.append(y)
        # A random upstream gradient: a constant one would vanish through the softmax.
        dy = np.random.default_rng(2).standard_normal(y.shape).astype(np.float32)
        grads.append(m.backward(dy))
    _close32(outputs[1], outputs[0])
    _close32(grads[1], grads[0])
    for (_, a), (_, b) in zip(net.named_parameters(), book.named_parameters()):
        _close32(b.grad, a.grad)


@pytest.mark.parametrize("build", [_every_layer_net, _every_layer_net_1d])
def test_the_textbook_never_calls_the_engine(build, no_engine):
    book = nn.use_textbook(build(np.random.default_rng(0)))
    x = np.ones((4, 2, 8, 8)[: 3 if build is _every_layer_net_1d else 4], np.float32)
    y = book(x, training=True)
    book.backward(np.ones_like(y))
    ce, mse = nn.use_textbook(nn.CrossEntropyLoss()), nn.use_textbook(nn.MSELoss())
    ce(np.zeros((2, 3), np.float32), np.array([0, 2]))
    ce.backward()
    mse(np.zeros(3, np.float32), np.ones(3, np.float32))
    mse.backward()
    with pytest.raises(AssertionError, match="the engine ran"):  # and the engine path does
        nn.use_textbook(book, False)(x)


def test_one_layer_may_be_switched_alone_and_switched_back():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0)), nn.ReLU())
    net[0].textbook = True
    assert [m.textbook for m in net] == [True, False]
    assert nn.use_textbook(net, False) is net
    assert not any(m.textbook for m in net.modules())


def test_backward_follows_the_core_its_forward_ran_on():
    layer = nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((2, 1, 5, 5))
    y = layer(x, training=True)
    layer.textbook = True  # switched between forward and backward
    dx = layer.backward(np.ones_like(y))
    layer.textbook = False
    layer.zero_grad()
    layer(x, training=True)
    np.testing.assert_allclose(dx, layer.backward(np.ones_like(y)), atol=1e-12)


def test_use_textbook_rejects_what_has_no_switch():
    with pytest.raises(
        TypeError, match="use_textbook expected a clearconv layer, network or loss, got int"
    ):
        nn.use_textbook(3)
    with pytest.raises(TypeError, match="use_textbook: on must be True or False, got 'yes'"):
        nn.use_textbook(nn.ReLU(), on="yes")
