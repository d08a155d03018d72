"""The model zoo: every model builds with the right output shape; architecture files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clearconv import Model, load, save, zoo

SMALL = ("xo", "lenet5", "simple", "mnist", "resnet")
# torchvision's counts; ResNet-18's includes its three projection shortcuts
# (conv 1x1 + batch norm: 174,824 parameters; 11,515,688 without them)
PUBLISHED = {"alexnet": 61_100_840, "vgg11": 132_863_336, "resnet18": 11_689_512}


@pytest.mark.parametrize("name", SMALL)
def test_small_zoo_models_run_forward_and_backward(name):
    net, shape = zoo.build(name, rng=np.random.default_rng(0))
    x = np.random.default_rng(1).standard_normal((2, *shape)).astype(np.float32)
    y = net(x, training=True)
    k = 2 if name == "xo" else 10
    assert y.shape == (2, k) == net.output_shape((2, *shape)) and y.dtype == np.float32
    assert net.backward(np.ones_like(y)).shape == x.shape


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "resnet18"])
def test_published_models_build_fast_with_their_sizes(name):
    net, shape = zoo.build(name, init=False)
    assert shape == (3, 224, 224) and net.output_shape((1, *shape)) == (1, 1000)
    assert sum(p.size for p in net.parameters()) == PUBLISHED[name]


def test_known_layer_shapes():
    net, _ = zoo.build("lenet5", init=False)
    assert [p.shape for p in net.parameters()] == [
        (6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120, 400), (120,), (84, 120), (84,),
        (10, 84), (10,),
    ]  # fmt: skip
    net, _ = zoo.build("simple", init=False)
    assert net[4].in_features == 4320 and net[4].out_features == 100
    net, _ = zoo.build("alexnet", init=False)
    assert net.output_shape((1, 3, 224, 224)) == (1, 1000)


def test_inputs_and_classes_adapt_to_the_data():
    net, shape = zoo.build("resnet", (1, 32, 32), num_classes=6, rng=np.random.default_rng(0))
    assert shape == (1, 32, 32)
    assert net(np.zeros((2, 1, 32, 32), np.float32)).shape == (2, 6)
    net, _ = zoo.build("resnet", (3, 48, 40), num_classes=6, init=False)
    assert net.output_shape((1, 3, 48, 40)) == (1, 6)
    net, _ = zoo.build("lenet5", (3, 32, 32), num_classes=4, init=False)
    assert net.output_shape((1, 3, 32, 32)) == (1, 4)


def test_same_rng_same_weights_and_init_false_is_zero():
    a, _ = zoo.build("lenet5", rng=np.random.default_rng(3))
    b, _ = zoo.build("lenet5", rng=np.random.default_rng(3))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and np.array_equal(va, vb)
    z, _ = zoo.build("lenet5", init=False)
    assert not z[0].weight.data.any()


TOML = """
input_shape = [1, 12, 12]
layers = [
  {type = "Conv2d", out_channels = 4, kernel_size = 3},
  {type = "ReLU"},
  {type = "MaxPool2d", kernel_size = 2},
  {type = "Flatten"},
  {type = "Linear", out_features = 3},
]
"""


def test_architecture_files_toml_and_json(tmp_path):
    t = tmp_path / "net.toml"
    t.write_text(TOML)
    net, shape = zoo.build(t, rng=np.random.default_rng(0))
    assert shape == (1, 12, 12) and net.output_shape((1, 1, 12, 12)) == (1, 3)
    assert net[4].in_features == 4 * 5 * 5
    net, _ = zoo.build(str(t), input_shape=(3, 16, 16), num_classes=5, init=False)
    assert net[0].in_channels == 3 and net.output_shape((1, 3, 16, 16)) == (1, 5)
    j = tmp_path / "net.json"
    import tomllib

    j.write_text(json.dumps(tomllib.loads(TOML)))
    net1, _ = zoo.build(t, rng=np.random.default_rng(0))
    net2, _ = zoo.build(j, rng=np.random.default_rng(0))
    for va, vb in zip(net1.state_dict().values(), net2.state_dict().values(), strict=True):
        assert np.array_equal(va, vb)
    m = Model(net2, (1, 12, 12), ["a", "b", "c"])  # a file-built model saves and loads
    save(m, tmp_path / "m.npz")
    assert load(tmp_path / "m.npz").net.output_shape((1, 1, 12, 12)) == (1, 3)


def test_bad_names_and_files(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'lenet6'"):
        zoo.build("lenet6")
    with pytest.raises(FileNotFoundError, match="no such architecture file"):
        zoo.build(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("layers = [ {type = ")
    with pytest.raises(ValueError, match="not valid TOML"):
        zoo.build(bad)
    bad.write_text('layers = [{type = "Conv3d"}]\ninput_shape = [1, 8, 8]')
    with pytest.raises(ValueError, match="unknown layer type 'Conv3d'"):
        zoo.build(bad)
    bad.write_text('layers = [{type = "Flatten"}, {type = "Linear", out_features = 2}]')
    with pytest.raises(ValueError, match="no input_shape"):
        zoo.build(bad)
    with pytest.raises(ValueError, match="cannot take inputs of shape"):
        zoo.build("lenet5", (1, 4, 4), init=False)
    with pytest.raises(ValueError, match="num_classes"):
        zoo.build("lenet5", num_classes=0)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        zoo.build("lenet5", (28, 28, 1, 1))


def test_recipes_have_every_setting():
    keys = {"epochs", "batch_size", "optimizer", "lr", "schedule", "weight_decay",
            "label_smoothing", "augment"}  # fmt: skip
    for name in (*zoo.NAMES, None, "net.toml"):
        assert set(zoo.recipe(name)) == keys
    assert zoo.recipe("lenet5")["epochs"] == 1
    r = zoo.recipe("mnist")
    r["augment"]["shift"] = 99  # a copy: the defaults stay
    assert zoo.recipe("mnist")["augment"]["shift"] != 99


def _first_down_block() -> dict:
    """ResNet-18's layer2.0: stride 2, 64 -> 128, with the 1x1 projection shortcut."""
    blocks = [c for c in zoo.config("resnet18")["layers"] if "shortcut" in c]
    assert len(blocks) == 3 and blocks[0]["type"] == "Residual"
    return blocks[0]


def test_projection_shortcut_block_gradients_and_config_round_trip():
    from clearconv.nn import from_config, to_config
    from gradcheck import check_layer

    cfg = _first_down_block()
    small = json.loads(json.dumps(cfg).replace("128", "4"))
    block = from_config(small, (3, 6, 6), rng=np.random.default_rng(0), dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6))
    assert block(x).shape == (2, 4, 3, 3)
    check_layer(block, x, training=False)
    again = from_config(to_config(block), (3, 6, 6), rng=np.random.default_rng(0))
    assert list(again.state_dict()) == list(block.state_dict())
    assert "shortcut.0.weight" in block.state_dict()


def test_resnet_block_matches_torch():
    torch = pytest.importorskip("torch")
    cfg = json.loads(json.dumps(_first_down_block()).replace("128", "4"))
    from clearconv.nn import from_config

    block = from_config(cfg, (3, 6, 6), rng=np.random.default_rng(0))
    tn = torch.nn
    main = tn.Sequential(tn.Conv2d(3, 4, 3, 2, 1, bias=False), tn.BatchNorm2d(4), tn.ReLU(),
                         tn.Conv2d(4, 4, 3, 1, 1, bias=False), tn.BatchNorm2d(4))  # fmt: skip
    skip = tn.Sequential(tn.Conv2d(3, 4, 1, 2, bias=False), tn.BatchNorm2d(4))
    own = block.state_dict()
    with torch.no_grad():
        for prefix, mod in (("block.", main), ("shortcut.", skip)):
            for k, v in mod.state_dict().items():
                v.copy_(torch.from_numpy(np.asarray(own[prefix + k])))
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    want = (main.eval()(torch.from_numpy(x)) + skip.eval()(torch.from_numpy(x))).detach().numpy()
    np.testing.assert_allclose(block(x), want, rtol=1e-5, atol=1e-5)
