"""Argument checks shared by every constructor: one message style everywhere.

Each helper names the argument and quotes the value it received, so a person
reading the error knows what to change (the Keras habit; no ``assert``).
"""

from __future__ import annotations

import numbers
from typing import Any, Literal, overload

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_int(owner: str, name: str, value: Any, minimum: int | None = None) -> int:
    """Return ``value`` as int; ``TypeError``/``ValueError`` naming ``owner.name``."""
    if not _is_int(value):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_bool(owner: str, name: str, value: Any) -> bool:
    """Return ``value`` as bool; ``TypeError`` naming ``owner.name`` for anything else."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def check_float(
    owner: str,
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    open_min: bool = False,
    open_max: bool = False,
) -> float:
    """Return ``value`` as a finite float within the given bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{owner}: {name} must be a number, got {value!r}")
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{owner}: {name} must be finite, got {value!r}")
    if minimum is not None and (v < minimum or (open_min and v == minimum)):
        op = ">" if open_min else ">="
        raise ValueError(f"{owner}: {name} must be {op} {minimum}, got {value!r}")
    if maximum is not None and (v > maximum or (open_max and v == maximum)):
        op = "<" if open_max else "<="
        raise ValueError(f"{owner}: {name} must be {op} {maximum}, got {value!r}")
    return v


@overload
def check_tuple(
    owner: str, name: str, value: Any, n: Literal[2], minimum: int
) -> tuple[int, int]: ...
@overload
def check_tuple(owner: str, name: str, value: Any, n: int, minimum: int) -> tuple[int, ...]: ...
def check_tuple(owner: str, name: str, value: Any, n: int, minimum: int) -> tuple[int, ...]:
    """Expand an int or an ``n``-sequence of ints to an ``n``-tuple, each >= ``minimum``."""
    if _is_int(value):
        items: tuple[Any, ...] = (value,) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(_is_int(v) for v in value):
        items = tuple(value)
    else:
        kind = "an int" if n == 1 else f"an int or a sequence of {n} ints"
        raise TypeError(f"{owner}: {name} must be {kind}, got {value!r}")
    if any(v < minimum for v in items):
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value!r}")
    return tuple(int(v) for v in items)


def check_dtype(owner: str, dtype: Any) -> np.dtype:
    """Accept float32 or float64 (the two dtypes the engine computes in)."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {dt}")
    return dt


def check_rng(owner: str, rng: Any) -> np.random.Generator:
    """``None`` gives a fresh unseeded Generator; otherwise a Generator is required."""
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{owner}: rng must be a numpy.random.Generator "
            f"(np.random.default_rng(seed)), got {type(rng).__name__}"
        )
    return rng


def check_input(
    owner: object, x: Any, expected: str, ndim: int, channels: int | None = None
) -> None:
    """Check rank, channel count and dtype of a forward input.

    ``expected`` is the shape as a person would write it, e.g. ``"(N, 3, H, W)"``.
    ``owner`` (a layer, or its name) is formatted only into an error message:
    a layer's repr costs more than the check itself at batch 1.
    """
    shape = getattr(x, "shape", None)
    if shape is None or not hasattr(x, "dtype"):
        raise TypeError(f"{owner} expected an array of shape {expected}, got {type(x).__name__}")
    if len(shape) != ndim or (channels is not None and shape[1] != channels):
        raise ValueError(f"{owner} expected input of shape {expected}, got {tuple(shape)}")
    check_float_array(owner, x)


def check_float_array(owner: object, x: Any, name: str | None = None) -> None:
    """Require a float32 or float64 array, of any shape.

    ``name`` names the argument in the message, for callers that take
    several (a loss's ``pred`` and ``target``); ``owner`` is formatted only
    into an error message, as in :func:`check_input`.

    Raises
    ------
    TypeError
        "ReLU() expected a float32 or float64 array, got dtype int64", or with
        ``name``: "MSELoss() expected target of dtype float32 or float64, got int64".
    """
    dtype = getattr(x, "dtype", None)
    if dtype in FLOAT_DTYPES and hasattr(x, "shape"):
        return
    if dtype is None or not hasattr(x, "shape"):
        what = "a float32 or float64 array" if name is None else f"{name} as an array"
        raise TypeError(f"{owner} expected {what}, got {type(x).__name__}")
    what = (
        "a float32 or float64 array, got dtype"
        if name is None
        else (f"{name} of dtype float32 or float64, got")
    )
    raise TypeError(f"{owner} expected {what} {dtype} (convert with x.astype(np.float32))")
