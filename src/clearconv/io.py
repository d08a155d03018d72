"""Model files: one ``.npz`` per model, weights plus a JSON header, no pickle.

Layout of the file (a plain zip of ``.npy`` arrays, readable by ``np.load``)::

    __header__      0-d unicode array holding a JSON object:
                    {"format": "clearconv.model", "version": 1,
                     "config": nn.to_config(net), "input_shape": [1, 28, 28],
                     "class_names": [...], "normalization": {"mean": [...] | null,
                     "std": [...] | null}, "dtype": "float32", "meta": {...}}
    0.weight, ...   one array per ``state_dict`` entry, by PyTorch name

Files are written atomically (a temporary file in the destination folder,
flushed and fsynced, then ``os.replace``), so a crash never leaves a
half-written model. Reading opens the file with ``allow_pickle=False`` and
checks every key, shape and dtype before anything is built; every problem is a
:class:`ModelFileError` naming the file and what is wrong.

:func:`save_arrays` / :func:`load_arrays` are the same machinery for any
header + arrays file (training checkpoints use them).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from clearconv.model import Model
from clearconv.nn.config import from_config, to_config
from clearconv.zoo import shape_only_rng

__all__ = ["FORMAT", "VERSION", "ModelFileError", "load", "load_arrays", "save", "save_arrays"]

FORMAT = "clearconv.model"
#: Formats read as well as written: files saved before the rename say ``convnet``.
READ_FORMATS = (FORMAT, "convnet.model")
VERSION = 1
HEADER_KEY = "__header__"
_DTYPES = ("float32", "float64")
#: A model file may hold at most this many times its size once decompressed
#: (``np.savez`` stores arrays uncompressed; ``savez_compressed`` weights ~1.1x).
MAX_UNCOMPRESSED_RATIO = 100


class ModelFileError(ValueError):
    """A model or checkpoint file that cannot be read: damaged, wrong format,
    unknown version, missing or unexpected keys, wrong shapes or dtypes."""


# -- generic header + arrays files --------------------------------------------
def save_arrays(path: str | os.PathLike, header: dict[str, Any], arrays: dict[str, Any]) -> Path:
    """Write ``arrays`` and a JSON ``header`` to ``path`` atomically (``.npz``).

    Raises
    ------
    TypeError
        If the header is not JSON-able or a key collides with ``__header__``.
    OSError
        If the destination folder does not exist or is not writable.
    """
    path = Path(path)
    if HEADER_KEY in arrays:
        raise TypeError(f"save_arrays: {HEADER_KEY!r} is reserved for the header")
    try:
        text = json.dumps(header, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot write {path}: the header is not JSON-able ({exc})") from exc
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise OSError(
            f"cannot write {path}: the folder {folder} is missing or not writable "
            f"({exc.strerror or exc})"
        ) from exc
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                payload = {HEADER_KEY: np.array(text)}
                payload.update({k: np.asarray(v) for k, v in arrays.items()})
                _write_npz(f, payload)
                f.flush()
                # mkstemp makes the file 0600; give it the mode open() would
                # (0666 less the umask), as every other file the tool writes has.
                if hasattr(os, "fchmod"):  # POSIX
                    os.fchmod(f.fileno(), 0o666 & ~current_umask())
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as exc:  # disk full, quota, I/O error: say which file and that
            # the previous version is untouched (the raw errno named neither)
            raise OSError(
                exc.errno,
                f"cannot write {path}: {exc.strerror or exc} (any previous {path.name} is kept)",
            ) from exc
    except BaseException:
        # Never leave the temporary file behind (disk full, Ctrl-C, ...).
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:  # Linux: reading it here leaves it alone (os.umask can only read by setting)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # set and restore at once: the only portable way to read it
    os.umask(mask)
    return mask


def _write_npz(f: Any, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to the open binary file ``f`` as ``np.savez`` does: a
    stored (uncompressed) zip with one ``NAME.npy`` member per array.

    Done with NumPy's own ``.npy`` writer rather than ``np.savez(f, **arrays)``
    because savez's keyword arguments would take an array named
    ``allow_pickle`` as its flag. Object arrays are refused (no pickles).
    """
    with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _check_members(path: Path) -> None:
    """Check every member's ``.npy`` header against the bytes it holds, before
    ``np.load`` allocates anything: no pickles, no object dtypes, no shape that
    needs more bytes than the member has, no zip bomb, no other compression."""
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
            total = sum(i.file_size for i in infos)
            if total > max(MAX_UNCOMPRESSED_RATIO * path.stat().st_size, 1 << 26):
                raise ModelFileError(
                    f"{path}: refusing a possible zip bomb ({total} bytes once decompressed)"
                )
            for info in infos:
                what = f"{path}: member {info.filename!r}"
                if not info.filename.endswith(".npy"):
                    raise ModelFileError(f"{what} is not a .npy array")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise ModelFileError(f"{what} uses unsupported compression")
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
                    else:
                        raise ModelFileError(f"{what} has unsupported .npy version {version}")
                if dtype.hasobject:
                    raise ModelFileError(
                        f"{what} holds object (pickled) arrays, which are refused for safety"
                    )
                need = math.prod(shape) * dtype.itemsize
                if need > info.file_size:
                    raise ModelFileError(
                        f"{what} claims shape {shape} ({need} bytes) but holds {info.file_size}"
                    )
    except ModelFileError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise ModelFileError(f"{path}: damaged or not a .npz file ({exc})") from exc
    except Exception as exc:  # numpy's header parser can raise tokenize/syntax errors
        raise ModelFileError(f"{path}: damaged .npy header ({type(exc).__name__}: {exc})") from exc


def load_arrays(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`save_arrays`: ``(header, arrays)``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ModelFileError
        If the file is not a readable ``.npz`` with a JSON header, or holds
        object (pickled) arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: damaged or not a .npz file (not a zip archive)")
    _check_members(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            names = list(data.files)
            if HEADER_KEY not in names:
                raise ModelFileError(f"{path}: not a clearconv file (no {HEADER_KEY} entry)")
            arrays = {k: data[k] for k in names}
    except ModelFileError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise ModelFileError(
                f"{path}: holds object (pickled) arrays, which are refused for safety"
            ) from exc
        raise ModelFileError(f"{path}: not a readable .npz file ({exc})") from exc
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, NotImplementedError) as exc:
        raise ModelFileError(f"{path}: damaged or not a .npz file ({exc})") from exc
    except MemoryError as exc:
        raise ModelFileError(f"{path}: arrays too large to load") from exc
    raw = arrays.pop(HEADER_KEY)
    if raw.dtype.kind != "U" or raw.ndim != 0:
        raise ModelFileError(f"{path}: {HEADER_KEY} must be a JSON string, got {raw.dtype}")
    try:
        header = json.loads(str(raw))
    except (ValueError, SystemError) as exc:
        # SystemError: code points above U+10FFFF in the unicode array (found by fuzz.run)
        raise ModelFileError(f"{path}: the header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: the header must be a JSON object")
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ModelFileError(f"{path}: array {k!r} has unsupported dtype {a.dtype}")
    return header, arrays


# -- models -------------------------------------------------------------------
def model_header(model: Model) -> dict[str, Any]:
    """The JSON header :func:`save` writes for ``model``."""
    params = model.parameters()
    dtype = str(params[0].dtype) if params else "float32"
    return {
        "format": FORMAT,
        "version": VERSION,
        "config": to_config(model.net),
        "input_shape": list(model.input_shape),
        "class_names": list(model.class_names),
        "normalization": {
            "mean": None if model.mean is None else [float(v) for v in model.mean],
            "std": None if model.std is None else [float(v) for v in model.std],
        },
        "dtype": dtype,
        "meta": model.meta,
    }


def save(model: Model, path: str | os.PathLike) -> Path:
    """Write ``model`` to one ``.npz`` file at ``path``, atomically.

    Parameters
    ----------
    model : Model
    path : str or os.PathLike
        Written exactly as given (no suffix is added).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    TypeError
        If ``model`` is not a :class:`Model`, holds a layer with no config, or
        its ``meta`` is not JSON-able.
    OSError
        If the folder is missing or not writable.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from clearconv import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=np.random.default_rng(0)))
    >>> m = Model(net, (1, 2, 2), ["a", "b"])
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = save(m, os.path.join(d, "m.npz"))
    ...     m2 = load(p)
    >>> m2.class_names, np.array_equal(m2[1].weight.data, m[1].weight.data)
    (['a', 'b'], True)
    """
    if not isinstance(model, Model):
        raise TypeError(
            f"save expected a clearconv.Model (Model(net, input_shape, class_names)), "
            f"got {type(model).__name__}"
        )
    state = {k: np.asarray(v) for k, v in model.state_dict().items()}
    return save_arrays(path, model_header(model), state)


def _expect(path: Path, cond: bool, what: str) -> None:
    if not cond:
        raise ModelFileError(f"{path}: {what}")


def _check_header(path: Path, h: dict[str, Any]) -> None:
    _expect(
        path,
        h.get("format") in READ_FORMATS,
        f"not a clearconv model file (format {h.get('format')!r})",
    )
    version = h.get("version")
    _expect(
        path,
        isinstance(version, int) and version == VERSION,
        f"unknown version {version!r} (this clearconv reads version {VERSION})",
    )
    keys = ("config", "input_shape", "class_names", "normalization", "meta")
    missing = [k for k in keys if k not in h]
    _expect(path, not missing, f"the header is missing {', '.join(missing)}")
    _expect(path, isinstance(h["config"], dict), "header 'config' must be an object")
    shape = h["input_shape"]
    _expect(
        path,
        isinstance(shape, list)
        and len(shape) in (1, 2, 3)
        and all(isinstance(s, int) and s > 0 for s in shape),
        f"header 'input_shape' must be a list of 1 to 3 positive ints, got {shape!r}",
    )
    names = h["class_names"]
    _expect(
        path,
        isinstance(names, list) and bool(names) and all(isinstance(c, str) for c in names),
        f"header 'class_names' must be a non-empty list of strings, got {names!r}",
    )
    norm = h["normalization"]
    _expect(
        path,
        isinstance(norm, dict) and set(norm) == {"mean", "std"},
        f"header 'normalization' must be {{'mean': ..., 'std': ...}}, got {norm!r}",
    )
    for k in ("mean", "std"):
        v = norm[k]
        _expect(
            path,
            v is None
            or (
                isinstance(v, list)
                and len(v) == shape[0]
                and all(isinstance(x, (int, float)) for x in v)
            ),
            f"normalization {k!r} must be null or {shape[0]} numbers, got {v!r}",
        )
    _expect(path, isinstance(h["meta"], dict), "header 'meta' must be an object")
    _expect(
        path,
        h.get("dtype", "float32") in _DTYPES,
        f"header 'dtype' must be one of {_DTYPES}, got {h.get('dtype')!r}",
    )


def load(path: str | os.PathLike) -> Model:
    """Rebuild the :class:`Model` saved at ``path``.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    ModelFileError
        For a damaged or truncated file, another format, an unknown version,
        a bad header, a missing or unexpected weight, or a wrong shape/dtype.
    """
    path = Path(path)
    header, arrays = load_arrays(path)
    _check_header(path, header)
    dtype = np.dtype(header.get("dtype", "float32"))
    try:
        net = from_config(
            header["config"], tuple(header["input_shape"]), rng=shape_only_rng(), dtype=dtype
        )
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the architecture in the header is invalid: {exc}") from exc
    expected = net.state_dict()
    missing = [k for k in expected if k not in arrays]
    _expect(path, not missing, f"missing weights: {', '.join(missing)}")
    unexpected = [k for k in arrays if k not in expected]
    _expect(path, not unexpected, f"unexpected arrays: {', '.join(unexpected)}")
    for k, want in expected.items():
        got = arrays[k]
        _expect(
            path,
            got.shape == tuple(np.shape(want)),
            f"{k} has shape {got.shape}, expected {tuple(np.shape(want))}",
        )
        want_dtype = np.asarray(want).dtype
        _expect(path, got.dtype == want_dtype, f"{k} has dtype {got.dtype}, expected {want_dtype}")
        _expect(
            path,
            got.dtype.kind != "f" or bool(np.all(np.isfinite(got))),
            f"{k} holds NaN or infinite values",
        )
    net.load_state_dict(arrays)
    norm = header["normalization"]
    try:
        return Model(
            net,
            tuple(header["input_shape"]),
            header["class_names"],
            mean=norm["mean"],
            std=norm["std"],
            meta=header["meta"],
        )
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: {exc}") from exc
