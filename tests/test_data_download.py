"""Downloads against a fake network served from memory (no test touches the network)."""

import gzip
import hashlib
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from clearconv.data import (
    DataError,
    DataMissingError,
    FileSpec,
    default_data_root,
    download,
    load_fashion_mnist,
    load_mnist,
    resolve_root,
    write_idx,
)
from clearconv.data.download import file_ok, verify_files
from clearconv.data.mnist import MNIST_MIRRORS, MNIST_SPECS

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


class FakeResponse:
    def __init__(self, body: bytes, status: int, fail_after: int | None = None):
        self.body, self.status, self.fail_after, self.pos = body, status, fail_after, 0

    def read(self, n=-1):
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise ConnectionResetError("connection reset by fake peer")
        end = len(self.body) if n < 0 else self.pos + n
        if self.fail_after is not None:
            end = min(end, self.fail_after)
        chunk = self.body[self.pos : end]
        self.pos += len(chunk)
        return chunk

    def getcode(self):
        return self.status

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class FakeNet:
    """``urlopen`` replacement: serves ``files``; records the Range headers it saw."""

    def __init__(self, files, *, ranges=True, fail_after=None):
        self.files, self.ranges, self.fail_after, self.seen = files, ranges, fail_after, []

    def __call__(self, request, timeout=None):
        url = request.full_url
        rng = request.get_header("Range")
        self.seen.append((url, rng))
        if url not in self.files:
            raise urllib.error.HTTPError(url, 404, "Not Found", None, None)
        body = self.files[url]
        fail, self.fail_after = self.fail_after, None  # fail once
        if rng and self.ranges:
            start = int(rng.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                raise urllib.error.HTTPError(url, 416, "Range Not Satisfiable", None, None)
            return FakeResponse(body[start:], 206, fail)
        return FakeResponse(body, 200, fail)


def offline(request, timeout=None):
    raise urllib.error.URLError("no network (fake)")


URL = "https://example.org/data.bin"


def test_download_complete_and_atomic(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet({URL: PAYLOAD}))
    dest = download(URL, tmp_path / "sub" / "data.bin", FileSpec("data.bin", md5(PAYLOAD)))
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.bin"]


@pytest.mark.parametrize("server_ranges", [True, False])
def test_download_resumes_after_interruption(tmp_path, monkeypatch, server_ranges):
    net = FakeNet({URL: PAYLOAD}, ranges=server_ranges, fail_after=3000)
    monkeypatch.setattr(urllib.request, "urlopen", net)
    dest = tmp_path / "data.bin"
    spec = FileSpec("data.bin", md5(PAYLOAD))
    with pytest.raises(ConnectionResetError):
        download(URL, dest, spec)
    part = tmp_path / "data.bin.part"
    assert not dest.exists() and part.stat().st_size == 3000  # nothing looks complete
    download(URL, dest, spec)
    assert net.seen[-1] == (URL, "bytes=3000-")
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_download_part_already_complete(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet({URL: PAYLOAD}))
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    download(URL, tmp_path / "data.bin", FileSpec("data.bin", md5(PAYLOAD)))
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", FakeNet({URL: PAYLOAD}))
    with pytest.raises(DataError, match=r"checksum mismatch for data.bin: expected MD5 0+, found"):
        download(URL, tmp_path / "data.bin", FileSpec("data.bin", "0" * 32))
    assert list(tmp_path.iterdir()) == []


def _tiny_mnist(tmp_path, n=7):
    """The four MNIST files (tiny, gzip) as bytes, and FileSpecs matching them."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, n).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.array([1, 2, 3], np.uint8),
    }
    blobs, specs = {}, {}
    for name, a in arrays.items():
        write_idx(tmp_path / name, a, gzip=True)
        blobs[name] = (tmp_path / name).read_bytes()
        (tmp_path / name).unlink()
        specs[name] = FileSpec(name, md5(blobs[name]))
    return arrays, blobs, specs


def test_load_mnist_downloads_with_mirror_fallback(tmp_path, monkeypatch):
    arrays, blobs, specs = _tiny_mnist(tmp_path)
    for name, spec in specs.items():
        monkeypatch.setitem(MNIST_SPECS, name, spec)
    # the first mirror has nothing (404), the second serves the files
    net = FakeNet({MNIST_MIRRORS[1] + k: v for k, v in blobs.items()})
    monkeypatch.setattr(urllib.request, "urlopen", net)
    images, labels, names = load_mnist(tmp_path / "root", "train")
    np.testing.assert_array_equal(images, arrays["train-images-idx3-ubyte.gz"])
    assert labels.dtype == np.int64 and names[0] == "0"
    assert (tmp_path / "root" / "mnist" / "train-labels-idx1-ubyte.gz").is_file()
    assert {u for u, _ in net.seen} >= {MNIST_MIRRORS[0] + "train-images-idx3-ubyte.gz"}
    # now cached: works offline
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert len(load_mnist(tmp_path / "root", "train")) == 7


def test_no_network_message_says_what_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataMissingError) as info:
        load_mnist(tmp_path, "train")
    msg = str(info.value)
    assert "\n" not in msg
    assert "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in msg
    assert f"into {tmp_path / 'mnist'}/" in msg and "no network (fake)" in msg
    with pytest.raises(DataMissingError, match="Fashion-MNIST not found and downloads are off"):
        load_fashion_mnist(tmp_path, "test", download=False)
    assert not any(tmp_path.rglob("*.gz"))


def test_uncompressed_and_recompressed_copies_accepted(tmp_path):
    a = np.arange(28 * 28 * 2, dtype=np.uint32).astype(np.uint8).reshape(2, 28, 28)
    write_idx(tmp_path / "raw", a)
    raw = (tmp_path / "raw").read_bytes()
    spec = FileSpec("x.gz", md5(b"published archive"), md5(raw), len(raw))
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw, compresslevel=1))
    assert file_ok(tmp_path / "x.gz", spec)
    assert file_ok(tmp_path / "raw", spec)
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw + b"!"))
    assert not file_ok(tmp_path / "x.gz", spec)
    assert verify_files(tmp_path, [spec, FileSpec("y.gz", "0" * 32)]) == {
        "x.gz": "bad checksum",
        "y.gz": "missing",
    }


def test_sha256sums_file_checked(tmp_path):
    (tmp_path / "a.gz").write_bytes(b"abc")
    spec = FileSpec("a.gz")
    (tmp_path / "SHA256SUMS").write_text(f"{hashlib.sha256(b'abc').hexdigest()}  a.gz\n")
    assert verify_files(tmp_path, [spec]) == {"a.gz": "ok"}
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  a.gz\n")
    assert verify_files(tmp_path, [spec]) == {"a.gz": "bad checksum"}


def test_data_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("CLEARCONV_DATA", str(tmp_path))
    assert default_data_root() == tmp_path and resolve_root(None) == tmp_path
    assert resolve_root("/x/y") == Path("/x/y")
    monkeypatch.delenv("CLEARCONV_DATA")
    assert default_data_root() == Path.home() / ".cache" / "clearconv"
