"""ONNX files exported before the rename (metadata under "convnet.") still load whole."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clearconv import nn

onnx = pytest.importorskip("onnx")

from clearconv.onnx import UnsupportedModelError, load, to_onnx  # noqa: E402

NAMES = ["cat", "dog", "bird"]
SHAPE = (1, 6, 6)


def _legacy_file(tmp_path, *, keep_meta=True):
    """An ONNX file as convnet wrote it: "convnet." metadata keys, producer "convnet",
    and a graph input whose sizes are open, so only the metadata says (1, 6, 6)."""
    rng = np.random.default_rng(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, rng=rng), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3, rng=rng)
    )
    proto = to_onnx(net, SHAPE)
    props = {
        "convnet.class_names": json.dumps(NAMES),
        "convnet.normalization": json.dumps({"mean": [0.5], "std": [0.25]}),
        "convnet.input_shape": json.dumps(list(SHAPE)),
        "convnet.meta": json.dumps({"epochs": 3}),
    }
    del proto.metadata_props[:]
    if keep_meta:
        onnx.helper.set_model_props(proto, props)
    proto.producer_name, proto.producer_version = "convnet", "0.9.0"
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    for d, name in zip(dims[1:], ("C", "H", "W")):
        d.dim_param = name  # clears dim_value: the size is open
    path = tmp_path / "old.onnx"
    path.write_bytes(proto.SerializeToString())
    return net, path


def test_file_with_convnet_metadata_loads_class_names_and_input_shape(tmp_path):
    net, path = _legacy_file(tmp_path)
    model = load(path)
    assert model.class_names == NAMES
    assert tuple(model.input_shape) == SHAPE
    assert model.mean is not None and model.std is not None
    np.testing.assert_allclose(np.ravel(model.mean), [0.5])
    np.testing.assert_allclose(np.ravel(model.std), [0.25])
    assert model.meta["epochs"] == 3
    assert model.meta["imported_from"] == "onnx (convnet 0.9.0)"
    x = np.random.default_rng(1).standard_normal((4, *SHAPE)).astype(np.float32)
    np.testing.assert_allclose(model.net(x), net(x), rtol=0, atol=1e-6)


def test_open_sizes_without_metadata_are_refused(tmp_path):
    # The legacy key is what supplied the shape above: without it the sizes stay open.
    _, path = _legacy_file(tmp_path, keep_meta=False)
    with pytest.raises(UnsupportedModelError, match=r"open sizes .* fixed \(C, H, W\)"):
        load(path)
