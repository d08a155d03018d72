"""The branched classics of the zoo: torchvision's parameter counts, a forward pass on one
224x224 image each, and small variants of the same designs learning a colour task."""

from __future__ import annotations

import numpy as np
import pytest

from clearconv import nn, optim, zoo

# torchvision's counts (inference form), and ZFNet's from its paper's Fig. 3
CLASSICS = {
    "googlenet": 6_624_904,
    "squeezenet1_1": 1_235_496,
    "densenet121": 7_978_856,
    "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872,
    "zfnet": 62_357_608,
}


@pytest.mark.parametrize("name", sorted(CLASSICS))
def test_parameter_counts_and_one_224_image_forward(name):
    net, shape = zoo.build(name, rng=np.random.default_rng(0))
    assert shape == (3, 224, 224)
    assert sum(p.size for p in net.parameters()) == CLASSICS[name]
    x = np.random.default_rng(1).standard_normal((1, *shape)).astype(np.float32)
    y = net(x)
    assert y.shape == (1, 1000) == net.output_shape((1, *shape))
    assert y.dtype == np.float32 and np.isfinite(y).all()


def test_zfnet_layer_sizes_follow_the_paper():
    net, shape = zoo.build("zfnet", init=False)
    sizes, s = [], (1, *shape)
    for layer in net:
        s = layer.output_shape(s)
        if isinstance(layer, nn.MaxPool2d) or isinstance(layer, nn.Conv2d):
            sizes.append(s[2])
    # conv1 110, pool 55, conv2 26, pool 13, conv3-5 13, pool 6 (Zeiler & Fergus, Fig. 3)
    assert sizes == [110, 55, 26, 13, 13, 13, 13, 6]


def _stripes(n: int, size: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Colour images of horizontal (0) or vertical (1) stripes in random colours."""
    y = rng.integers(0, 2, n)
    grid = (np.arange(size) // 2) % 2
    x = np.empty((n, 3, size, size), np.float32)
    colours = rng.uniform(0.2, 1.0, (n, 3, 1, 1)).astype(np.float32)
    pattern = np.where(y[:, None, None] == 0, grid[None, :, None], grid[None, None, :])
    x[:] = colours * pattern[:, None].astype(np.float32)
    x += rng.normal(0, 0.1, x.shape).astype(np.float32)
    return x, y


SMALL_DESIGNS = {
    "googlenet": [*zoo._bconv(8, 3, padding=1), zoo._pool(2, 2),
                  zoo._inception(4, 4, 8, 2, 4, 4), zoo.GLOBAL_POOL, zoo.FLATTEN, zoo._linear(2)],
    "squeezenet": [zoo._conv(8, 3, padding=1), zoo.RELU, zoo._pool(2, 2), *zoo._fire(4, 8, 8),
                   zoo._conv(2, 1), zoo.GLOBAL_POOL, zoo.FLATTEN],
    "densenet": [zoo._conv(8, 3, padding=1, bias=False), *zoo._densenet121(2, growth=4,
                 blocks=(2, 2), width=8)[4:]],
    "resnet50": [zoo._conv(8, 3, padding=1, bias=False), zoo.BN, zoo.RELU,
                 *zoo._bottleneck(4, 2, project=True), *zoo._bottleneck(4, 1, project=False),
                 zoo.GLOBAL_POOL, zoo.FLATTEN, zoo._linear(2)],
    # two inverted residuals (the second with its skip), depthwise 3x3 in each
    "mobilenet_v2": zoo._mobilenet_v2(2, stages=((1, 8, 1, 1), (4, 12, 2, 2)), width=8,
                                      last=32, stride=1),
}  # fmt: skip


def test_mobilenet_v2_blocks_follow_torchvision():
    net, _ = zoo.build("mobilenet_v2", init=False)
    depthwise = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert len(depthwise) == 17  # one per inverted residual
    assert all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    skips = [m for m in net if isinstance(m, nn.Add)]
    assert len(skips) == 10  # blocks that keep size and width: 1 + 2 + 3 + 2 + 2
    assert all(isinstance(m[0], nn.Identity) for m in skips)
    assert sum(isinstance(m, nn.ReLU6) for m in net.modules()) == 35  # 1 + 16*2 + 1 + 1


@pytest.mark.parametrize("design", sorted(SMALL_DESIGNS))
def test_small_variant_of_each_design_learns_colour_stripes(design):
    rng = np.random.default_rng(0)
    net = nn.from_config(zoo._seq(*SMALL_DESIGNS[design]), (3, 12, 12), rng=rng)
    x, y = _stripes(256, 12, rng)
    xt, yt = _stripes(128, 12, np.random.default_rng(1))
    loss = nn.CrossEntropyLoss()
    opt = optim.Adam(net.parameters(), lr=3e-3)
    for _epoch in range(6):
        for i in range(0, 256, 32):
            loss(net(x[i : i + 32], training=True), y[i : i + 32])
            opt.zero_grad()
            net.backward(loss.backward())
            opt.step()
    accuracy = float(np.mean(net(xt).argmax(1) == yt))
    assert accuracy >= 0.9, f"{design}: {accuracy:.2f}"
