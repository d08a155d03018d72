"""Model files: round trip, atomic writes, and every kind of bad file refused by name."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

import clearconv
from clearconv import Model, ModelFileError, load, nn, save, zoo
from clearconv.io import HEADER_KEY, load_arrays, save_arrays


def _model(name: str = "lenet5", seed: int = 0) -> Model:
    net, shape = zoo.build(name, rng=np.random.default_rng(seed))
    return Model(net, shape, [str(i) for i in range(10)], mean=[0.13], std=[0.31],
                 meta={"model": name, "epochs": 1})  # fmt: skip


def _rewrite(path, header=None, drop=(), change=None):
    """Copy a model file with its header or arrays changed (to make bad files)."""
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    h = json.loads(str(arrays.pop(HEADER_KEY)))
    if header is not None:
        h = header(h)
    for k in drop:
        del arrays[k]
    if change:
        arrays.update(change)
    np.savez(path, **{HEADER_KEY: np.array(json.dumps(h))}, **arrays)


def test_round_trip_same_outputs_and_metadata(tmp_path):
    m = _model("mnist")
    x = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    p = save(m, tmp_path / "m.npz")
    m2 = load(p)
    np.testing.assert_array_equal(m2.predict_proba(x), m.predict_proba(x))
    assert m2.class_names == m.class_names and m2.input_shape == (1, 28, 28)
    np.testing.assert_allclose(m2.mean, [0.13]) and np.testing.assert_allclose(m2.std, [0.31])
    assert m2.meta == {"model": "mnist", "epochs": 1}
    assert list(m2.state_dict()) == list(m.state_dict())  # BN buffers included
    assert all(p.data.flags.writeable for p in m2.parameters())  # trainable after load
    assert clearconv.load is load and clearconv.save is save


def test_files_written_before_the_rename_still_load(tmp_path):
    # Model files saved as "convnet" (the package's name before clearconv) say so in
    # their header; they load unchanged, and a different format is still refused.
    m = _model()
    p = save(m, tmp_path / "old.npz")
    _rewrite(p, header=lambda h: {**h, "format": "convnet.model"})
    x = np.random.default_rng(2).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(load(p).predict_proba(x), m.predict_proba(x))
    _rewrite(p, header=lambda h: {**h, "format": "othernet.model"})
    with pytest.raises(ModelFileError, match="not a clearconv model file"):
        load(p)


def test_header_layout_and_no_leftover_temp_files(tmp_path):
    save(_model(), tmp_path / "m.npz")
    assert os.listdir(tmp_path) == ["m.npz"]
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        h = json.loads(str(f[HEADER_KEY]))
        assert "0.weight" in f.files and f["0.weight"].shape == (6, 1, 5, 5)
    assert h["format"] == "clearconv.model" and h["version"] == 1
    assert h["input_shape"] == [1, 28, 28] and h["normalization"]["mean"] == [0.13]
    assert h["config"]["type"] == "Sequential"


def test_save_overwrites_atomically_and_unwritable_folder_is_clear(tmp_path):
    p = tmp_path / "m.npz"
    save(_model(seed=0), p)
    save(_model(seed=1), p)
    np.testing.assert_array_equal(load(p)[0].weight.data, _model(seed=1)[0].weight.data)
    with pytest.raises(OSError, match="missing or not writable"):
        save(_model(), tmp_path / "no" / "such" / "m.npz")
    with pytest.raises(TypeError, match=r"clearconv\.Model"):
        save(_model().net, p)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda h: {**h, "version": 99}, "unknown version 99"),
        (lambda h: {**h, "format": "other"}, "not a clearconv model file"),
        (lambda h: {k: v for k, v in h.items() if k != "class_names"}, "missing class_names"),
        (lambda h: {**h, "input_shape": [1, 28]}, "architecture in the header is invalid"),
        (lambda h: {**h, "input_shape": "28"}, "input_shape"),
        (lambda h: {**h, "class_names": ["a", "b"]}, "class names"),
        (lambda h: {**h, "normalization": {"mean": [1, 2], "std": [1, 2]}}, "normalization"),
        (lambda h: {**h, "config": {"type": "Bogus"}}, "unknown layer type"),
    ],
)
def test_bad_headers_are_refused_by_name(tmp_path, edit, match):
    p = tmp_path / "m.npz"
    save(_model(), p)
    _rewrite(p, header=edit)
    with pytest.raises(ModelFileError, match=match):
        load(p)


def test_missing_unexpected_wrong_shape_dtype_nan_weights(tmp_path):
    p = tmp_path / "m.npz"
    cases = [
        ({"drop": ["3.bias"]}, r"missing weights: 3\.bias"),
        ({"change": {"extra": np.zeros(2, np.float32)}}, "unexpected arrays: extra"),
        ({"change": {"0.weight": np.zeros((6, 1, 3, 3), np.float32)}}, r"0\.weight has shape"),
        ({"change": {"0.bias": np.zeros(6, np.float64)}}, r"0\.bias has dtype float64"),
        ({"change": {"0.bias": np.full(6, np.nan, np.float32)}}, "NaN"),
    ]
    for kwargs, match in cases:
        save(_model(), p)
        _rewrite(p, **kwargs)
        with pytest.raises(ModelFileError, match=match):
            load(p)


def test_damaged_truncated_pickled_and_foreign_files(tmp_path):
    p = tmp_path / "m.npz"
    save(_model(), p)
    data = p.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"damaged or not a \.npz"):
        load(tmp_path / "trunc.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ModelFileError, match=r"damaged or not a \.npz"):
        load(tmp_path / "text.npz")
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ModelFileError, match="not a clearconv file"):
        load(tmp_path / "plain.npz")
    np.savez(tmp_path / "obj.npz", **{HEADER_KEY: np.array("{}")}, w=np.array([{"x": 1}], object))
    with pytest.raises(ModelFileError, match="pickled"):
        load(tmp_path / "obj.npz")
    np.savez(tmp_path / "badjson.npz", **{HEADER_KEY: np.array("{not json")})
    with pytest.raises(ModelFileError, match="not valid JSON"):
        load(tmp_path / "badjson.npz")
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    with pytest.raises(ModelFileError, match="not a clearconv file"):
        load(tmp_path / "empty.npz")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load(tmp_path / "nope.npz")


def test_model_delegates_and_validates():
    m = _model()
    assert len(m) == len(m.net) and m[0] is m.net[0]
    assert list(m.state_dict()) == list(m.net.state_dict())
    assert [n for n, _ in m.named_parameters()] == [n for n, _ in m.net.named_parameters()]
    assert m.output_shape((2, 1, 28, 28)) == (2, 10)
    assert [n for n, _ in m.layers()][:2] == ["0", "1"]
    x = np.zeros((2, 28, 28), np.uint8)
    assert m.preprocess(x).shape == (2, 1, 28, 28) and m.preprocess(x).dtype == np.float32
    np.testing.assert_allclose(m.preprocess(x)[0, 0, 0, 0], -0.13 / 0.31, rtol=1e-6)
    np.testing.assert_allclose(m.predict_proba(x).sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 28, 28\)"):
        m.preprocess(np.zeros((2, 3, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="does not match 3 class names"):
        Model(m.net, (1, 28, 28), ["a", "b", "c"])
    with pytest.raises(ValueError, match="std must be positive"):
        Model(m.net, (1, 28, 28), list("0123456789"), mean=[0.0], std=[0.0])
    with pytest.raises(ValueError, match="one per input channel"):
        Model(m.net, (1, 28, 28), list("0123456789"), mean=[0.0, 1.0], std=[1.0, 1.0])
    with pytest.raises(TypeError, match="net must be a clearconv Module"):
        Model("lenet5", (1, 28, 28), ["a"])
    with pytest.raises(TypeError, match="no config"):
        from clearconv.io import model_header

        class Custom(nn.Module):
            def output_shape(self, s):
                return (s[0], 2)

        model_header(Model(Custom(), (1, 2, 2), ["a", "b"]))


def test_predict_proba_does_not_apply_softmax_twice():
    # A net that already ends in Softmax (as an ONNX import of a torch model can)
    # gives the same probabilities as the same net without it.
    rng = np.random.default_rng(0)
    body = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, rng=rng))
    with_softmax = nn.Sequential(nn.Flatten(), body[1], nn.Softmax(dim=1))
    x = rng.standard_normal((5, 1, 2, 2)).astype(np.float32)
    plain = Model(body, (1, 2, 2), ["a", "b", "c"]).predict_proba(x)
    ending = Model(with_softmax, (1, 2, 2), ["a", "b", "c"]).predict_proba(x)
    np.testing.assert_allclose(plain, ending, rtol=1e-6)
    np.testing.assert_allclose(plain.sum(axis=1), 1.0, rtol=1e-6)


def test_save_arrays_any_name_round_trips_and_object_arrays_are_refused(tmp_path):
    # np.savez(f, **arrays) would take an array named "allow_pickle" as its flag;
    # save_arrays writes every name as a member, np.load reads the file as usual.
    arrays = {
        "allow_pickle": np.arange(3, dtype=np.float32),
        "file": np.ones((2, 2), np.float64),
        "opt.state.0.exp_avg": np.zeros((0, 4), np.float32),
        "step": np.int64(7),
    }
    path = save_arrays(tmp_path / "a.npz", {"k": [1, "x"]}, arrays)
    header, got = load_arrays(path)
    assert header == {"k": [1, "x"]}
    assert set(got) == set(arrays)
    for k, v in arrays.items():
        assert got[k].dtype == np.asarray(v).dtype and np.array_equal(got[k], v)
    with np.load(path, allow_pickle=False) as f:  # still a plain NumPy .npz
        assert sorted(f.files) == sorted([HEADER_KEY, *arrays])
        assert zipfile.ZipFile(path).getinfo("step.npy").compress_type == zipfile.ZIP_STORED
    with pytest.raises(ValueError, match=r"[Oo]bject arrays"):
        save_arrays(tmp_path / "b.npz", {}, {"x": np.array([None, 1], dtype=object)})
    assert os.listdir(tmp_path) == ["a.npz"]  # the failed write left nothing behind
