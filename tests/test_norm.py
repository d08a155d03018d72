"""BatchNorm1d and BatchNorm2d: gradients, PyTorch parity, running statistics."""

import numpy as np
import pytest

from clearconv.nn import BatchNorm1d, BatchNorm2d
from gradcheck import check_layer

CASES = [(BatchNorm1d, (6, 3)), (BatchNorm1d, (4, 3, 5)), (BatchNorm2d, (3, 3, 4, 5))]


def randomise(bn, rng):
    """Non-trivial affine parameters and running statistics."""
    c = bn.num_features
    if bn.affine:
        bn.weight.data = rng.uniform(0.5, 1.5, c).astype(bn.weight.dtype)
        bn.bias.data = rng.standard_normal(c).astype(bn.bias.dtype)
    if bn.track_running_stats:
        bn.running_mean[...] = rng.standard_normal(c)
        bn.running_var[...] = rng.uniform(0.5, 2.0, c)
    return bn


# -- gradient checks (float64) -------------------------------------------------------
@pytest.mark.parametrize(("cls", "shape"), CASES)
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(cls, shape, training, rng):
    bn = randomise(cls(shape[1], dtype=np.float64), rng)
    x = rng.standard_normal(shape) * 2 + 1
    check_layer(bn, x, training=training)


@pytest.mark.parametrize("training", [True, False])
def test_gradcheck_without_affine_or_running_stats(training, rng):
    check_layer(
        BatchNorm2d(2, affine=False, dtype=np.float64),
        rng.standard_normal((2, 2, 3, 3)),
        training=training,
    )
    # Without running statistics eval also normalises with the batch's own.
    check_layer(
        BatchNorm1d(3, track_running_stats=False, dtype=np.float64),
        rng.standard_normal((5, 3)),
        training=training,
    )


# -- PyTorch parity ----------------------------------------------------------------------
def torch_twin(torch, ours):
    cls = getattr(torch.nn, type(ours).__name__)
    theirs = cls(
        ours.num_features,
        eps=ours.eps,
        momentum=ours.momentum,
        affine=ours.affine,
        track_running_stats=ours.track_running_stats,
    )
    state = {k: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()}
    theirs.load_state_dict(state)
    return theirs


def compare(torch, ours, theirs, x, g, training):
    theirs.train(training)
    y = ours(x, training=training)
    dx = ours.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    yt.backward(torch.tensor(g))
    assert y.dtype == dx.dtype == x.dtype
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    if ours.affine:
        np.testing.assert_allclose(
            ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-4, atol=1e-4
        )
        np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), rtol=1e-5, atol=1e-4)
        ours.zero_grad()
        theirs.zero_grad()


@pytest.mark.parametrize(("cls", "shape"), CASES)
@pytest.mark.parametrize("training", [True, False])
def test_torch_parity(cls, shape, training, rng):
    torch = pytest.importorskip("torch")
    ours = randomise(cls(shape[1]), rng)
    theirs = torch_twin(torch, ours)
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    g = rng.standard_normal(shape).astype(np.float32)
    compare(torch, ours, theirs, x, g, training)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
@pytest.mark.parametrize(("cls", "shape"), CASES)
def test_running_stats_match_torch_over_steps(momentum, cls, shape, rng):
    torch = pytest.importorskip("torch")
    ours = cls(shape[1], momentum=momentum)
    theirs = torch_twin(torch, ours)
    for step in range(5):
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(np.float32)
        g = rng.standard_normal(shape).astype(np.float32)
        compare(torch, ours, theirs, x, g, training=True)
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(
            ours.state_dict()[key], value.numpy(), rtol=1e-5, atol=1e-6, err_msg=key
        )
    assert ours.num_batches_tracked.dtype == np.int64 and ours.num_batches_tracked.shape == ()
    assert int(ours.num_batches_tracked) == 5
    # eval afterwards uses the running statistics, as torch does
    x = rng.standard_normal(shape).astype(np.float32)
    compare(torch, ours, theirs, x, np.ones_like(x), training=False)


def test_no_running_stats_matches_torch(rng):
    torch = pytest.importorskip("torch")
    ours = BatchNorm2d(3, affine=False, track_running_stats=False)
    theirs = torch_twin(torch, ours)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    compare(torch, ours, theirs, x, rng.standard_normal(x.shape).astype(np.float32), False)
    assert ours.state_dict() == {}


def test_state_dict_keys_match_torch():
    torch = pytest.importorskip("torch")
    assert list(BatchNorm2d(4).state_dict()) == list(torch.nn.BatchNorm2d(4).state_dict())


# -- behaviour ------------------------------------------------------------------------
def test_golden_training_output():
    bn = BatchNorm1d(1, eps=0.0 + 1e-12, dtype=np.float64)
    y = bn(np.array([[1.0], [3.0]]), training=True)
    np.testing.assert_allclose(y, [[-1.0], [1.0]])
    np.testing.assert_allclose(bn.running_mean, [0.2])  # 0.9 * 0 + 0.1 * 2
    np.testing.assert_allclose(bn.running_var, [1.1])  # 0.9 * 1 + 0.1 * 2 (unbiased)


def test_eval_does_not_update_running_stats(rng):
    bn = BatchNorm2d(2)
    before = {k: np.copy(v) for k, v in bn.state_dict().items()}
    bn(rng.standard_normal((2, 2, 3, 3)).astype(np.float32), training=False)
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_state_dict_arrays_are_live_buffers(rng):
    bn = BatchNorm1d(2)
    sd = bn.state_dict()
    bn(rng.standard_normal((4, 2)).astype(np.float32), training=True)
    assert sd["running_mean"] is bn.running_mean and np.any(sd["running_mean"] != 0)


@pytest.mark.parametrize("wdtype", [np.float32, np.float64])
@pytest.mark.parametrize("xdtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
def test_dtype_in_equals_dtype_out(wdtype, xdtype, training, rng):
    bn = BatchNorm2d(3, dtype=wdtype)
    x = rng.standard_normal((2, 3, 2, 2)).astype(xdtype)
    y = bn(x, training=training)
    assert y.dtype == xdtype and bn.backward(np.ones_like(y)).dtype == xdtype
    assert bn.weight.grad.dtype == wdtype and bn.running_mean.dtype == wdtype


def test_output_shape_and_repr():
    assert BatchNorm1d(3).output_shape((5, 3)) == (5, 3)
    assert BatchNorm1d(3).output_shape((5, 3, 7)) == (5, 3, 7)
    assert BatchNorm2d(3).output_shape((5, 3, 7, 2)) == (5, 3, 7, 2)
    assert repr(BatchNorm2d(16)) == "BatchNorm2d(16)"
    assert repr(BatchNorm1d(4, eps=1e-3, momentum=None, affine=False)) == (
        "BatchNorm1d(4, eps=0.001, momentum=None, affine=False)"
    )
    assert repr(BatchNorm2d(4, track_running_stats=False)) == (
        "BatchNorm2d(4, track_running_stats=False)"
    )
    bn = BatchNorm2d(4)
    assert bn.weight.data.tolist() == [1.0] * 4 and bn.bias.data.tolist() == [0.0] * 4
    assert bn.running_var.tolist() == [1.0] * 4 and bn.running_mean.tolist() == [0.0] * 4


def test_errors():
    with pytest.raises(
        ValueError,
        match=r"Expected more than 1 value per channel when training, "
        r"got input of shape \(1, 3\)",
    ):
        BatchNorm1d(3)(np.zeros((1, 3), dtype=np.float32), training=True)
    with pytest.raises(ValueError, match=r"got input of shape \(1, 3, 1, 1\)"):
        BatchNorm2d(3)(np.zeros((1, 3, 1, 1), dtype=np.float32), training=True)
    BatchNorm2d(3)(np.zeros((1, 3, 1, 1), dtype=np.float32))  # eval is fine
    with pytest.raises(
        ValueError,
        match=r"BatchNorm2d\(3\) expected input of shape \(N, 3, H, W\), got \(2, 4, 5, 5\)",
    ):
        BatchNorm2d(3)(np.zeros((2, 4, 5, 5), dtype=np.float32))
    with pytest.raises(
        ValueError,
        match=r"BatchNorm1d\(3\) expected input of shape \(N, 3\) or \(N, 3, L\), "
        r"got \(2, 3, 4, 4\)",
    ):
        BatchNorm1d(3).output_shape((2, 3, 4, 4))
    with pytest.raises(TypeError, match="got dtype int64"):
        BatchNorm1d(3)(np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="num_features must be >= 1"):
        BatchNorm2d(0)
    with pytest.raises(ValueError, match=r"eps must be > 0\.0"):
        BatchNorm2d(3, eps=0)
    with pytest.raises(ValueError, match=r"momentum must be <= 1.0, got 1.5"):
        BatchNorm2d(3, momentum=1.5)
    with pytest.raises(TypeError, match="affine must be a bool"):
        BatchNorm2d(3, affine=None)
    with pytest.raises(RuntimeError, match="backward called before forward"):
        BatchNorm2d(3).backward(np.zeros((2, 3, 1, 1)))
