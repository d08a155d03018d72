"""ONNX for the segmentation layers: ConvTranspose and Resize out and back, against
onnxruntime and PyTorch's own exports; U-Net and FCN export whole."""

from __future__ import annotations

import io as _io
import warnings

import numpy as np
import pytest

from clearconv import nn, zoo
from clearconv.model import Model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from clearconv.onnx import export, load, to_onnx  # noqa: E402


def _run(proto, x):
    s = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]


def _chain():
    """Grows 8x8 maps and pools them back: Model keeps per-pixel nets at the input's size."""
    r = np.random.default_rng(0)
    return nn.Sequential(
        nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1, rng=r),  # 16
        nn.Upsample(2, mode="bilinear"),  # 32
        nn.AvgPool2d(4),  # 8
        nn.Upsample(2),  # 16
        nn.ConvTranspose2d(4, 6, 3, padding=1, groups=2, bias=False, rng=r),  # 16
        nn.AvgPool2d(2),  # 8
        nn.Upsample(2, mode="bilinear", align_corners=True),  # 16
        nn.ConvTranspose2d(6, 2, 3, padding=2, dilation=2, rng=r),  # 16
        nn.AvgPool2d(2),  # 8
    )


def test_non_integer_scales_export():
    net = nn.Sequential(nn.Upsample((2, 1.5)), nn.Upsample(1.7, mode="bilinear"))
    proto = to_onnx(net, (2, 5, 6))
    x = np.random.default_rng(1).standard_normal((2, 2, 5, 6)).astype(np.float32)
    np.testing.assert_allclose(_run(proto, x), net(x), atol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_chain_export_matches_onnxruntime_and_loads_back(tmp_path, batch):
    net = _chain()
    proto = to_onnx(net, (3, 8, 8))
    onnx.checker.check_model(proto)
    assert {"ConvTranspose", "Resize"} <= {n.op_type for n in proto.graph.node}
    x = np.random.default_rng(1).standard_normal((batch, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(proto, x), net(x), atol=1e-5)
    path = tmp_path / "chain.onnx"
    export(net, path, input_shape=(3, 8, 8))
    back = load(path)
    assert [type(m).__name__ for m in back.net] == [type(m).__name__ for m in net]
    np.testing.assert_allclose(back(x), net(x), atol=1e-6)


@pytest.mark.parametrize("name", ["unet", "fcn"])
def test_segmentation_zoo_exports(tmp_path, name):
    net, shape = zoo.build(name, (3, 32, 32), 4, rng=np.random.default_rng(0))
    model = Model(net, shape, ["bg", "a", "b", "c"])
    path = tmp_path / f"{name}.onnx"
    export(model, path)
    proto = onnx.load(str(path))
    x = np.random.default_rng(2).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(_run(proto, x), net(x), atol=1e-5)
    # the fcn is a chain; the unet's skips (Concat of branches) are assembled back
    back = load(path)
    assert back.per_pixel and back.class_names == model.class_names
    np.testing.assert_allclose(back(x), net(x), atol=1e-5)
    if name == "unet":
        assert any(isinstance(m, nn.Concat) for m in back.net.modules())


def test_torch_exports_load(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(
        torch.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1),
        torch.nn.Upsample(scale_factor=2, mode="nearest"),
        torch.nn.ConvTranspose2d(4, 2, 2, stride=2),
        torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
        torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
        torch.nn.AvgPool2d(32),  # back to the input's size: a per-pixel Model
    ).eval()
    buf = _io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, (torch.randn(1, 3, 5, 4),), buf, dynamo=False, input_names=["input"],
            output_names=["out"], opset_version=17,
        )  # fmt: skip
    path = tmp_path / "torch.onnx"
    path.write_bytes(buf.getvalue())
    back = load(path)
    x = np.random.default_rng(3).standard_normal((1, 3, 5, 4)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.tensor(x)).numpy()
    np.testing.assert_allclose(back(x), want, atol=1e-5)
