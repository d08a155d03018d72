"""Every reader of outside bytes refuses crafted bad input with its documented error,
before allocating what the bad header claims (RELIABILITY.md, "readers")."""

import contextlib
import gzip
import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest

import clearconv
from clearconv import Model, nn
from clearconv.data import DataError, load_cifar10, load_image, read_idx, write_idx
from clearconv.io import ModelFileError


@contextlib.contextmanager
def allocates_under(limit_mb: float):
    """Fail if the block allocates ``limit_mb`` MiB or more at its peak.

    tracemalloc counts every allocation through Python's allocators, NumPy's
    array buffers included, when it is made: memory reserved and never touched
    counts, and an earlier peak in the process does not hide this one (a
    process's peak resident size, ``ru_maxrss``, misses both). Pillow's pixel
    buffers are C allocations it cannot see; the image tests check that Pillow
    refuses before decoding instead.
    """
    tracemalloc.start()
    try:
        yield
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit_mb * 2**20, f"allocated {peak / 2**20:.0f} MiB, limit {limit_mb} MiB"


# -- IDX ------------------------------------------------------------------------
def test_idx_wrong_magic_truncated_and_size_mismatch(tmp_path):
    p = tmp_path / "a.idx"
    write_idx(p, np.arange(12, dtype=np.uint8).reshape(3, 4))
    good = p.read_bytes()
    cases = {
        b"\x01\x00" + good[2:]: "magic",
        good[:3]: "truncated",
        good[:-1]: "need 12 payload bytes, found 11",
        good + b"\x00": "found 13",
        good[:2] + b"\x42" + good[3:]: "unknown IDX type",
        good[:3] + b"\x00" + good[4:]: "rank",
    }
    for data, msg in cases.items():
        p.write_bytes(data)
        with pytest.raises(DataError, match=msg):
            read_idx(p)


def test_idx_absurd_dimensions_refused_before_allocation(tmp_path):
    p = tmp_path / "big.idx"
    # header: uint8, rank 3, 65535**3 bytes (2.8e14) claimed, 4 bytes present
    p.write_bytes(bytes([0, 0, 8, 3]) + np.array([65535] * 3, ">u4").tobytes() + b"abcd")
    with allocates_under(1), pytest.raises(DataError, match="more than the limit"):
        read_idx(p)
    # 2**31 claimed, under the limit: refused by the file length, not by allocating
    p.write_bytes(bytes([0, 0, 8, 1]) + np.array([1 << 31], ">u4").tobytes() + b"abcd")
    with allocates_under(1), pytest.raises(DataError, match="payload bytes"):
        read_idx(p)


def test_idx_gzip_claiming_gigabytes_does_not_allocate_them(tmp_path):
    p = tmp_path / "lie.idx.gz"
    header = bytes([0, 0, 8, 1]) + np.array([3 << 30], ">u4").tobytes()  # claims 3 GiB
    p.write_bytes(gzip.compress(header + b"tiny", mtime=0))
    # one 16 MiB read buffer at most, whatever the header claims
    with allocates_under(20), pytest.raises(DataError, match="found 4 after decompression"):
        read_idx(p)


def test_idx_gzip_bomb_stops_at_the_header_size(tmp_path):
    # 64 MiB of zeros compress to ~64 KB; the header says 16 bytes: read stops at 17
    p = tmp_path / "bomb.idx.gz"
    header = bytes([0, 0, 8, 1]) + np.array([16], ">u4").tobytes()
    p.write_bytes(gzip.compress(header + bytes(64 << 20), compresslevel=9, mtime=0))
    with allocates_under(1), pytest.raises(DataError, match="more than 16"):
        read_idx(p)


def test_idx_corrupt_gzip_stream(tmp_path):
    p = tmp_path / "c.idx.gz"
    write_idx(p, np.zeros((4, 4), np.uint8), gzip=True)
    data = bytearray(p.read_bytes())
    data[12:20] = b"\xff" * 8
    p.write_bytes(bytes(data))
    with pytest.raises(DataError):
        read_idx(p)


def test_idx_float_payload_with_nan_is_data_not_an_error(tmp_path):
    # decision (RELIABILITY.md): IDX is a container; NaN in float IDX is returned as
    # is and caught where it matters (training stops on a NaN loss; model files refuse it)
    p = tmp_path / "f.idx"
    write_idx(p, np.array([1.0, np.nan], np.float32))
    assert np.isnan(read_idx(p)[1])


# -- CIFAR ----------------------------------------------------------------------
def test_cifar_bad_length_bad_label_and_meta(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    rec = np.zeros((2, 3073), np.uint8)
    (folder / "test_batch.bin").write_bytes(rec.tobytes()[:-1])
    with pytest.raises(DataError, match="3073-byte"):
        load_cifar10(tmp_path, "test", download=False)
    rec[1, 0] = 200
    (folder / "test_batch.bin").write_bytes(rec.tobytes())
    with pytest.raises(DataError, match="labels must be in"):
        load_cifar10(tmp_path, "test", download=False)
    rec[1, 0] = 1
    (folder / "test_batch.bin").write_bytes(rec.tobytes())
    (folder / "batches.meta.txt").write_bytes(b"\xff\xfe\x00cat")
    with pytest.raises(DataError, match="UTF-8"):
        load_cifar10(tmp_path, "test", download=False)


# -- images ---------------------------------------------------------------------
Image = pytest.importorskip("PIL.Image")


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def test_image_truncated_and_garbage(tmp_path):
    p = tmp_path / "a.png"
    p.write_bytes(_png(20, 20)[:30])
    with pytest.raises(DataError, match="cannot read image"):
        load_image(p)
    p.write_bytes(b"GIF89a" + bytes(10))
    with pytest.raises(DataError, match="cannot read image"):
        load_image(p)


def test_image_decompression_bomb_refused_before_decoding(tmp_path):
    # a real 1x1 PNG whose IHDR claims 30000 x 30000 (900 M pixels): CRC fixed up
    import struct
    import zlib

    data = bytearray(_png(1, 1))
    ihdr = 8 + 8  # signature, then length + "IHDR"
    data[ihdr : ihdr + 8] = struct.pack(">II", 30000, 30000)
    crc = zlib.crc32(bytes(data[ihdr - 4 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    p = tmp_path / "bomb.png"
    p.write_bytes(bytes(data))
    with allocates_under(1), pytest.raises(DataError, match="decompression bomb"):
        load_image(p)


def test_image_chunk_length_lie_does_not_allocate_it(tmp_path):
    # an IDAT chunk claiming 2 GB: Pillow reads that length from a real file in one go
    data = bytearray(_png(4, 4))
    at = data.index(b"IDAT") - 4
    data[at : at + 4] = (0x7FFFFFF0).to_bytes(4, "big")
    p = tmp_path / "lie.png"
    p.write_bytes(bytes(data))
    with allocates_under(1):
        try:  # Pillow may decode the 16 pixels before it needs the rest: fine either way
            assert load_image(p, channels=1).shape == (1, 4, 4)
        except DataError:
            pass


# -- model files --------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    r = np.random.default_rng(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=r))
    return clearconv.save(Model(net, (1, 2, 2), ["a", "b"]), tmp_path / "m.npz")


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _rewrite(path, members, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression) as z:
        for n, b in members.items():
            z.writestr(n, b)


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=True)
    return buf.getvalue()


def test_model_file_with_pickle_is_refused_and_never_unpickled(saved, tmp_path):
    class Boom:
        def __reduce__(self):  # would run at unpickling time
            return (exec, ("raise SystemExit('unpickled!')",))

    m = _members(saved)
    m["1.weight.npy"] = _npy(np.array([Boom()], dtype=object))
    _rewrite(saved, m)
    with pytest.raises(ModelFileError, match="object \\(pickled\\) arrays"):
        clearconv.load(saved)


def test_model_file_header_claiming_huge_shape_is_refused_before_allocation(saved):
    m = _members(saved)
    hdr = b"{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }"
    hdr = hdr + b" " * (118 - len(hdr)) + b"\n"
    m["1.weight.npy"] = b"\x93NUMPY\x01\x00" + len(hdr).to_bytes(2, "little") + hdr + bytes(32)
    _rewrite(saved, m)
    claim = r"claims shape \(100000, 100000\)"
    with allocates_under(1), pytest.raises(ModelFileError, match=claim):
        clearconv.load(saved)


def test_model_file_zip_bomb_is_refused(saved):
    m = _members(saved)
    _rewrite(saved, m, zipfile.ZIP_DEFLATED)
    n = 80 << 20  # 80 MiB of zeros deflate to ~80 KB: streamed, never held in memory
    with zipfile.ZipFile(saved, "a", zipfile.ZIP_DEFLATED) as z, z.open("pad.npy", "w") as f:
        for _ in range(n >> 20):
            f.write(bytes(1 << 20))
    with allocates_under(4), pytest.raises(ModelFileError, match="zip bomb"):
        clearconv.load(saved)


def test_model_file_non_npy_member_and_truncation(saved):
    good = saved.read_bytes()
    m = _members(saved)
    m["notes.txt"] = b"hello"
    _rewrite(saved, m)
    with pytest.raises(ModelFileError, match=r"not a \.npy array"):
        clearconv.load(saved)
    saved.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelFileError):
        clearconv.load(saved)
    saved.write_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(ModelFileError):
        clearconv.load(saved)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_model_file_nan_weights_refused(saved, bad):
    m = _members(saved)
    w = np.load(io.BytesIO(m["1.weight.npy"]))
    w[0, 0] = bad
    m["1.weight.npy"] = _npy(w)
    _rewrite(saved, m)
    with pytest.raises(ModelFileError, match="NaN or infinite"):
        clearconv.load(saved)


@pytest.mark.parametrize(
    ("norm", "msg"),
    [
        ({"mean": [float("nan")], "std": [1.0]}, "finite"),
        ({"mean": [0.0], "std": [float("inf")]}, "finite"),
        ({"mean": [0.0], "std": [0.0]}, "positive"),
    ],
)
def test_model_file_bad_normalisation_refused(saved, norm, msg):
    m = _members(saved)
    header = json.loads(str(np.load(io.BytesIO(m["__header__.npy"]))))
    header["normalization"] = norm
    m["__header__.npy"] = _npy(np.array(json.dumps(header)))
    _rewrite(saved, m)
    with pytest.raises(ModelFileError, match=msg):
        clearconv.load(saved)


# -- ONNX -----------------------------------------------------------------------
def test_onnx_truncated_and_garbage(tmp_path):
    pytest.importorskip("onnx")
    from clearconv.onnx import export
    from clearconv.onnx import load as onnx_load

    r = np.random.default_rng(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=r))
    p = export(net, tmp_path / "n.onnx", input_shape=(1, 2, 2))
    data = (tmp_path / "n.onnx").read_bytes()
    for bad in (data[: len(data) // 2], b"\x08" + bytes(50), b"not onnx at all"):
        (tmp_path / "n.onnx").write_bytes(bad)
        with pytest.raises(ValueError, match="not a valid ONNX"):
            onnx_load(p)
