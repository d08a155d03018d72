"""IDX reader: round trips, corrupt headers refused before allocating, real MNIST."""

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from clearconv.data import DataError, load_mnist, read_idx, verify_mnist, write_idx

# The real files: $CLEARCONV_DATA, else ../shared/datasets beside the checkout (CI has it).
BESIDE = Path(__file__).parents[2] / "shared/datasets"
SHARED = next(
    (
        Path(root)
        for root in (os.environ.get("CLEARCONV_DATA"), BESIDE)
        if root and (Path(root) / "mnist").is_dir()
    ),
    BESIDE,
)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_round_trip(tmp_path, compress, dtype):
    a = (np.arange(60) - 20).astype(dtype).reshape(3, 4, 5)
    p = tmp_path / "a.idx"
    write_idx(p, a, gzip=compress)
    assert (p.read_bytes()[:2] == b"\x1f\x8b") == compress
    b = read_idx(p)
    assert b.dtype == a.dtype and b.dtype.isnative and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_header_layout(tmp_path):
    p = tmp_path / "h.idx"
    write_idx(p, np.zeros((2, 3), np.int32))
    assert p.read_bytes()[:12] == bytes([0, 0, 0x0C, 2, 0, 0, 0, 2, 0, 0, 0, 3])


def _raw(tmp_path, data: bytes, compress=False) -> Path:
    p = tmp_path / ("f.gz" if compress else "f")
    p.write_bytes(gzip.compress(data) if compress else data)
    return p


def _header(code=0x08, dims=(2, 3)):
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"x", "magic bytes 00 00, found 01 00"),
        (_header(code=0x0A) + bytes(6), "unknown IDX type code 0x0A"),
        (bytes([0, 0, 8, 0]), "rank must be between 1 and 8, found 0"),
        (bytes([0, 0, 8, 9]) + bytes(36), "rank must be between 1 and 8, found 9"),
        (_header() + bytes(5), r"need 6 payload bytes, found 5"),
        (_header() + bytes(7), r"need 6 payload bytes, found (7|more than 6)"),
        (_header(dims=(2, 3))[:8], "truncated IDX file: expected 8 bytes of sizes, found 4"),
        (b"\x00\x00", "truncated IDX file: expected 4 bytes of header, found 2"),
        (_header(code=0x0C, dims=(1 << 20, 1 << 20)), "more than the limit"),
    ],
)
def test_corrupt_headers_rejected(tmp_path, compress, data, match):
    p = _raw(tmp_path, data, compress)
    with pytest.raises(DataError, match=match) as info:
        read_idx(p)
    assert str(p) in str(info.value)


def test_gzip_bomb_is_bounded(tmp_path):
    # header says 10 bytes, stream inflates to 50 MB: refused after reading 11 bytes
    p = tmp_path / "bomb.gz"
    p.write_bytes(gzip.compress(_header(dims=(10,)) + bytes(50_000_000), compresslevel=9))
    assert p.stat().st_size < 100_000
    with pytest.raises(DataError, match="need 10 payload bytes, found more than 10"):
        read_idx(p)


def test_limit_checked_before_allocating(tmp_path):
    p = _raw(tmp_path, _header(dims=(1000, 1000)) + bytes(10))
    with pytest.raises(DataError, match="more than the limit 100"):
        read_idx(p, max_bytes=100)


def test_corrupt_gzip_stream(tmp_path):
    good = gzip.compress(_header() + bytes(6))
    p = _raw(tmp_path, good[:-12])  # cut the stream short
    with pytest.raises(DataError, match=r"corrupt gzip stream|need 6 payload bytes"):
        read_idx(p)


def test_write_idx_rejects_bad_input(tmp_path):
    with pytest.raises(TypeError, match="dtype must be uint8"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="rank must be between 1 and 8, got 0"):
        write_idx(tmp_path / "x", np.array(3, np.uint8))


@pytest.mark.skipif(
    not (SHARED / "mnist").is_dir(),
    reason=f"MNIST copy not found in $CLEARCONV_DATA or at {SHARED / 'mnist'}",
)
def test_real_mnist():
    train = load_mnist(SHARED, "train", download=False)
    images, labels, names = train
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and names == [str(d) for d in range(10)]
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert images.mean() == pytest.approx(33.318, abs=5e-4)
    test = load_mnist(SHARED, "test", download=False)
    assert len(test) == 10000 and test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    # the recompressed copy is accepted through the MD5 of its uncompressed content
    assert verify_mnist(SHARED) == dict.fromkeys(verify_mnist(SHARED), "ok")
