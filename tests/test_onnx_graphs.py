"""ONNX export and import of graphs: branches, merges and the classic layers.

Exported clearconv graphs run in onnxruntime with clearconv's outputs and read
back into containers with the same outputs; the ONNX model zoo's nine classic
CNNs (shipped in the onnx package's backend test data with one constant per
weight) import with seeded random weights and match onnxruntime.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from clearconv import nn, zoo

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto as TP  # noqa: E402
from onnx import helper, numpy_helper  # noqa: E402

from clearconv.onnx import UnsupportedModelError, from_onnx, to_onnx  # noqa: E402

TOL = 1e-4  # relative to the output's scale


def _r(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _randomize_bn(net: nn.Module, rng: np.random.Generator) -> None:
    """Running statistics and affine weights away from their initial 0 and 1."""
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            m.running_mean[...] = rng.standard_normal(c).astype(np.float32)
            m.running_var[...] = rng.uniform(0.5, 2.0, c).astype(np.float32)
            m.weight.data[...] = rng.uniform(0.5, 1.5, c).astype(np.float32)
            m.bias.data[...] = rng.standard_normal(c).astype(np.float32) * 0.1


def _run_ort(proto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    return sess.run(None, {inp: x})[0]


def _close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    assert scale > 0
    np.testing.assert_allclose(got / scale, want / scale, rtol=0, atol=TOL)


def _conv(cin, cout, k, seed, **kw):
    return nn.Conv2d(cin, cout, k, rng=_r(seed), **kw)


def _inception() -> nn.Module:
    return nn.Concat(
        nn.Sequential(_conv(4, 3, 1, 1), nn.ReLU()),
        nn.Sequential(_conv(4, 2, 1, 2), nn.ReLU(), _conv(2, 3, 3, 3, padding=1), nn.ReLU()),
        nn.Sequential(_conv(4, 2, 1, 4), nn.ReLU(), _conv(2, 2, 5, 5, padding=2), nn.ReLU()),
        nn.Sequential(nn.MaxPool2d(3, 1, padding=1, ceil_mode=True), _conv(4, 2, 1, 6)),
    )


def _dense_block() -> nn.Module:
    layers = []
    for i, c in enumerate((4, 6, 8)):
        layer = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), _conv(c, 2, 3, 10 + i, padding=1))
        layers.append(nn.Concat(nn.Identity(), layer))
    return nn.Sequential(*layers)


def _unet() -> nn.Module:
    """A skip across three levels: Concats nested in Concats, each with an Identity branch."""
    deepest = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), _conv(6, 6, 3, 22, padding=1))
    level2 = nn.Sequential(
        nn.AvgPool2d(3, 1, padding=1),
        _conv(4, 6, 3, 21, padding=1),
        nn.Concat(nn.Identity(), nn.Sequential(deepest, nn.ReLU())),
        _conv(12, 4, 1, 23),
    )
    return nn.Sequential(
        _conv(4, 4, 3, 20, padding=1),
        nn.Concat(nn.Identity(), level2),
        _conv(8, 2, 1, 24),
    )


def _classic() -> nn.Module:
    return nn.Sequential(
        _conv(4, 8, 3, 30, padding=1, groups=2),
        nn.LocalResponseNorm(3, alpha=1e-2, beta=0.75, k=2.0),
        nn.ChannelShuffle(4),
        nn.ReLU6(),
        nn.Add(nn.Identity(), _conv(8, 8, 1, 31), _conv(8, 8, 3, 32, padding=1, groups=8)),
        nn.Dropout(0.3),
        nn.Add(nn.Identity(), nn.Identity()),
    )


NETS = {
    "inception": (_inception, (4, 8, 8)),
    "dense-block": (_dense_block, (4, 6, 6)),
    "unet-3-levels": (_unet, (4, 8, 8)),
    "grouped-lrn-shuffle-relu6-add3": (_classic, (4, 6, 5)),
}


@pytest.mark.parametrize("key", sorted(NETS))
def test_exported_graphs_run_in_onnxruntime_and_read_back(key):
    make, shape = NETS[key]
    net = make()
    _randomize_bn(net, _r(7))
    x = _r(8).standard_normal((3, *shape)).astype(np.float32) * 3
    want = net(x)
    proto = to_onnx(net, shape)
    _close(_run_ort(proto, x), want)
    got = from_onnx(proto)
    _close(got.net(x), want)
    # the same function, so the same input gradient: the imported graph trains
    g = _r(9).standard_normal(want.shape).astype(np.float32)
    _close(got.net.backward(g), net.backward(g))
    assert all(p.data.flags.writeable and p.grad is not None for p in got.net.parameters())
    # the same parameters, no more: every weight came back once
    assert sum(p.data.size for p in got.net.parameters()) == sum(
        p.data.size for p in net.parameters()
    )


def test_import_builds_the_containers():
    net = nn.Sequential(_inception(), nn.ReLU())
    got = from_onnx(to_onnx(net, (4, 8, 8))).net
    concat = got[0]
    assert isinstance(concat, nn.Concat) and len(concat) == 4
    assert [len(b) if isinstance(b, nn.Sequential) else 1 for b in concat] == [2, 4, 4, 2]
    dense = from_onnx(to_onnx(_dense_block(), (4, 6, 6))).net
    assert all(isinstance(m, nn.Concat) and isinstance(m[0], nn.Identity) for m in dense)
    classic = from_onnx(to_onnx(_classic(), (4, 6, 5))).net
    kinds = [type(m).__name__ for m in classic]
    assert kinds == [
        "Conv2d",
        "LocalResponseNorm",
        "ChannelShuffle",
        "ReLU6",
        "Add",
        "Dropout",
        "Add",
    ]
    assert classic[0].groups == 2 and classic[2].groups == 4
    assert isinstance(classic[4][0], nn.Identity) and classic[4][2].groups == 8


def test_even_lrn_is_refused_on_export():
    with pytest.raises(ValueError, match=r"LRN centres an even window .* use an odd size"):
        to_onnx(nn.LocalResponseNorm(4), (6, 3, 3))


@pytest.mark.parametrize(
    "name, shape",
    [
        ("googlenet", (3, 64, 64)),
        ("squeezenet1_1", (3, 64, 64)),
        ("densenet121", (3, 32, 32)),
        ("resnet50", (3, 32, 32)),
    ],
)
def test_zoo_graphs_export_and_read_back(name, shape):
    net, shape = zoo.build(name, shape, num_classes=10, rng=_r(0))
    _randomize_bn(net, _r(1))
    x = _r(2).standard_normal((1, *shape)).astype(np.float32)
    want = net(x)
    proto = to_onnx(net, shape)
    merges = {"googlenet": 9, "squeezenet1_1": 8, "densenet121": 58, "resnet50": 16}[name]
    assert sum(n.op_type in ("Concat", "Add") for n in proto.graph.node) == merges
    _close(_run_ort(proto, x), want)
    _close(from_onnx(proto).net(x), want)


# -- graphs written by hand: what clearconv cannot represent is refused --------------
def _model(nodes, inits, in_shape=(1, 2, 4, 4), opset=17):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TP.FLOAT, list(in_shape))],
        [helper.make_empty_tensor_value_info("y")],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


def test_a_graph_that_is_not_series_parallel_is_refused():
    # b is read by the Add of branch 2 and by the final Concat: branches cross
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Sigmoid", ["x"], ["b"]),
        helper.make_node("Add", ["a", "b"], ["c"]),
        helper.make_node("Concat", ["c", "b"], ["y"], axis=1),
    ]
    with pytest.raises(
        UnsupportedModelError, match=r"nodes?: graph x1 \(the graph is not series-p"
    ):
        from_onnx(_model(nodes, []))


def test_a_fork_whose_paths_meet_in_two_steps_imports():
    # x -> relu, sigmoid, tanh; Add(relu, x) then Concat(that, sigmoid, tanh)
    nodes = [
        helper.make_node("Relu", ["x"], ["a"]),
        helper.make_node("Sigmoid", ["x"], ["b"]),
        helper.make_node("Tanh", ["x"], ["t"]),
        helper.make_node("Add", ["a", "x"], ["c"]),
        helper.make_node("Concat", ["c", "b", "t"], ["y"], axis=1),
    ]
    proto = _model(nodes, [])
    x = _r(0).standard_normal((1, 2, 4, 4)).astype(np.float32)
    got = from_onnx(proto).net
    _close(got(x), _run_ort(proto, x))
    assert isinstance(got[0], nn.Concat) and isinstance(got[0][0], nn.Residual)


def test_unsupported_nodes_are_grouped_by_operator_with_counts():
    nodes = [
        helper.make_node("Erf", ["x"], ["a"], name="e1"),
        helper.make_node("LRN", ["a"], ["b"], name="l1", size=4),
        helper.make_node("Erf", ["b"], ["c"], name="e2"),
        helper.make_node("Erf", ["c"], ["d"], name="e3"),
        helper.make_node("Erf", ["d"], ["y"], name="e4"),
    ]
    with pytest.raises(UnsupportedModelError) as err:
        from_onnx(_model(nodes, []), source="m.onnx")
    msg = str(err.value)
    assert msg.startswith("m.onnx: cannot import 4 unsupported nodes: Erf x4 (Erf 'e1'")
    assert "Erf 'e3' (operator Erf is not supported); ...)" in msg
    # the walk (LRN's even size) is reached only once every operator is known
    nodes[0] = helper.make_node("Relu", ["x"], ["a"])
    nodes[2:] = [helper.make_node("Relu", ["b"], ["y"])]
    with pytest.raises(UnsupportedModelError, match=r"LRN x1 \(LRN 'l1' \(size=4: for even"):
        from_onnx(_model(nodes, []))


@pytest.mark.parametrize("opset", [9, 11, 13, 17])
def test_opset_forms_of_clip_unsqueeze_bn_dropout_and_constants(opset):
    """Pad's pads and Clip's bounds, and Unsqueeze's axes, moved from attributes to
    inputs (opsets 11 and 13); weights made by
    ConstantOfShape and Unsqueeze of constants are evaluated at load time."""
    c = 2
    scale = np.array([0.5, 2.0], np.float32)
    nodes, inits = [], [("w_shape", np.array([c, c, 3, 3], np.int64))]
    nodes.append(
        helper.make_node(
            "ConstantOfShape",
            ["w_shape"],
            ["w"],
            value=numpy_helper.from_array(np.array([0.1], np.float32)),
        )
    )
    if opset < 11:  # a zero Pad, taken into the Conv's padding
        nodes.append(helper.make_node("Pad", ["x"], ["xp"], pads=[0, 0, 1, 1, 0, 0, 1, 1]))
    else:
        inits.append(("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)))
        nodes.append(helper.make_node("Pad", ["x", "pads"], ["xp"], mode="constant"))
    nodes.append(helper.make_node("Conv", ["xp", "w"], ["h"]))
    nodes.append(
        helper.make_node("BatchNormalization", ["h", "s", "b", "m", "v"], ["n"], epsilon=1e-3)
    )
    inits += [("s", scale), ("b", scale), ("m", scale * 0), ("v", scale)]
    if opset < 13:
        nodes.append(helper.make_node("Unsqueeze", ["k"], ["k3"], axes=[1, 2]))
    else:
        inits.append(("axes", np.array([1, 2], np.int64)))
        nodes.append(helper.make_node("Unsqueeze", ["k", "axes"], ["k3"]))
    inits.append(("k", np.array([3.0, -1.0], np.float32)))
    nodes.append(helper.make_node("Mul", ["n", "k3"], ["n2"]))
    nodes.append(helper.make_node("Add", ["n2", "k3"], ["n3"]))
    if opset < 11:
        nodes.append(helper.make_node("Clip", ["n3"], ["r"], min=0.0, max=6.0))
    else:
        inits += [("lo", np.float32(0)), ("hi", np.float32(6))]
        nodes.append(helper.make_node("Clip", ["n3", "lo", "hi"], ["r"]))
    nodes.append(helper.make_node("Dropout", ["r"], ["y"]))
    proto = _model(nodes, inits, in_shape=(1, c, 5, 5), opset=opset)
    x = _r(1).standard_normal((1, c, 5, 5)).astype(np.float32) * 4
    got = from_onnx(proto).net
    _close(got(x), _run_ort(proto, x))
    # Mul and Add folded into BatchNorm's affine weights; Clip(0, 6) is ReLU6
    assert [type(m).__name__ for m in got] == ["Conv2d", "BatchNorm2d", "ReLU6", "Dropout"]
    assert got[0].padding == (1, 1)


def test_softmax_before_opset_13_over_trailing_ones():
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
        helper.make_node("Softmax", ["g"], ["y"], axis=1),
    ]
    proto = _model(nodes, [], in_shape=(1, 5, 3, 3), opset=9)
    x = _r(2).standard_normal((1, 5, 3, 3)).astype(np.float32)
    _close(from_onnx(proto).net(x), _run_ort(proto, x))


# -- the ONNX model zoo's classic CNNs --------------------------------------------
LIGHT = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
CLASSICS = [
    "bvlc_alexnet",
    "zfnet512",
    "vgg19",
    "inception_v1",
    "inception_v2",
    "resnet50",
    "squeezenet",
    "densenet121",
    "shufflenet",
]


def _with_random_weights(proto, rng: np.random.Generator):
    """The model with each ConstantOfShape weight replaced by a seeded random
    initializer of its shape (in 0.5..1.5 for BatchNorm variances, else of
    variance 1/fan-in so activations keep their size), and its final Softmax
    dropped so that logits, not probabilities near 1/1000, are compared."""
    g = proto.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    variances = {n.input[4] for n in g.node if n.op_type == "BatchNormalization"}
    keep, weights = [], []
    for n in g.node:
        if n.op_type == "ConstantOfShape" and n.input[0] in inits:
            shape = tuple(int(v) for v in inits[n.input[0]])
            a = rng.random(shape, dtype=np.float32)  # uniform: the cheapest draw of 144 M
            if n.output[0] in variances:
                a += np.float32(0.5)
            else:  # uniform on +-sqrt(3 / fan_in): variance 1 / fan_in
                a -= np.float32(0.5)
                a *= np.float32(2 * np.sqrt(3 / max(int(np.prod(shape[1:])), 1)))
            weights.append(numpy_helper.from_array(a, n.output[0]))
        else:
            keep.append(n)
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(weights)
    used = {t for n in g.node for t in n.input}
    for coll in (g.initializer, g.input):  # the weights' shapes are no longer read
        kept = [i for i in coll if i.name in used or i.name not in inits]
        del coll[:]
        coll.extend(kept)
    if g.node[-1].op_type == "Softmax":
        g.output[0].name = g.node[-1].input[0]
        g.output[0].type.tensor_type.ClearField("shape")
        del g.node[-1]
    return proto


@pytest.mark.skipif(not os.path.isdir(LIGHT), reason="this onnx build ships no backend test data")
@pytest.mark.parametrize("name", CLASSICS)
def test_onnx_zoo_classics_import_and_match_onnxruntime(name):
    proto = onnx.load(os.path.join(LIGHT, f"light_{name}.onnx"))
    proto = _with_random_weights(proto, _r(0))
    got = from_onnx(proto, source=name)
    x = _r(1).standard_normal((1, *got.input_shape)).astype(np.float32)
    want = _run_ort(proto, x)
    assert np.abs(want).std() > 1e-3  # random weights give logits that differ
    _close(got.net(x), want)


@pytest.mark.skipif(not os.path.isdir(LIGHT), reason="this onnx build ships no backend test data")
def test_constant_of_shape_weights_are_evaluated():
    """As shipped (every weight one ConstantOfShape), AlexNet imports: the
    constant subgraphs are evaluated and their values land in the layers."""
    proto = onnx.load(os.path.join(LIGHT, "light_bvlc_alexnet.onnx"))
    net = from_onnx(proto).net
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in net.modules()) == 2
    w = convs[0].weight.data
    assert np.all(w == w.flat[0])  # the one constant, as the file says


def test_channelwise_mul_and_add_fold_into_a_conv_or_become_an_affine_layer():
    k = np.array([2.0, -0.5, 3.0], np.float32).reshape(3, 1, 1)
    w = _r(3).standard_normal((3, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),  # no bias: the Add makes one
        helper.make_node("Mul", ["c", "k"], ["m"]),
        helper.make_node("Add", ["k", "m"], ["a"]),
        helper.make_node("Relu", ["a"], ["r"]),
        helper.make_node("Mul", ["r", "k"], ["r2"]),  # after a ReLU: an affine layer
        helper.make_node("Add", ["r2", "k"], ["y"]),
    ]
    proto = _model(nodes, [("w", w), ("k", k)], in_shape=(1, 3, 4, 4))
    x = _r(4).standard_normal((2, 3, 4, 4)).astype(np.float32)
    got = from_onnx(proto).net
    assert [type(m).__name__ for m in got] == ["Conv2d", "ReLU", "BatchNorm2d"]
    assert got[0].bias is not None
    _close(got(x[:1]), _run_ort(proto, x[:1]))
    # a constant that varies over the pixels is no per-channel scale
    nodes[1] = helper.make_node("Mul", ["c", "px"], ["m"], name="mul")
    proto = _model(
        nodes, [("w", w), ("k", k), ("px", np.ones((1, 4, 4), np.float32))], (1, 3, 4, 4)
    )
    with pytest.raises(UnsupportedModelError, match=r"Mul 'mul' \(a Mul of a constant that is not"):
        from_onnx(proto)


@pytest.mark.skipif(not os.path.isdir(LIGHT), reason="this onnx build ships no backend test data")
def test_cli_imports_a_classic_whose_scores_are_n_k_1_1(tmp_path, capsys):
    """SqueezeNet ends in (N, 1000, 1, 1): as a model file it classifies, (N, 1000)."""
    from clearconv import io
    from clearconv.cli import main

    out = tmp_path / "squeezenet.npz"
    main(["import", os.path.join(LIGHT, "light_squeezenet.onnx"), str(out)])
    assert "1,235,496 parameters" in capsys.readouterr().out
    model = io.load(out)
    assert isinstance(model.net[-1], nn.Flatten) and len(model.class_names) == 1000
    x = np.zeros((2, 3, 224, 224), np.float32)
    assert model.net(x).shape == (2, 1000)


def _torch_branched(torch):
    """A torch net with an Inception-style cat, a residual add, grouped conv, a
    view/transpose channel shuffle, ReLU6 and a ceil-mode pool. (torch writes
    LocalResponseNorm as Pow/Div/If arithmetic, not LRN: refused.)"""
    tnn = torch.nn

    class Net(tnn.Module):
        def __init__(self):
            super().__init__()
            self.stem = tnn.Sequential(tnn.Conv2d(3, 8, 3, padding=1), tnn.BatchNorm2d(8))
            self.b1 = tnn.Conv2d(8, 4, 1)
            self.b2 = tnn.Sequential(
                tnn.Conv2d(8, 4, 1), tnn.ReLU(), tnn.Conv2d(4, 4, 3, padding=1)
            )
            self.b3 = tnn.Sequential(tnn.MaxPool2d(3, 1, padding=1, ceil_mode=True))
            self.gconv = tnn.Conv2d(16, 16, 3, padding=1, groups=4)
            self.head = tnn.Linear(16, 5)

        def forward(self, x):
            x = self.stem(x)
            x = torch.cat([self.b1(x), self.b2(x), self.b3(x)], 1)  # 16 channels
            x = torch.relu(x)
            n, c, h, w = x.shape
            s = x.view(n, 4, c // 4, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
            x = x + tnn.functional.relu6(self.gconv(s))
            x = tnn.functional.max_pool2d(x, 2, ceil_mode=True)
            return self.head(torch.flatten(tnn.functional.adaptive_avg_pool2d(x, 1), 1))

    return Net


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic-batch", "static-batch"])
def test_torch_export_of_a_branched_net_imports_with_torch_outputs(dynamic):
    torch = pytest.importorskip("torch")
    import io as _io
    import warnings

    torch.manual_seed(0)
    module = _torch_branched(torch)().eval()
    with torch.no_grad():
        module.stem[1].running_var.uniform_(0.5, 2)
        module.stem[1].running_mean.uniform_(-1, 1)
    buf = _io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.randn(1, 3, 7, 7),),
            buf,
            dynamo=False,
            input_names=["input"],
            output_names=["out"],
            dynamic_axes={"input": {0: "N"}, "out": {0: "N"}} if dynamic else None,
            opset_version=17,
        )
    got = from_onnx(onnx.load_from_string(buf.getvalue())).net
    x = torch.randn(1 if not dynamic else 3, 3, 7, 7, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = module(x).numpy()
    _close(got(x.numpy()), want)
    kinds = {type(m).__name__ for m in got.modules()}
    assert {"Concat", "Residual", "ChannelShuffle", "ReLU6"} <= kinds


@pytest.mark.skipif(not os.path.isdir(LIGHT), reason="this onnx build ships no backend test data")
@pytest.mark.parametrize("opset", [11, 13, 17])
@pytest.mark.parametrize(
    "name", ["inception_v1", "inception_v2", "squeezenet", "densenet121", "shufflenet"]
)
def test_onnx_zoo_classics_at_newer_opsets(name, opset):
    """The same files converted by onnx's version converter (opset 9 -> 11/13/17:
    Dropout's ratio, Unsqueeze's axes, Clip and Pad's settings become inputs)."""
    from onnx import version_converter

    proto = _with_random_weights(onnx.load(os.path.join(LIGHT, f"light_{name}.onnx")), _r(0))
    proto.ir_version = 7  # initializers need not be listed as inputs (the converter asks)
    proto = version_converter.convert_version(proto, opset)
    got = from_onnx(proto, source=name)
    x = _r(1).standard_normal((1, *got.input_shape)).astype(np.float32)
    _close(got.net(x), _run_ort(proto, x))
