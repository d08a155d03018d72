"""Branches and merges (Concat, Add, Identity) and the classic layers (LRN, ChannelShuffle,
ReLU6): float64 gradient checks, PyTorch parity of branched nets, configs that round-trip."""

from __future__ import annotations

import numpy as np
import pytest

from clearconv import nn
from clearconv.nn import (
    Add,
    ChannelShuffle,
    Concat,
    Conv2d,
    Identity,
    LocalResponseNorm,
    MaxPool2d,
    ReLU,
    ReLU6,
    Sequential,
)
from tests.gradcheck import check_layer


def rng_(seed=0):
    return np.random.default_rng(seed)


def inception(c_in=4, dtype=np.float64, seed=0):
    """A GoogLeNet Inception block, scaled down: 1x1 | 1x1-3x3 | 1x1-5x5 | pool-1x1."""
    r = rng_(seed)

    def conv(i, o, k, p=0):
        return Conv2d(i, o, k, padding=p, rng=r, dtype=dtype)

    return Concat(
        Sequential(conv(c_in, 2, 1), ReLU()),
        Sequential(conv(c_in, 2, 1), ReLU(), conv(2, 3, 3, 1), ReLU()),
        Sequential(conv(c_in, 1, 1), ReLU(), conv(1, 2, 5, 2), ReLU()),
        Sequential(MaxPool2d(3, 1, padding=1), conv(c_in, 2, 1), ReLU()),
    )


def dense_block(c_in=3, growth=2, layers=3, dtype=np.float64, seed=0):
    """DenseNet: each layer's maps are concatenated to all the maps before it."""
    r = rng_(seed)
    out = []
    c = c_in
    for _ in range(layers):
        out.append(Concat(Identity(), Sequential(ReLU(), Conv2d(c, growth, 3, padding=1, rng=r,
                                                                dtype=dtype))))  # fmt: skip
        c += growth
    return Sequential(*out)


def unet3(dtype=np.float64, seed=0):
    """Skips across three levels: each level's maps are concatenated to the way back up.

    Upsampling is left out (no layer for it yet): levels keep their size, the
    depth of the nesting is what is tested.
    """
    r = rng_(seed)

    def conv(i, o):
        return Conv2d(i, o, 3, padding=1, rng=r, dtype=dtype)

    level3 = Sequential(conv(4, 4), ReLU())
    level2 = Sequential(conv(3, 4), ReLU(), Concat(Identity(), level3), conv(8, 3))
    level1 = Sequential(conv(2, 3), ReLU(), Concat(Identity(), level2), conv(6, 2))
    return Sequential(Concat(Identity(), level1), conv(4, 2))


# -- gradient checks ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: inception(), (2, 4, 5, 5)),
        (lambda: dense_block(), (2, 3, 4, 4)),
        (lambda: unet3(), (1, 2, 4, 4)),
        (lambda: Add(Identity(), Sequential(ReLU(), Identity()), ReLU()), (2, 3, 4)),
        (lambda: Concat(Identity(), ReLU(), dim=2), (2, 3, 4)),
        (lambda: LocalResponseNorm(3, alpha=0.5, beta=0.75, k=2.0), (2, 5, 3, 3)),
        (lambda: LocalResponseNorm(4, alpha=0.3, beta=1.5, k=1.0), (2, 6, 2)),
        (lambda: ChannelShuffle(3), (2, 6, 2, 2)),
        (lambda: ReLU6(), (3, 7)),
    ],
)
def test_gradcheck(make, shape):
    x = rng_(1).standard_normal(shape) * 3
    check_layer(make(), x)


def test_a_tensor_used_twice_gets_the_sum_of_both_gradients():
    # y = x + x: dL/dx = 2 g
    g = rng_(2).standard_normal((2, 3))
    net = Add(Identity(), Identity())
    net(np.zeros((2, 3)))
    np.testing.assert_array_equal(net.backward(g), 2 * g)
    cat = Concat(Identity(), Identity())
    cat(np.zeros((2, 3)))
    gc = rng_(3).standard_normal((2, 6))
    np.testing.assert_array_equal(cat.backward(gc), gc[:, :3] + gc[:, 3:])


# -- PyTorch parity -----------------------------------------------------------------------------
def _torch_twin(torch, module):
    """The same architecture in torch, children named alike so state_dicts copy 1:1."""
    tnn = torch.nn

    class TConcat(tnn.Module):
        def __init__(self, branches, dim):
            super().__init__()
            for i, b in enumerate(branches):
                self.add_module(str(i), b)
            self.dim = dim

        def forward(self, x):
            return torch.cat([b(x) for b in self.children()], dim=self.dim)

    class TAdd(TConcat):
        def forward(self, x):
            return sum(b(x) for b in self.children())

    if isinstance(module, Concat):
        return TConcat([_torch_twin(torch, b) for b in module], module.dim)
    if isinstance(module, Add):
        return TAdd([_torch_twin(torch, b) for b in module], 1)
    if isinstance(module, Sequential):
        return tnn.Sequential(*[_torch_twin(torch, m) for m in module])
    if isinstance(module, Conv2d):
        return tnn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                          padding=module.padding, dtype=torch.float64)  # fmt: skip
    if isinstance(module, MaxPool2d):
        return tnn.MaxPool2d(module.kernel_size, module.stride, module.padding)
    if isinstance(module, LocalResponseNorm):
        return tnn.LocalResponseNorm(module.size, module.alpha, module.beta, module.k)
    simple = {ReLU: tnn.ReLU, Identity: tnn.Identity, ReLU6: tnn.ReLU6}
    if type(module) in simple:
        return simple[type(module)]()
    if isinstance(module, ChannelShuffle):
        return tnn.ChannelShuffle(module.groups)
    raise TypeError(type(module).__name__)


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: inception(c_in=6), (3, 6, 7, 7)),
        (lambda: dense_block(), (2, 3, 6, 6)),
        (lambda: unet3(), (2, 2, 6, 6)),
        (
            lambda: Sequential(LocalResponseNorm(5, 1e-2, 0.75, 2.0), ChannelShuffle(2), ReLU6()),
            (2, 8, 3, 3),
        ),
        (lambda: LocalResponseNorm(2), (2, 4, 3)),
        (lambda: LocalResponseNorm(6, alpha=0.1), (1, 9, 2, 2)),
    ],
)
def test_parity_with_torch_forward_and_backward(make, shape):
    torch = pytest.importorskip("torch")
    ours = make()
    theirs = _torch_twin(torch, ours).double()
    theirs.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in ours.state_dict().items()})
    x = rng_(4).standard_normal(shape) * 4
    y = ours(x, training=True)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng_(5).standard_normal(y.shape)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(ours.backward(g), xt.grad.numpy(), rtol=1e-9, atol=1e-12)
    grads = dict(ours.named_parameters())
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(grads[name].grad, p.grad.numpy(), rtol=1e-9, atol=1e-12)


# -- shapes, configs, errors ------------------------------------------------------------------
def test_output_shape_and_float32_in_float32_out():
    net = inception(c_in=4, dtype=np.float32)
    assert net.output_shape((2, 4, 9, 9)) == (2, 9, 9, 9)
    y = net(np.ones((2, 4, 9, 9), np.float32))
    assert y.shape == (2, 9, 9, 9) and y.dtype == np.float32
    assert net.backward(np.ones_like(y)).dtype == np.float32


@pytest.mark.parametrize("make", [inception, dense_block, unet3])
def test_config_round_trip_gives_the_same_net(make):
    net = make()
    cfg = nn.to_config(net)
    again = nn.from_config(cfg, rng=rng_(9), dtype=np.float64)
    again.load_state_dict(net.state_dict())
    assert nn.to_config(again) == cfg
    x = rng_(6).standard_normal((1, *{inception: (4, 5, 5), dense_block: (3, 4, 4),
                                      unet3: (2, 4, 4)}[make]))  # fmt: skip
    np.testing.assert_array_equal(again(x), net(x))


def test_config_infers_sizes_inside_branches():
    cfg = {"type": "Sequential", "layers": [
        {"type": "Concat", "branches": [
            {"type": "Conv2d", "out_channels": 2, "kernel_size": 1},
            {"type": "Sequential", "layers": [{"type": "Identity"}, {"type": "ReLU6"}]}]},
        {"type": "LocalResponseNorm", "size": 3},
        {"type": "Conv2d", "out_channels": 4, "kernel_size": 1}]}  # fmt: skip
    net = nn.from_config(cfg, input_shape=(3, 5, 5), rng=rng_(0))
    assert net[2].in_channels == 5
    assert net.output_shape((1, 3, 5, 5)) == (1, 4, 5, 5)


def test_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="at least one branch"):
        Concat()
    with pytest.raises(TypeError, match="expected Module branches, got int"):
        Add(Identity(), 3)
    with pytest.raises(ValueError, match="same sizes outside dim 1"):
        Concat(Identity(), MaxPool2d(2))(np.zeros((1, 2, 4, 4)))
    with pytest.raises(ValueError, match="same shape"):
        Add(Identity(), MaxPool2d(2)).output_shape((1, 2, 4, 4))
    with pytest.raises(ValueError, match="divisible by 3"):
        ChannelShuffle(3)(np.zeros((1, 4, 2, 2)))
    with pytest.raises(ValueError, match="size"):
        LocalResponseNorm(0)
    with pytest.raises(ValueError, match="needs a non-empty list 'branches'"):
        nn.from_config({"type": "Add", "branches": []})


def test_state_dict_names_follow_the_nesting():
    net = inception()
    names = list(net.state_dict())
    assert names[:2] == ["0.0.weight", "0.0.bias"] and "3.1.weight" in names
    assert repr(Concat(Identity(), dim=2)).startswith("Concat(dim=2,")
