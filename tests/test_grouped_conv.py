"""Grouped and depthwise convolution (groups=...): PyTorch parity, gradients, errors, files."""

import numpy as np
import pytest

from clearconv import nn
from tests.gradcheck import check_layer

CASES = [  # (in, out, kernel, stride, padding, dilation, groups)
    (4, 6, 3, 1, 1, 1, 2),
    (6, 6, (3, 2), 2, (1, 0), 1, 3),
    (4, 4, 3, 1, 1, 1, 4),  # depthwise
    (3, 6, 3, 2, 2, 2, 3),  # depthwise with a channel multiplier of 2
    (4, 8, 1, 1, 0, 1, 2),
    (5, 5, 3, 1, "same", 1, 5),
]


def _layer(cls, case, dtype=np.float64, seed=0):
    c, o, k, s, p, d, g = case
    return cls(c, o, k, s, p, d, g, rng=np.random.default_rng(seed), dtype=dtype)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("textbook", [False, True])
def test_grouped_conv2d_matches_torch(case, textbook):
    torch = pytest.importorskip("torch")
    c, o, k, s, p, d, g = case
    ours = nn.use_textbook(_layer(nn.Conv2d, case), textbook)
    ref = torch.nn.Conv2d(c, o, k, s, p, d, g, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(ours.weight.data))
        ref.bias.copy_(torch.from_numpy(ours.bias.data))
    x = np.random.default_rng(1).standard_normal((3, c, 9, 8))
    xt = torch.tensor(x, requires_grad=True)
    y = ref(xt)
    dy = np.random.default_rng(2).standard_normal(tuple(y.shape))
    y.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(ours(x, training=True), y.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.backward(dy), xt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, ref.weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.bias.grad, ref.bias.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("textbook", [False, True])
def test_grouped_conv1d_matches_torch(textbook):
    torch = pytest.importorskip("torch")
    ours = nn.use_textbook(
        nn.Conv1d(6, 4, 3, 2, 1, groups=2, rng=np.random.default_rng(0), dtype=np.float64), textbook
    )
    ref = torch.nn.Conv1d(6, 4, 3, 2, 1, groups=2, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(ours.weight.data))
        ref.bias.copy_(torch.from_numpy(ours.bias.data))
    x = np.random.default_rng(1).standard_normal((2, 6, 11))
    xt = torch.tensor(x, requires_grad=True)
    y = ref(xt)
    y.backward(torch.ones_like(y))
    np.testing.assert_allclose(ours(x, training=True), y.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.backward(np.ones(y.shape)), xt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.weight.grad, ref.weight.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("case", CASES[:4])
@pytest.mark.parametrize("textbook", [False, True])
def test_grouped_conv2d_gradients_match_finite_differences(case, textbook):
    layer = nn.use_textbook(_layer(nn.Conv2d, case), textbook)
    x = np.random.default_rng(3).standard_normal((2, case[0], 6, 5))
    check_layer(layer, x)


def test_depthwise_is_one_convolution_per_channel():
    """Each output channel of a depthwise convolution sees its own input channel only."""
    dw = nn.Conv2d(3, 3, 3, padding=1, groups=3, rng=np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6))
    y = dw(x)
    for c in range(3):
        one = nn.Conv2d(1, 1, 3, padding=1, rng=np.random.default_rng(0), dtype=np.float64)
        one.weight.data, one.bias.data = dw.weight.data[c : c + 1], dw.bias.data[c : c + 1]
        np.testing.assert_allclose(y[:, c : c + 1], one(x[:, c : c + 1]), atol=1e-12)


def test_grouped_conv_float32_stays_float32():
    layer = nn.Conv2d(4, 8, 3, groups=4, rng=np.random.default_rng(0))
    y = layer(np.ones((2, 4, 5, 5), np.float32), training=True)
    assert y.dtype == np.float32
    assert layer.backward(np.ones_like(y)).dtype == np.float32
    assert layer.weight.grad.dtype == np.float32


@pytest.mark.parametrize("cls", [nn.Conv2d, nn.Conv1d])
def test_groups_that_do_not_divide_the_channels_are_refused(cls):
    name = cls.__name__
    with pytest.raises(
        ValueError,
        match=f"{name}: in_channels must be divisible by groups, got in_channels=3 and groups=2",
    ):
        cls(3, 6, 3, groups=2)
    with pytest.raises(
        ValueError,
        match=f"{name}: out_channels must be divisible by groups, got out_channels=6 and groups=4",
    ):
        cls(4, 6, 3, groups=4)


@pytest.mark.parametrize("bad", [0, -1])
def test_groups_below_one_are_refused(bad):
    with pytest.raises(ValueError, match=f"Conv2d: groups must be >= 1, got {bad}"):
        nn.Conv2d(2, 2, 3, groups=bad)
    with pytest.raises(TypeError, match="groups must be an int"):
        nn.Conv2d(2, 2, 3, groups=1.5)


def test_groups_shape_the_weight_and_repr():
    layer = nn.Conv2d(8, 4, 3, groups=2)
    assert layer.weight.shape == (4, 4, 3, 3)
    assert repr(layer) == "Conv2d(8, 4, kernel_size=3, groups=2)"
    assert "groups" not in repr(nn.Conv2d(8, 4, 3))
    assert nn.Conv1d(4, 4, 5, groups=4).weight.shape == (4, 1, 5)


def test_config_carries_groups_only_when_not_one():
    net = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 2, 1))
    cfg = nn.to_config(net)
    assert cfg["layers"][0]["groups"] == 4
    assert "groups" not in cfg["layers"][1]  # as files written before groups existed
    back = nn.from_config(cfg)
    assert back[0].groups == 4 and back[0].weight.shape == (4, 1, 3, 3)
    assert back[1].groups == 1


def test_groups_survive_a_model_file(tmp_path):
    from clearconv.io import load, save
    from clearconv.model import Model

    r = np.random.default_rng(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2, rng=r), nn.Flatten(), nn.Linear(36, 2, rng=r))
    x = np.random.default_rng(1).standard_normal((1, 2, 5, 5)).astype(np.float32)
    save(Model(net, (2, 5, 5), ["a", "b"]), tmp_path / "m.npz")
    again = load(tmp_path / "m.npz")
    assert again.net[0].groups == 2
    np.testing.assert_array_equal(again(x), net(x))


def test_summary_counts_a_grouped_convolution_s_multiply_adds():
    import clearconv

    text = str(clearconv.summary(nn.Sequential(nn.Conv2d(4, 8, 3, groups=4)), (4, 10, 10)))
    assert "4,608" in text  # 8 x 8 x 8 outputs, each 1 channel x 3 x 3: not 4 channels' worth
