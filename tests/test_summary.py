"""clearconv.summary: shapes, parameter and cost counts, receptive fields, errors."""

import json

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


# torchvision's counts (inference form), ZFNet's from its paper; the small nets' by hand
ZOO_COUNTS = {
    "alexnet": 61_100_840, "vgg11": 132_863_336, "resnet18": 11_689_512,
    "googlenet": 6_624_904, "squeezenet1_1": 1_235_496, "densenet121": 7_978_856,
    "mobilenet_v2": 3_504_872, "resnet50": 25_557_032, "zfnet": 62_357_608,
    "lenet5": 61_706,
}  # fmt: skip


@pytest.mark.parametrize("name", clearconv.zoo.NAMES)
def test_summary_json_counts_every_parameter_of_every_zoo_model(name, capsys):
    from clearconv.cli import main

    assert main(["summary", name, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    net, _ = clearconv.zoo.build(name, init=False)
    assert report["total_params"] == sum(p.size for p in net.parameters())
    assert report["total_params"] == sum(r["params"] for r in report["rows"])
    assert report["total_params"] == ZOO_COUNTS.get(name, report["total_params"])
    # every layer with weights has its own row: none is hidden inside a merge's row
    assert sum(r["params"] > 0 for r in report["rows"]) == sum(
        1 for m in net.modules() if any(True for _ in m.parameters()) and not list(m.children())
    )


def test_summary_of_zoo_covers_the_classics():
    assert set(ZOO_COUNTS) <= set(clearconv.zoo.NAMES)


def inception_block():
    def cbr(c_in, c_out, k):
        return [nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out),
                nn.ReLU()]  # fmt: skip

    return nn.Concat(
        nn.Sequential(*cbr(8, 4, 1)),
        nn.Sequential(*cbr(8, 2, 1), *cbr(2, 6, 3)),
        nn.Sequential(*cbr(8, 2, 1), *cbr(2, 3, 5)),
        nn.Sequential(nn.MaxPool2d(3, 1, padding=1), *cbr(8, 5, 1)),
    )


def test_inception_block_rows_list_each_branch_under_its_merge():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), inception_block(), nn.ReLU())
    s = clearconv.summary(net, (3, 16, 16))
    rows = [(r.name, r.depth, r.output_shape[1], r.params) for r in s.rows]
    assert rows == [
        ("0", 0, 8, 3 * 8 * 9 + 8),
        ("1", 0, 4 + 6 + 3 + 5, 0),
        ("1.0.0", 1, 4, 8 * 4), ("1.0.1", 1, 4, 8), ("1.0.2", 1, 4, 0),
        ("1.1.0", 1, 2, 8 * 2), ("1.1.1", 1, 2, 4), ("1.1.2", 1, 2, 0),
        ("1.1.3", 1, 6, 2 * 6 * 9), ("1.1.4", 1, 6, 12), ("1.1.5", 1, 6, 0),
        ("1.2.0", 1, 2, 8 * 2), ("1.2.1", 1, 2, 4), ("1.2.2", 1, 2, 0),
        ("1.2.3", 1, 3, 2 * 3 * 25), ("1.2.4", 1, 3, 6), ("1.2.5", 1, 3, 0),
        ("1.3.0", 1, 8, 0), ("1.3.1", 1, 5, 8 * 5), ("1.3.2", 1, 5, 10), ("1.3.3", 1, 5, 0),
        ("2", 0, 18, 0),
    ]  # fmt: skip
    assert s.total_params == sum(p.size for p in net.parameters())
    # the merged maps see as far as the 5x5 branch: 3 + 4; the pool branch's 1x1 after 3x3: 5
    assert s.rows[1].receptive_field == (7, 7)
    assert s.rows[20].receptive_field == (5, 5)
    lines = str(s).splitlines()
    merge = next(line for line in lines if line.startswith("1 "))
    assert "Concat: cat(4 branches, dim=1)" in merge and "(N, 18, 16, 16)" in merge
    branch = next(line for line in lines if "1.2.3" in line)
    assert branch.startswith("  1.2.3 ") and "Conv2d(2, 3, kernel_size=5, padding=2" in branch
    assert "(N, 3, 16, 16)" in branch and " 150 " in branch


def test_add_rows_name_the_identity_path():
    block = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
    s = clearconv.summary(nn.Sequential(nn.Add(nn.Identity(), block)), (4, 8, 8))
    assert [(r.name, r.layer.split("(")[0], r.depth) for r in s.rows] == [
        ("0", "Add: x + branch 1", 0), ("0.0", "Identity", 1),
        ("0.1.0", "Conv2d", 1), ("0.1.1", "BatchNorm2d", 1),
    ]  # fmt: skip
    assert s.total_params == 4 * 4 * 9 + 4 + 8
