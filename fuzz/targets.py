"""Fuzz targets: every reader of outside bytes, its valid seeds and its error types.

A target writes the fuzzed bytes where its reader expects a file (or posts them
to the page) and calls the public reader. An exception ``target.allowed(exc)`` accepts is
a correct refusal; any other exception, a 500 from the page, a hang or a memory
blow-up is a finding. Seeds are small valid files made here, so the fuzzer
starts from inputs that pass the outer checks and mutates its way inward.

Targets
-------
idx         ``clearconv.data.read_idx`` on raw IDX bytes -> ``DataError``
idx_gz      the same reader on gzip IDX (half the mutants are re-compressed
            mutations of the payload, so the header checks see them) -> ``DataError``
cifar       ``clearconv.data.load_cifar10(split="test")`` on ``test_batch.bin`` -> ``DataError``
image       ``clearconv.data.load_image`` (Pillow: PNG, JPEG, GIF, BMP) -> ``DataError``
model       ``clearconv.load`` on ``.npz`` model files (half the mutants rebuild
            the zip around a mutated member or header, with valid CRCs) -> ``ModelFileError``
checkpoint  ``clearconv.train.fit(resume=True)`` on a checkpoint -> ``ModelFileError``
onnx        ``clearconv.onnx.load`` -> ``ValueError`` (incl. ``UnsupportedModelError``)
upload      ``POST /api/predict`` of ``clearconv serve`` (first byte picks the
            content type) -> a JSON answer with status 200, 400, 413 or 415
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fuzz.mutate import mutate

__all__ = ["TARGETS", "Target", "Unexpected"]


class Unexpected(Exception):
    """A finding that is not a Python exception of the wrong type (e.g. an HTTP 500)."""


@dataclass
class Target:
    name: str
    seeds: Callable[[], list[bytes]]
    run: Callable[[bytes, Path], object]
    allowed: Callable[[BaseException], bool]
    structured: Callable[[bytes, list[bytes], np.random.Generator], bytes] | None = None
    notes: str = field(default="")

    def mutant(self, seeds: list[bytes], rng: np.random.Generator) -> bytes:
        """One input: a seed mutated raw, or (half the time) structure-aware."""
        seed = seeds[int(rng.integers(len(seeds)))]
        if self.structured is not None and rng.integers(2):
            return self.structured(seed, seeds, rng)
        return mutate(seed, seeds, rng)


# -- helpers ------------------------------------------------------------------
def _write(work: Path, name: str, data: bytes) -> Path:
    p = work / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@functools.cache
def _tiny_model():
    from clearconv import Model, nn

    r = np.random.default_rng(0)
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, rng=r),
        nn.BatchNorm2d(2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 3 * 3, 2, rng=r),
    )
    return Model(net, (1, 8, 8), ["x", "o"], mean=[0.5], std=[0.25])


_VALUES = (None, -1, 0, 10**12, 1e308, float("nan"), "", "x" * 50, [], {}, [1, 2], True)


def _json_mutate(value, rng: np.random.Generator):
    """Replace, drop or add one value somewhere inside a JSON document."""
    if isinstance(value, dict) and value and rng.integers(4):
        key = sorted(value)[int(rng.integers(len(value)))]
        out = dict(value)
        if rng.integers(8) == 0:
            del out[key]
        else:
            out[key] = _json_mutate(value[key], rng)
        return out
    if isinstance(value, list) and value and rng.integers(4):
        i = int(rng.integers(len(value)))
        return [*value[:i], _json_mutate(value[i], rng), *value[i + 1 :]]
    return _VALUES[int(rng.integers(len(_VALUES)))]


def _rezip(seed: bytes, seeds: list[bytes], rng: np.random.Generator) -> bytes:
    """Mutate one member of a ``.npz`` (or its JSON header) and re-zip with valid CRCs."""
    try:
        with zipfile.ZipFile(io.BytesIO(seed)) as z:
            members = {n: z.read(n) for n in z.namelist()}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return mutate(seed, seeds, rng)
    names = sorted(members)
    name = names[int(rng.integers(len(names)))]
    if name == "__header__.npy" and rng.integers(2):
        text = str(np.load(io.BytesIO(members[name])))
        if rng.integers(2):
            new = json.dumps(_json_mutate(json.loads(text), rng))
        else:
            new = mutate(text.encode(), [text.encode()], rng).decode("utf-8", "replace")
        buf = io.BytesIO()
        np.save(buf, np.array(new))
        members[name] = buf.getvalue()
    else:
        members[name] = mutate(members[name], list(members.values()), rng)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return out.getvalue()


# -- IDX ----------------------------------------------------------------------
def _idx_seeds(gz: bool) -> list[bytes]:
    import tempfile

    from clearconv.data import write_idx

    out = []
    arrays = [
        np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4),
        np.arange(5, dtype=np.uint8),
        np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3),
        np.arange(-3, 3, dtype=np.int32),
    ]
    with tempfile.TemporaryDirectory() as d:
        for i, a in enumerate(arrays):
            p = Path(d) / f"{i}.idx"
            write_idx(p, a, gzip=gz)
            out.append(p.read_bytes())
    return out


def _idx_run(data: bytes, work: Path) -> object:
    from clearconv.data import read_idx

    return read_idx(_write(work, "f.idx", data), max_bytes=1 << 24)


def _gz_structured(seed: bytes, seeds: list[bytes], rng: np.random.Generator) -> bytes:
    try:
        raw = gzip.decompress(seed)
    except (OSError, EOFError, ValueError):
        return mutate(seed, seeds, rng)
    return gzip.compress(mutate(raw, [raw], rng), mtime=0)


def _data_error(exc: BaseException) -> bool:
    from clearconv.data import DataError

    return isinstance(exc, DataError)


# -- CIFAR --------------------------------------------------------------------
def _cifar_seeds() -> list[bytes]:
    r = np.random.default_rng(0)
    recs = []
    for n in (1, 3):
        rec = r.integers(0, 256, (n, 3073), dtype=np.uint8)
        rec[:, 0] = r.integers(0, 10, n)
        recs.append(rec.tobytes())
    return recs


def _cifar_run(data: bytes, work: Path) -> object:
    from clearconv.data import load_cifar10

    _write(work, "cifar10/test_batch.bin", data)
    return load_cifar10(work, split="test", download=False)


# -- images -------------------------------------------------------------------
def _image_seeds() -> list[bytes]:
    from PIL import Image

    pic = np.zeros((6, 7, 3), np.uint8)
    pic[1:5, 2:6] = (200, 30, 90)
    out = []
    for fmt, mode in (("PNG", "RGB"), ("PNG", "LA"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "L")):
        buf = io.BytesIO()
        Image.fromarray(pic).convert(mode).save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


def _image_run(data: bytes, work: Path) -> object:
    from clearconv.data import load_image

    return load_image(_write(work, "f.img", data), size=(8, 8), channels=1)


# -- model files and checkpoints ------------------------------------------------
def _model_seeds() -> list[bytes]:
    import tempfile

    import clearconv

    with tempfile.TemporaryDirectory() as d:
        p = clearconv.save(_tiny_model(), Path(d) / "m.npz")
        return [p.read_bytes()]


def _model_run(data: bytes, work: Path) -> object:
    import clearconv

    return clearconv.load(_write(work, "m.npz", data))


def _model_error(exc: BaseException) -> bool:
    from clearconv.io import ModelFileError

    return isinstance(exc, ModelFileError)


def _ckpt_error(exc: BaseException) -> bool:
    # fit documents a plain ValueError for a checkpoint of other settings
    return _model_error(exc) or (
        type(exc) is ValueError and "cannot resume with different settings" in str(exc)
    )


@functools.cache
def _ckpt_data():
    r = np.random.default_rng(1)
    return r.random((8, 1, 8, 8), dtype=np.float32), np.arange(8) % 2


def _ckpt_fit(path: Path, resume: bool):
    import copy

    from clearconv.train import fit

    model = copy.deepcopy(_tiny_model())
    return fit(
        model, _ckpt_data(), epochs=2, batch_size=4, lr=0.01, seed=0,
        checkpoint=path, resume=resume, progress=False,
    )  # fmt: skip


def _ckpt_seeds() -> list[bytes]:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.npz"
        _ckpt_fit(p, False)
        return [p.read_bytes()]


def _ckpt_run(data: bytes, work: Path) -> object:
    return _ckpt_fit(_write(work, "c.npz", data), True)


# -- ONNX ---------------------------------------------------------------------
def _onnx_seeds() -> list[bytes]:
    import tempfile

    from clearconv.onnx import export

    with tempfile.TemporaryDirectory() as d:
        m = _tiny_model()
        p = export(m, Path(d) / "m.onnx")
        return [Path(p).read_bytes()]


def _onnx_run(data: bytes, work: Path) -> object:
    from clearconv.onnx import load

    return load(_write(work, "m.onnx", data))


def _value_error(exc: BaseException) -> bool:
    return isinstance(exc, ValueError)


# -- the page's uploads ---------------------------------------------------------
_CTYPES = (
    "image/png",
    "application/json",
    "multipart/form-data; boundary=XyZ",
    "application/octet-stream",
    "text/plain",
)


@functools.cache
def _client():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from clearconv.serve import create_app

    return TestClient(create_app(_tiny_model(), max_bytes=64 * 1024), raise_server_exceptions=False)


def _upload_seeds() -> list[bytes]:
    png = _image_seeds()[0]
    pixels = json.dumps({"pixels": np.eye(8).tolist()}).encode()
    multi = (
        b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--XyZ--\r\n"
    )
    return [b"\x00" + png, b"\x01" + pixels, b"\x02" + multi]


def _upload_run(data: bytes, work: Path) -> object:
    ctype = _CTYPES[data[0] % len(_CTYPES)] if data else "image/png"
    r = _client().post("/api/predict", content=data[1:], headers={"content-type": ctype})
    body = r.json()
    if r.status_code == 200:
        if abs(sum(body["probabilities"]) - 1) > 1e-4:
            raise Unexpected(f"probabilities do not sum to 1: {body}")
    elif r.status_code not in (400, 413, 415) or set(body) != {"error"}:
        raise Unexpected(f"status {r.status_code}: {body}")
    elif "Traceback" in body["error"]:
        raise Unexpected(f"a stack trace in the answer: {body}")
    return body


def _none(exc: BaseException) -> bool:
    return False


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("idx", lambda: _idx_seeds(False), _idx_run, _data_error),
        Target("idx_gz", lambda: _idx_seeds(True), _idx_run, _data_error, _gz_structured),
        Target("cifar", _cifar_seeds, _cifar_run, _data_error),
        Target("image", _image_seeds, _image_run, _data_error),
        Target("model", _model_seeds, _model_run, _model_error, _rezip),
        Target("checkpoint", _ckpt_seeds, _ckpt_run, _ckpt_error, _rezip),
        Target("onnx", _onnx_seeds, _onnx_run, _value_error),
        Target("upload", _upload_seeds, _upload_run, _none),
    )
}
