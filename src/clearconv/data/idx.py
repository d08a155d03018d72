"""IDX files (the MNIST container), raw or gzip-compressed, read safely.

Layout: 2 zero bytes, a type code, the rank ``r``; then ``r`` big-endian uint32
sizes; then ``prod(sizes) * itemsize`` big-endian values, row-major. The header
is checked (magic, type, rank, sizes, payload length) *before* any array is
allocated, and a gzip stream is never decompressed further than the header
says plus one byte, so a corrupt or hostile file fails with a :class:`DataError`
instead of exhausting memory.
"""

from __future__ import annotations

import gzip as _gzip
import io
import math
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_MAX_BYTES", "DataError", "read_idx", "write_idx"]

#: Largest payload :func:`read_idx` accepts unless told otherwise (4 GiB).
DEFAULT_MAX_BYTES = 1 << 32
_MAX_RANK = 8
_GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian dtype of the stored values.
_CODE_TO_DTYPE: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE = {(dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()}


class DataError(ValueError):
    """A data file or folder is missing, corrupt or not what was expected.

    The message names the file and says what was expected and what was found;
    the CLI prints it as its one line.
    """


def _read_exact(f: io.BufferedIOBase, n: int, path: Path, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise DataError(
            f"{path}: truncated IDX file: expected {n} bytes of {what}, found {len(data)}"
        )
    return data


def _open(path: Path) -> io.BufferedReader | _gzip.GzipFile:
    """Open raw or gzip by content (magic bytes), not by file name."""
    with open(path, "rb") as f:
        head = f.read(2)
    if head == _GZIP_MAGIC:
        return _gzip.open(path, "rb")
    return open(path, "rb")


def read_idx(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> np.ndarray:
    """Read an IDX file (raw or gzip) into an array in native byte order.

    Parameters
    ----------
    path : str or PathLike
        The file; gzip is recognised by its magic bytes ``1f 8b``.
    max_bytes : int
        Refuse headers whose payload ``prod(dims) * itemsize`` is larger.

    Returns
    -------
    numpy.ndarray
        Shape ``dims`` from the header, dtype from the type code
        (uint8, int8, int16, int32, float32 or float64).

    Raises
    ------
    DataError
        Bad magic, unknown type code, rank 0 or above 8, sizes larger than
        ``max_bytes``, payload shorter or longer than the header says.
    FileNotFoundError
        The file does not exist.

    Example
    -------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.idx"
    >>> write_idx(p, np.arange(6, dtype=np.uint8).reshape(2, 3))
    >>> read_idx(p)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    path = Path(path)
    try:
        return _read_idx(path, max_bytes)
    except (_gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip stream ({exc})") from exc


def _read_idx(path: Path, max_bytes: int) -> np.ndarray:
    with _open(path) as f:
        magic = _read_exact(f, 4, path, "header")
        if magic[0] != 0 or magic[1] != 0:
            raise DataError(
                f"{path}: not an IDX file: expected magic bytes 00 00, found {magic[:2].hex(' ')}"
            )
        code, rank = magic[2], magic[3]
        if code not in _CODE_TO_DTYPE:
            known = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
            raise DataError(f"{path}: unknown IDX type code 0x{code:02X} (expected one of {known})")
        if not 1 <= rank <= _MAX_RANK:
            raise DataError(f"{path}: IDX rank must be between 1 and {_MAX_RANK}, found {rank}")
        dims = tuple(int(d) for d in np.frombuffer(_read_exact(f, 4 * rank, path, "sizes"), ">u4"))
        dtype = _CODE_TO_DTYPE[code]
        nbytes = math.prod(dims) * dtype.itemsize
        # zero dims do not excuse absurd others: numpy cannot even shape (2**32, 0)
        if math.prod(max(d, 1) for d in dims) * dtype.itemsize > max_bytes:
            raise DataError(
                f"{path}: IDX sizes {dims} need {nbytes} bytes, more than the limit {max_bytes}"
            )
        header = 4 + 4 * rank
        if isinstance(f, _gzip.GzipFile):
            # Bounded: read at most ``nbytes`` then probe one byte for trailing
            # data. Memory grows with the bytes actually decompressed, not with
            # the header's claim (a 60-byte file claiming 4 GB allocated 4 GB
            # up front before; found by tests/test_reliability_readers.py).
            parts, got = [], 0
            while got < nbytes:
                chunk = f.read(min(nbytes - got, 1 << 24))
                if not chunk:
                    break
                parts.append(chunk)
                got += len(chunk)
            buf = bytearray(b"".join(parts)) if len(parts) != 1 else bytearray(parts[0])
            del parts
            extra = len(f.read(1))
            if got != nbytes or extra:
                found = f"more than {nbytes}" if extra else str(got)
                raise DataError(
                    f"{path}: IDX sizes {dims} need {nbytes} payload bytes, "
                    f"found {found} after decompression"
                )
        else:
            payload = os.fstat(f.fileno()).st_size - header
            if payload != nbytes:
                raise DataError(
                    f"{path}: IDX sizes {dims} need {nbytes} payload bytes, found {payload}"
                )
            buf = bytearray(nbytes)
            if f.readinto(buf) != nbytes:
                raise DataError(f"{path}: file changed while reading")
    arr = np.frombuffer(buf, dtype=dtype).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | os.PathLike, array: np.ndarray, gzip: bool = False) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``gzip``).

    Parameters
    ----------
    path : str or PathLike
    array : numpy.ndarray
        Rank 1 to 8; dtype uint8, int8, int16, int32, float32 or float64.
    gzip : bool
        Compress (deterministically: the gzip timestamp is 0).

    Raises
    ------
    TypeError
        A dtype IDX cannot hold.
    ValueError
        Rank 0 or above 8.

    Example
    -------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "b.idx.gz"
    >>> write_idx(p, np.zeros((2, 2), np.float32), gzip=True)
    >>> read_idx(p).dtype
    dtype('float32')
    """
    array = np.asarray(array)
    code = _KIND_TO_CODE.get((array.dtype.kind, array.dtype.itemsize))
    if code is None or array.dtype.kind not in "uif":
        raise TypeError(
            f"write_idx: dtype must be uint8, int8, int16, int32, float32 or float64, "
            f"got {array.dtype}"
        )
    if not 1 <= array.ndim <= _MAX_RANK:
        raise ValueError(f"write_idx: rank must be between 1 and {_MAX_RANK}, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    if gzip:
        with open(path, "wb") as raw, _gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
            f.write(header)
            f.write(payload)
    else:
        with open(path, "wb") as f:
            f.write(header)
            f.write(payload)
