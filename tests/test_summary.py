"""clearconv.summary: shapes, parameter and cost counts, receptive fields, errors."""

import numpy as np
import pytest

import clearconv
from clearconv import nn


def lenet5():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    )  # fmt: skip


def test_lenet5_totals_and_shapes_agree_with_forward():
    net = lenet5()
    s = clearconv.summary(net, (1, 28, 28))
    assert s.total_params == 61_706 == sum(p.size for p in net.parameters())
    # conv1 28*28*6*25 + conv2 10*10*16*150 + 400*120 + 120*84 + 84*10
    assert s.total_macs == 117_600 + 240_000 + 48_000 + 10_080 + 840
    x = np.zeros((3, 1, 28, 28), np.float32)
    for row, layer in zip(s.rows, net):
        x = layer(x)
        assert row.output_shape[1:] == x.shape[1:]
    text = str(s)
    assert "Total params: 61,706" in text and "(N, 16, 5, 5)" in text


def test_receptive_field_grows_like_the_textbook_formula():
    # Three 3x3 convs (stride 1) see 7x7; a 2x2/2 pool then a 3x3 conv adds 1 + 2*2.
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3),
        nn.MaxPool2d(2), nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3, dilation=2),
    )  # fmt: skip
    rf = [r.receptive_field for r in clearconv.summary(net, (1, 40, 40)).rows]
    assert rf == [(3, 3), (5, 5), (7, 7), (8, 8), (12, 12), (20, 20)]


def test_residual_and_global_pool_rows():
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Residual(nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip
    s = clearconv.summary(net, (3, 32, 32))
    names = [r.name for r in s.rows]
    assert names == ["0", "1.block.0", "1.block.1", "1.block.2", "1", "2", "3", "4"]
    assert s.rows[4].receptive_field == (5, 5)
    assert s.rows[5].receptive_field is None
    assert s.total_params == sum(p.size for p in net.parameters())


def test_conv1d_summary():
    net = nn.Sequential(nn.Conv1d(1, 4, 9, stride=2), nn.MaxPool1d(2), nn.Flatten())
    s = clearconv.summary(net, (1, 101))
    assert s.rows[0].output_shape == (1, 4, 47)
    assert s.rows[1].receptive_field == (11,)
    assert s.rows[0].macs == 47 * 4 * 9


def test_bad_input_shape_names_the_layer():
    with pytest.raises(ValueError, match=r"layer 0 Conv2d\(1, 6, kernel_size=5, padding=2\)"):
        clearconv.summary(lenet5(), (3, 28, 28))
    with pytest.raises(ValueError, match="input_shape is required"):
        clearconv.summary(lenet5())
