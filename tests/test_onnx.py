"""ONNX export and import.

clearconv -> ONNX: onnxruntime's outputs equal clearconv's (float32, max abs
difference <= 1e-5) at batch 1 and 7 for the zoo and for stacks covering every
layer and option; every file passes ``onnx.checker.check_model``.
ONNX -> clearconv: torch models exported by ``torch.onnx.export`` give torch's
outputs; unsupported graphs and broken files fail with messages naming every
offending node; the CLI round-trips.
"""

from __future__ import annotations

import io as _io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from clearconv import nn, zoo
from clearconv.cli import main
from clearconv.model import Model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from clearconv.onnx import (  # noqa: E402  (after the importorskip of onnx)
    OPSET,
    UnsupportedModelError,
    export,
    from_onnx,
    load,
    to_onnx,
)

TOL = 1e-5
helper, TP = onnx.helper, onnx.TensorProto


def _session(proto):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _randomize_bn(net, rng):
    """Non-trivial running statistics and affine parameters for every BatchNorm."""
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.running_mean is not None:
            c = m.num_features
            m.running_mean[...] = rng.uniform(-1, 1, c)
            m.running_var[...] = rng.uniform(0.5, 2, c)
            if m.weight is not None:
                m.weight.data[...] = rng.uniform(0.5, 1.5, c)
                m.bias.data[...] = rng.uniform(-0.5, 0.5, c)


def _check_export(net, shape, batches=(1, 7), seed=1):
    """Export, check the file, and compare onnxruntime with clearconv at each batch size."""
    proto = to_onnx(net, shape)
    onnx.checker.check_model(proto, full_check=True)
    sess = _session(proto)
    rng = np.random.default_rng(seed)
    for b in batches:
        x = rng.standard_normal((b, *shape)).astype(np.float32)
        want = net(x)
        (got,) = sess.run(None, {"input": x})
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL)
    return proto


# -- clearconv -> ONNX ------------------------------------------------------------
@pytest.mark.parametrize("name", ["xo", "lenet5", "simple", "mnist", "resnet"])
def test_zoo_models_match_onnxruntime(name):
    rng = np.random.default_rng(0)
    net, shape = zoo.build(name, rng=rng)
    _randomize_bn(net, rng)
    _check_export(net, shape)


def test_resnet18_matches_onnxruntime_at_batch_1():
    # alexnet and vgg11 (61M and 133M parameters at 224x224) take tens of seconds
    # to serialise and load; their layer types are all covered by the stacks below.
    rng = np.random.default_rng(0)
    net, shape = zoo.build("resnet18", rng=rng)
    _randomize_bn(net, rng)
    _check_export(net, shape, batches=(1,))


def _r(seed=0):
    return np.random.default_rng(seed)


# Every layer type and option, each in a small stack: (net, one sample's shape).
STACKS = {
    "conv2d-pad-stride-dilation": (
        nn.Sequential(
            nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), rng=_r()),
            nn.Conv2d(3, 4, 3, padding="valid", bias=False, rng=_r(1)),
        ),
        (2, 9, 8),
    ),
    "conv2d-same-even-kernel": (
        nn.Conv2d(2, 3, (2, 4), padding="same", dilation=(1, 2), rng=_r()),
        (2, 6, 7),
    ),
    "conv1d": (
        nn.Sequential(
            nn.Conv1d(2, 3, 4, padding="same", rng=_r()),
            nn.Conv1d(3, 2, 3, stride=2, padding=1, dilation=2, bias=False, rng=_r(1)),
        ),
        (2, 11),
    ),
    "maxpool2d": (
        nn.Sequential(nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.MaxPool2d((2, 3), dilation=2)),
        (2, 10, 12),
    ),
    # ceil_mode adds a window along W only; along H PyTorch drops the window that
    # ONNX's ceil rule would add: exported in ceil mode and cropped by a Slice.
    "maxpool2d-ceil-mixed-axes": (nn.MaxPool2d((1, 2), 2, ceil_mode=True), (2, 6, 7)),
    "avgpool2d-ceil-mixed-axes": (
        nn.AvgPool2d((1, 2), 2, ceil_mode=True, count_include_pad=False),
        (2, 6, 7),
    ),
    # The same with a dilated window: padding the end of H for the extra window
    # would take a pad as wide as the kernel, which onnxruntime refuses.
    "maxpool2d-ceil-mixed-dilated": (
        nn.MaxPool2d((2, 1), 3, ceil_mode=True, dilation=2),
        (2, 7, 5),
    ),
    "maxpool1d": (nn.MaxPool1d(3, 2, 1, ceil_mode=True, dilation=1), (2, 8)),
    "avgpool2d-include-pad": (nn.AvgPool2d(3, 2, 1, ceil_mode=True), (2, 8, 8)),
    "avgpool2d-exclude-pad": (
        nn.AvgPool2d((3, 2), (2, 1), (1, 1), ceil_mode=True, count_include_pad=False),
        (2, 7, 6),
    ),
    "avgpool1d": (nn.AvgPool1d(2, ceil_mode=True), (3, 7)),
    "adaptive-global": (nn.AdaptiveAvgPool2d(1), (3, 5, 7)),
    "adaptive-even-bins": (nn.AdaptiveAvgPool2d((2, 3)), (2, 4, 6)),
    "adaptive-none": (nn.AdaptiveAvgPool2d((None, 3)), (2, 4, 6)),
    "adaptive-identity": (nn.AdaptiveAvgPool2d((4, 6)), (2, 4, 6)),
    "activations": (
        nn.Sequential(nn.LeakyReLU(0.2), nn.Sigmoid(), nn.Tanh(), nn.ReLU(), nn.Softmax(dim=2)),
        (2, 3, 4),
    ),
    "softmax-implicit-dim": (nn.Softmax(), (2, 3, 4)),
    "flatten-forms": (
        nn.Sequential(nn.Flatten(2), nn.Flatten(1, 1), nn.Flatten()),
        (2, 3, 4),
    ),
    "flatten-middle": (nn.Flatten(1, 2), (2, 3, 4)),
    "linear-gemm": (
        nn.Sequential(
            nn.Flatten(), nn.Linear(24, 5, rng=_r()), nn.Linear(5, 3, bias=False, rng=_r(1))
        ),
        (2, 3, 4),
    ),
    "linear-matmul-3d": (
        nn.Sequential(nn.Conv1d(2, 3, 3, rng=_r()), nn.Linear(4, 5, rng=_r(1))),
        (2, 6),
    ),
    "batchnorm": (
        nn.Sequential(
            nn.BatchNorm2d(3),
            nn.BatchNorm2d(3, eps=1e-3, affine=False),
            nn.Flatten(2),
            nn.BatchNorm1d(3),
            nn.Flatten(),
            nn.BatchNorm1d(12, momentum=None),
        ),
        (3, 2, 2),
    ),
    "dropout": (nn.Sequential(nn.Dropout(0.3), nn.ReLU()), (2, 5)),
    "residual-nested": (
        nn.Sequential(
            nn.Conv2d(2, 4, 3, padding=1, rng=_r()),
            nn.Residual(
                nn.Sequential(
                    nn.Conv2d(4, 4, 3, padding="same", bias=False, rng=_r(1)),
                    nn.BatchNorm2d(4),
                    nn.ReLU(),
                    nn.Residual(nn.Conv2d(4, 4, 1, rng=_r(2))),
                )
            ),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 3, rng=_r(3)),
        ),
        (2, 5, 5),
    ),
    "identity-net": (nn.Sequential(), (2, 3)),
}


@pytest.mark.parametrize("key", sorted(STACKS))
def test_layer_stacks_match_onnxruntime(key):
    net, shape = STACKS[key]
    _randomize_bn(net, np.random.default_rng(5))
    _check_export(net, shape)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["conv", "max", "avg"]),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    p=st.integers(0, 2),
    d=st.integers(1, 2),
    ceil=st.booleans(),
    include=st.booleans(),
    size=st.tuples(st.integers(5, 9), st.integers(5, 9)),
)
def test_random_window_options_match_onnxruntime(kind, k, s, p, d, ceil, include, size):
    rng = np.random.default_rng(0)
    if kind == "conv":
        layer = nn.Conv2d(2, 3, k, stride=s, padding=p, dilation=d, rng=rng)
    elif kind == "max":
        p = min(p, (d * (min(k) - 1) + 1) // 2)
        layer = nn.MaxPool2d(k, s, p, ceil_mode=ceil, dilation=d)
    else:
        p = min(p, min(k) // 2)
        layer = nn.AvgPool2d(k, s, p, ceil_mode=ceil, count_include_pad=include)
    try:
        layer.output_shape((1, 2, *size))
    except ValueError:  # the window does not fit this input
        assume(False)
    try:
        proto = to_onnx(layer, (2, *size))
    except ValueError as exc:  # the one refusal: ceil-mode border windows of an average
        assert "ceil_mode and count_include_pad" in str(exc)
        return
    assert proto.graph.node
    _check_export(layer, (2, *size))


def test_export_graph_names_metadata_and_dynamic_batch():
    net, shape = zoo.build("lenet5", rng=np.random.default_rng(0))
    model = Model(net, shape, list("abcdefghij"), mean=[0.1307], std=[0.3081], meta={"k": 1})
    proto = to_onnx(model)
    g = proto.graph
    assert proto.opset_import[0].version == OPSET == 17
    assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["logits"]
    dims = g.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["clearconv.class_names"] == '["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]'
    assert props["clearconv.normalization"] == '{"mean": [0.1307], "std": [0.3081]}'
    assert props["clearconv.input_shape"] == "[1, 28, 28]"
    assert {t.name for t in g.initializer} >= {"0.weight", "0.bias"}


def test_export_refusals():
    with pytest.raises(ValueError, match="does not divide evenly"):
        to_onnx(nn.AdaptiveAvgPool2d((2, 2)), (1, 5, 4))
    with pytest.raises(ValueError, match="no running statistics"):
        to_onnx(nn.BatchNorm2d(2, track_running_stats=False), (2, 3, 3))
    with pytest.raises(ValueError, match="batch dimension"):
        to_onnx(nn.Flatten(0), (2, 3))

    class Custom(nn.Module):
        pass

    with pytest.raises(TypeError, match=r"cannot export layer Custom at '1': it has no ONNX"):
        to_onnx(nn.Sequential(nn.ReLU(), Custom()), (2, 3))
    with pytest.raises(ValueError, match="needs input_shape"):
        to_onnx(nn.ReLU())
    with pytest.raises(ValueError, match=r"opset must be in \[13, "):
        to_onnx(nn.ReLU(), (2,), opset=11)
    with pytest.raises(ValueError, match="ceil_mode and count_include_pad"):
        to_onnx(nn.AvgPool2d((1, 2), 2, ceil_mode=True), (2, 6, 7))
    with pytest.raises(TypeError, match=r"Model or nn\.Module"):
        to_onnx("lenet5", (1, 28, 28))


def test_other_opsets_match_onnxruntime():
    net, shape = STACKS["residual-nested"]
    for opset in (13, 15):
        proto = to_onnx(net, shape, opset=opset)
        assert proto.opset_import[0].version == opset
        x = np.random.default_rng(0).standard_normal((3, *shape)).astype(np.float32)
        np.testing.assert_allclose(_session(proto).run(None, {"input": x})[0], net(x), atol=TOL)


# -- round trip -------------------------------------------------------------------
# Stacks that come back as other, equal layers (outputs still compared):
REWRITTEN = {
    "adaptive-even-bins": "even bins are a plain AvgPool2d",
    "adaptive-none": "(None, 3) bins are a plain AvgPool2d",
    "adaptive-identity": "bins as large as the input are no layer at all",
    "flatten-forms": "Flatten(2) then Flatten(1, 1) then Flatten() is Flatten(2), Flatten()",
    "flatten-middle": "Flatten(1, 2) of a 3-D sample is Flatten(1, -2)",
    "softmax-implicit-dim": "the implicit dim is written as the dim it picks",
}


@pytest.mark.parametrize("key", sorted(STACKS))
def test_every_stack_round_trips(key):
    net, shape = STACKS[key]
    _randomize_bn(net, np.random.default_rng(2))
    got = from_onnx(to_onnx(net, shape))
    x = np.random.default_rng(3).standard_normal((4, *shape)).astype(np.float32)
    np.testing.assert_allclose(got.net(x), net(x), rtol=0, atol=TOL)
    assert got.input_shape == shape
    want = net if isinstance(net, nn.Sequential) else nn.Sequential(net)
    if key not in REWRITTEN:
        assert nn.to_config(got.net) == _explicit_same(nn.to_config(want))


def _explicit_same(cfg):
    """A config as ONNX keeps it: padding='valid' as zeros, padding='same' as
    the equal explicit padding where it is symmetric (odd kernels); BatchNorm's
    training-only settings momentum=None and affine=False (weight 1, bias 0)
    have no ONNX form."""
    if isinstance(cfg, list):
        return [_explicit_same(c) for c in cfg]
    if not isinstance(cfg, dict):
        return cfg
    out = {k: _explicit_same(v) for k, v in cfg.items()}
    if out.get("type", "").startswith("BatchNorm"):
        out.update(momentum=out["momentum"] or 0.1, affine=True)
    if out.get("padding") == "valid":
        out["padding"] = [0] * len(out["kernel_size"])
    if out.get("padding") == "same":
        totals = [d * (k - 1) for k, d in zip(out["kernel_size"], out["dilation"])]
        if all(t % 2 == 0 for t in totals):
            out["padding"] = [t // 2 for t in totals]
    return out


@pytest.mark.parametrize("name", ["xo", "lenet5", "simple", "mnist", "resnet"])
def test_zoo_round_trip(name):
    rng = np.random.default_rng(0)
    net, shape = zoo.build(name, rng=rng)
    _randomize_bn(net, rng)
    got = from_onnx(to_onnx(net, shape))
    assert nn.to_config(got.net) == _explicit_same(nn.to_config(net))
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    np.testing.assert_allclose(got.net(x), net(x), rtol=0, atol=TOL)


def test_model_file_round_trip_restores_metadata(tmp_path):
    net, shape = zoo.build("xo", rng=np.random.default_rng(0))
    k = net.output_shape((1, *shape))[-1]
    names = [f"class {i}" for i in range(k)]
    model = Model(net, shape, names, mean=[0.5], std=[0.25], meta={"epochs": 3})
    back = load(export(model, tmp_path / "xo.onnx"))
    assert isinstance(back, Model)
    assert back.class_names == names and back.input_shape == shape
    assert list(back.mean) == [0.5] and list(back.std) == [0.25]
    assert back.meta["epochs"] == 3 and "imported_from" in back.meta
    x = np.random.default_rng(0).random((5, *shape), dtype=np.float32)
    np.testing.assert_array_equal(back(x), model(x))


# -- ONNX written by torch -> clearconv ---------------------------------------------
def _torch_models():
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class LeNet5(tnn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = tnn.Conv2d(1, 6, 5, padding=2), tnn.Conv2d(6, 16, 5)
            self.f1, self.f2, self.f3 = (
                tnn.Linear(400, 120),
                tnn.Linear(120, 84),
                tnn.Linear(84, 10),
            )

        def forward(self, x):
            x = tnn.functional.max_pool2d(torch.relu(self.c1(x)), 2)
            x = tnn.functional.avg_pool2d(torch.tanh(self.c2(x)), 2)
            x = x.view(x.size(0), -1)  # Shape -> Gather -> Unsqueeze -> Concat -> Reshape
            return self.f3(torch.relu(self.f2(torch.relu(self.f1(x)))))

    def vgg():
        return tnn.Sequential(
            tnn.Conv2d(3, 8, 3, padding=1), tnn.BatchNorm2d(8), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(8, 16, 3, padding=1), tnn.BatchNorm2d(16), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Flatten(), tnn.Linear(256, 32), tnn.BatchNorm1d(32), tnn.ReLU(),
            tnn.Dropout(0.5), tnn.Linear(32, 5),
        )  # fmt: skip

    class Block(tnn.Module):
        def __init__(self, c):
            super().__init__()
            self.c1 = tnn.Conv2d(c, c, 3, padding=1, bias=False)
            self.b1 = tnn.BatchNorm2d(c)
            self.c2 = tnn.Conv2d(c, c, 3, padding=1, bias=False)
            self.b2 = tnn.BatchNorm2d(c)

        def forward(self, x):
            return torch.relu(x + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))

    class Down(Block):  # torchvision's BasicBlock with a downsample shortcut
        def __init__(self, c):
            super().__init__(2 * c)
            self.c1 = tnn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False)
            self.down = tnn.Sequential(tnn.Conv2d(c, 2 * c, 1, stride=2), tnn.BatchNorm2d(2 * c))

        def forward(self, x):
            out = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(out + self.down(x))

    def resnet():
        return tnn.Sequential(
            tnn.Conv2d(3, 8, 3, padding=1), tnn.ReLU(), Block(8), Down(8), Block(16),
            tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(16, 4),
        )  # fmt: skip

    class Seq1d(tnn.Module):  # Linear on (N, C, L): MatMul + Add
        def __init__(self):
            super().__init__()
            self.conv, self.lin, self.out = tnn.Conv1d(2, 3, 3), tnn.Linear(6, 4), tnn.Linear(12, 3)

        def forward(self, x):
            return self.out(torch.flatten(torch.relu(self.lin(self.conv(x))), 1))

    return torch, {
        "lenet5": (LeNet5, (1, 28, 28)),
        "vgg-bn": (vgg, (3, 16, 16)),
        "resnet": (resnet, (3, 8, 8)),
        "conv1d-matmul": (Seq1d, (2, 8)),
    }


def _torch_export(torch, module, shape, *, dynamic=True, preserve_bn=True) -> bytes:
    """torch.onnx.export with the TorchScript exporter (needs no extra packages)."""
    buf = _io.BytesIO()
    mode = torch.onnx.TrainingMode.PRESERVE if preserve_bn else torch.onnx.TrainingMode.EVAL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (torch.randn(1, *shape),),
            buf,
            dynamo=False,
            input_names=["input"],
            output_names=["out"],
            dynamic_axes={"input": {0: "N"}, "out": {0: "N"}} if dynamic else None,
            training=mode,
            opset_version=17,
        )
    return buf.getvalue()


def _torch_net(torch, make):
    torch.manual_seed(0)
    module = make()
    for m in module.modules():  # non-trivial running statistics, then inference mode
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    return module.eval()


@pytest.mark.parametrize("dynamic", [True, False], ids=["dynamic-batch", "static-batch"])
@pytest.mark.parametrize("key", ["lenet5", "vgg-bn", "resnet", "conv1d-matmul"])
def test_torch_exports_import_with_torch_outputs(key, dynamic):
    torch, zoo = _torch_models()
    make, shape = zoo[key]
    module = _torch_net(torch, make)
    data = _torch_export(torch, module, shape, dynamic=dynamic, preserve_bn=(key != "resnet"))
    got = from_onnx(onnx.load_from_string(data))
    assert got.input_shape == shape
    x = torch.randn(7, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = module(x).numpy()
    np.testing.assert_allclose(got.net(x.numpy()), want, rtol=0, atol=TOL)
    kinds = {type(m).__name__ for m in got.net.modules()}
    if key == "resnet":
        residuals = [m for m in got.net.modules() if isinstance(m, nn.Residual)]
        assert [r.shortcut is not None for r in residuals] == [False, True, False]
    if key == "vgg-bn":
        assert {"BatchNorm2d", "BatchNorm1d"} <= kinds


def _torch_op_models(torch):
    """Two torch models whose exports use Softmax, LeakyRelu, Sigmoid, Slice,
    Squeeze, Cast and Identity: a small net, and torch's own Identity layer."""
    tnn = torch.nn

    class Ops(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.leaky = tnn.Conv2d(2, 4, 3), tnn.LeakyReLU(0.1)
            self.lin, self.out = tnn.Linear(12, 5), tnn.Linear(20, 3)

        def forward(self, x):
            x = torch.sigmoid(self.leaky(self.conv(x)))  # LeakyRelu, Sigmoid
            x = torch.flatten(x, 2)  # Shape -> Slice -> Concat -> Reshape
            # tensor(N): Cast; x.size(-2): Shape -> Slice -> Squeeze
            x = x.reshape(torch.tensor(x.size(0)), x.size(-2), -1)
            x = torch.flatten(self.lin(x), 1)
            return torch.softmax(self.out(x), dim=1)  # Softmax

    return {"ops": (Ops, (2, 5, 6)), "identity": (tnn.Identity, (3, 4))}


def test_torch_exports_using_each_operator_import_with_torch_and_onnxruntime_outputs():
    torch = pytest.importorskip("torch")
    ops_seen = set()
    for key, (make, shape) in _torch_op_models(torch).items():
        module = _torch_net(torch, make)
        data = _torch_export(torch, module, shape)
        ops_seen |= {n.op_type for n in onnx.load_from_string(data).graph.node}
        got = from_onnx(onnx.load_from_string(data))
        assert got.input_shape == shape, key
        x = torch.randn(7, *shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            want = module(x).numpy()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        runtime = session.run(None, {"input": x.numpy()})[0]
        ours = got.net(x.numpy())
        np.testing.assert_allclose(ours, runtime, rtol=0, atol=TOL, err_msg=key)
        np.testing.assert_allclose(ours, want, rtol=0, atol=TOL, err_msg=key)
    # the test is about these operators: torch must really have written them
    each = {"Softmax", "LeakyRelu", "Sigmoid", "Slice", "Squeeze", "Cast", "Identity"}
    assert each <= ops_seen, each - ops_seen


def test_imported_torch_model_trains_saves_and_loads(tmp_path):
    from clearconv import io, optim

    torch, zoo = _torch_models()
    make, shape = zoo["vgg-bn"]
    path = tmp_path / "vgg.onnx"
    path.write_bytes(_torch_export(torch, _torch_net(torch, make), shape))
    model = load(path)
    assert model.class_names == ["0", "1", "2", "3", "4"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, *shape)).astype(np.float32)
    y = rng.integers(0, 5, 8)
    loss_fn, opt = nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        losses.append(float(loss_fn(model(x, training=True), y)))
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < losses[0]
    saved = io.save(model, tmp_path / "vgg.npz")
    again = io.load(saved)
    np.testing.assert_array_equal(again(x), model(x))


# -- refusals and broken files ------------------------------------------------------
def _f32(v):
    """Float arrays as float32 (ONNX weights); integer arrays (shapes) as they are."""
    v = np.asarray(v)
    return v.astype(np.float32) if v.dtype.kind == "f" else v


def _graph_model(nodes, inits, in_shape=("N", 1, 4, 4), out_shape=("N", 2), opset=17):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TP.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TP.FLOAT, list(out_shape))],
        initializer=[onnx.numpy_helper.from_array(_f32(v), k) for k, v in inits],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_unsupported_nodes_are_all_listed():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["a"], name="conv", foo=2),
        helper.make_node("Relu", ["a"], ["b"], name="ok"),
        helper.make_node("Erf", ["b"], ["c"], name="erf1"),
        helper.make_node("MaxPool", ["c"], ["d"], name="pool", kernel_shape=[2], storage_order=1),
        helper.make_node("Erf", ["d"], ["e"], name="erf2"),
        helper.make_node("Flatten", ["e"], ["y"], name="flat"),
    ]
    proto = _graph_model(nodes, [("w", np.ones((2, 2, 1, 1)))], in_shape=("N", 2, 4, 4))
    with pytest.raises(UnsupportedModelError) as err:
        from_onnx(proto, source="m.onnx")
    msg = str(err.value)
    assert err.value.problems == [
        "Conv 'conv' (attribute foo=2 is not supported)",
        "Erf 'erf1' (operator Erf is not supported)",
        "MaxPool 'pool' (storage_order=1 is not supported)",
        "Erf 'erf2' (operator Erf is not supported)",
    ]
    # grouped by operator with counts, in order of first appearance
    assert msg.startswith("m.onnx: cannot import 4 unsupported nodes: Conv x1 (Conv 'conv'")
    assert "Erf x2 (Erf 'erf1' (operator Erf is not supported); Erf 'erf2'" in msg
    assert "MaxPool x1 (" in msg
    assert "\n" not in msg


def test_torch_lstm_is_refused():
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class Bad(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv = tnn.Conv2d(4, 4, 3, groups=2)
            self.lstm = tnn.LSTM(4, 3, batch_first=True)

        def forward(self, x):
            h = self.conv(x).flatten(2).transpose(1, 2)  # (N, L, 4)
            return self.lstm(h)[0][:, -1]

    data = _torch_export(torch, Bad().eval(), (4, 5, 5))
    with pytest.raises(UnsupportedModelError) as err:
        from_onnx(onnx.load_from_string(data))
    problems = " | ".join(err.value.problems)
    assert "operator LSTM is not supported" in problems
    assert "group=2" not in problems  # grouped convolution imports


@pytest.mark.parametrize(
    "nodes, inits, match",
    [
        (  # a constant added to activations that is no layer's bias
            [
                helper.make_node("Add", ["x", "c"], ["a"], name="shift"),
                helper.make_node("Flatten", ["a"], ["y"]),
            ],
            [("c", np.ones((1, 1, 4, 4)))],
            r"Add 'shift' \(an Add of a constant that is not the bias",
        ),
        (
            [
                helper.make_node("Conv", ["x", "w"], ["a"], name="c", pads=[1, 0, 0, 0]),
                helper.make_node("Flatten", ["a"], ["y"]),
            ],
            [("w", np.ones((2, 1, 2, 2)))],
            r"Conv 'c' \(asymmetric pads",
        ),
        (
            [
                helper.make_node("Flatten", ["x"], ["a"], name="f", axis=2),
                helper.make_node("Identity", ["a"], ["y"]),
            ],
            [],
            r"Flatten 'f' \(axis=2 merges the batch",
        ),
        (
            [
                helper.make_node("Reshape", ["x", "s"], ["y"], name="r"),
            ],
            [("s", np.array([-1, 2]))],
            r"Reshape 'r' \(shape \[-1, 2\] does not fit",
        ),
    ],
    ids=["add-constant", "asymmetric-pads", "flatten-axis", "reshape"],
)
def test_structural_refusals(nodes, inits, match):
    proto = _graph_model(nodes, inits)
    with pytest.raises(UnsupportedModelError, match=match):
        from_onnx(proto)


def test_broken_files_give_clear_errors(tmp_path):
    good = to_onnx(STACKS["residual-nested"][0], STACKS["residual-nested"][1])
    data = good.SerializeToString()
    for name, blob in [
        ("truncated.onnx", data[: len(data) // 3]),
        ("garbage.onnx", b"\x00\xffnot an onnx file at all" * 3),
        ("empty.onnx", b""),
    ]:
        path = tmp_path / name
        path.write_bytes(blob)
        with pytest.raises(ValueError, match=rf"{name}: not a valid ONNX"):
            load(path)
    with pytest.raises(FileNotFoundError, match="no such ONNX file"):
        load(tmp_path / "missing.onnx")


# -- the command line -----------------------------------------------------------------
def test_cli_export_import_round_trip(tmp_path, capsys):
    from clearconv import io

    net, shape = zoo.build("xo", rng=np.random.default_rng(0))
    k = net.output_shape((1, *shape))[-1]
    model = Model(net, shape, [f"c{i}" for i in range(k)])
    src = io.save(model, tmp_path / "xo.npz")
    out = tmp_path / "xo.onnx"
    assert main(["export", str(src), "--format", "onnx", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    onnx.checker.check_model(onnx.load(out))
    assert main(["import", str(out), str(tmp_path / "back.npz")]) == 0
    back = io.load(tmp_path / "back.npz")
    x = np.random.default_rng(1).random((3, *shape), dtype=np.float32)
    np.testing.assert_array_equal(back(x), model(x))
    assert back.class_names == model.class_names
    assert main(["export", "lenet5", str(tmp_path / "l5.onnx")]) == 0  # untrained zoo net


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    assert main(["import", str(bad), str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a valid ONNX" in err
    lstm = _graph_model([helper.make_node("Erf", ["x"], ["y"], name="e")], [])
    path = tmp_path / "erf.onnx"
    onnx.save(lstm, path)
    assert main(["import", str(path), str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Erf 'e' (operator Erf is not supported)" in err
    assert main(["export", "lenet5", str(tmp_path / "x.txt")]) == 2
    assert "end in .onnx" in capsys.readouterr().err


def test_imported_torch_model_can_be_inspected(tmp_path, capsys):
    image = pytest.importorskip("PIL.Image")
    torch, zoo = _torch_models()
    make, shape = zoo["lenet5"]
    onnx_path = tmp_path / "lenet.onnx"
    onnx_path.write_bytes(_torch_export(torch, _torch_net(torch, make), shape))
    npz = tmp_path / "lenet.npz"
    assert main(["import", str(onnx_path), str(npz)]) == 0
    pixels = (np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8)
    image.fromarray(pixels).save(tmp_path / "digit.png")
    html, png = tmp_path / "digit.html", tmp_path / "digit.png"
    assert main(["inspect", str(npz), "--image", str(png), "--out", str(html)]) == 0
    assert html.stat().st_size > 0
