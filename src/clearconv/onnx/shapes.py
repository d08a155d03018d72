"""Padding and output sizes on both sides of ONNX: pads, pool windows, reshapes.

Pure functions of shapes and settings (no graph, no ``onnx`` import), shared
by export (clearconv's padding as ONNX ``pads``) and import (ONNX's ``pads``,
``auto_pad`` and Reshape targets as clearconv's layers).
"""

from __future__ import annotations

import math
from typing import Any

from clearconv.engine.pool import pool_out_size


class Refuse(Exception):
    """A node (on import) that cannot be mapped exactly; its message says why."""


Pairs = list[tuple[int, int]]  # (begin, end) padding per spatial axis


# -- export: clearconv's padding as ONNX's ----------------------------------------
def spatial_pads(module: Any) -> Pairs:
    """(begin, end) padding per spatial axis of a conv or pool layer."""
    nd = len(module.kernel_size)
    if module.padding == "valid":
        return [(0, 0)] * nd
    if module.padding == "same":  # as PyTorch: total d*(k-1), the odd pixel at the end
        totals = [d * (k - 1) for k, d in zip(module.kernel_size, module.dilation)]
        return [(t // 2, t - t // 2) for t in totals]
    return [(int(p), int(p)) for p in module.padding]


def onnx_pads(pairs: Pairs) -> list[int]:
    """[(b1, e1), (b2, e2)] -> ONNX's [b1, b2, e1, e2].

    >>> onnx_pads([(1, 2), (3, 4)])
    [1, 3, 2, 4]
    """
    return [b for b, _ in pairs] + [e for _, e in pairs]


def pool_window(m: Any, shape: tuple[int, ...]) -> tuple[int, Pairs, list[int] | None]:
    """``ceil_mode``, pads and a crop for a pool, so that ONNX's sizes equal PyTorch's.

    PyTorch's ceil mode drops a last window that would start in the end padding;
    the ONNX spec (and its shape inference) does not. Where the two disagree on
    every axis, floor mode gives PyTorch's count exactly. Where they disagree
    on some axes only, the pool runs in ceil mode and a Slice keeps PyTorch's
    count (the third value; None when no Slice is needed). Padding the end
    instead would need pads as wide as a dilated kernel, which onnxruntime
    refuses. An average that counts padding has no equivalent there.

    Raises
    ------
    ValueError
        For an average pool with ``ceil_mode`` and ``count_include_pad`` whose
        last window ONNX would count differently.
    """
    pairs = spatial_pads(m)
    if not m.ceil_mode:
        return 0, pairs, None
    axes = []
    for size, k, s, (p, _), d in zip(shape[2:], m.kernel_size, m.stride, pairs, m.dilation):
        span = size + 2 * p - d * (k - 1) - 1
        want = pool_out_size(size, k, s, p, d, True)
        axes.append((span // s + 1, want, -(-span // s) + 1))  # floor, PyTorch, ONNX ceil
    if all(want == ceil for _, want, ceil in axes):
        return 1, pairs, None  # the rules agree here
    if all(want == floor for floor, want, _ in axes):
        return 0, pairs, None  # PyTorch drops the window ONNX's ceil would add
    if getattr(m, "count_include_pad", False):  # max pools have no such setting
        raise ValueError(
            f"cannot export {m!r} for input {shape[2:]}: with ceil_mode and "
            "count_include_pad its border windows have no ONNX equivalent "
            "(use count_include_pad=False or an input size where ceil_mode is exact)"
        )
    return 1, pairs, [want for _, want, _ in axes]


# -- import: ONNX's padding as clearconv's ----------------------------------------
def pads_from_attrs(
    a: dict[str, Any], spatial: tuple[int, ...], k: list[int], s: list[int], d: list[int]
) -> Pairs:
    """(begin, end) per spatial axis from ``pads`` or ``auto_pad`` (static sizes).

    >>> pads_from_attrs({"auto_pad": "SAME_UPPER"}, (5,), [4], [1], [1])
    [(1, 2)]
    """
    nd = len(k)
    auto = a.get("auto_pad", "NOTSET")
    if auto == "VALID":
        return [(0, 0)] * nd
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for size, k_, s_, d_ in zip(spatial, k, s, d):
            total = max((math.ceil(size / s_) - 1) * s_ + d_ * (k_ - 1) + 1 - size, 0)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto == "SAME_UPPER" else (big, small))
        return out
    pads = [int(p) for p in a.get("pads", [0] * (2 * nd))]
    if len(pads) != 2 * nd:
        raise Refuse(f"pads={pads} for {nd} spatial axes")
    return list(zip(pads[:nd], pads[nd:]))


def symmetric(pairs: Pairs, what: str) -> tuple[int, ...]:
    """One padding per axis, or Refuse when begin and end differ."""
    if any(b != e for b, e in pairs):
        raise Refuse(f"asymmetric pads {pairs} (begin, end); {what} pads both sides alike")
    return tuple(b for b, _ in pairs)


def conv_padding(pairs: Pairs, k: list[int], s: list[int], d: list[int]) -> list[int] | str:
    """Conv's ``padding`` argument for ONNX pads: per-axis ints, or "same".

    PyTorch's "same" (stride 1) puts the odd pixel at the end, which no single
    int per axis can say.

    >>> conv_padding([(1, 2)], [4], [1], [1])
    'same'
    """
    same = [(t // 2, t - t // 2) for t in (d_ * (k_ - 1) for k_, d_ in zip(k, d))]
    if all(b == e for b, e in pairs):
        return [b for b, _ in pairs]
    if pairs == same and all(v == 1 for v in s):
        return "same"
    raise Refuse(f"asymmetric pads {pairs} (begin, end) per axis")


# -- import: Reshape targets --------------------------------------------------------
def reshape_target(s: tuple[int, ...], t: list[Any], batch: int | str, n: str) -> tuple[int, ...]:
    """The shape a Reshape of ``s`` to target ``t`` gives, batch first.

    ``t`` holds ints, with the symbolic batch ``n`` where the graph computed
    it from the input's shape; ``batch`` is the graph input's fixed batch size
    (or ``n`` when dynamic). ``0`` copies the input's dim, ``-1`` takes the rest.

    >>> reshape_target((1, 4, 2, 2), ["N", -1], "N", "N")
    (1, 16)
    >>> reshape_target((1, 4, 2, 2), [0, 4, 4], "N", "N")
    (1, 4, 4)
    """
    per_sample = math.prod(s[1:])
    first = t[0] if t else None
    rest: list[int] = []
    for i, v in enumerate(t[1:], start=1):
        if isinstance(v, str):
            raise Refuse(f"shape {t} puts the batch size at position {i}")
        v = int(v)
        rest.append(s[i] if v == 0 and i < len(s) else v)
    if first == n or (isinstance(first, int) and first == 0):
        pass
    elif isinstance(first, int) and first == -1:
        if -1 in rest:
            raise Refuse(f"shape {t} leaves two dims open")
    elif isinstance(first, int) and batch != n and first == batch:
        pass  # a batch size baked in by a static export: the graph's own batch
    else:
        raise Refuse(f"shape {t} does not keep the batch dimension first")
    if rest.count(-1) > 1:
        raise Refuse(f"shape {t} leaves two dims open")
    if -1 in rest:
        known = math.prod(v for v in rest if v != -1)
        if known <= 0 or per_sample % known:
            raise Refuse(f"shape {t} does not fit an input of shape {s}")
        rest[rest.index(-1)] = per_sample // known
    if math.prod(rest) != per_sample:
        raise Refuse(f"shape {t} does not fit an input of shape {s}")
    return (s[0], *rest)


def flatten_span(s: tuple[int, ...], out: tuple[int, ...]) -> tuple[int, int]:
    """The dims ``start..end`` of ``s`` that a reshape to ``out`` merges into one.

    >>> flatten_span((1, 4, 2, 2), (1, 16))
    (1, 3)
    >>> flatten_span((1, 4, 2, 2), (1, 4, 4))
    (2, 3)
    >>> flatten_span((1, 8, 1, 1), (1, 8))
    (1, 3)
    """
    start = next(i for i in range(1, len(s)) if i >= len(out) or s[i] != out[i])
    start = min(start, len(out) - 1)  # dropping trailing 1s merges them into the last dim
    end = len(s) - (len(out) - start)
    ok = (
        start <= end
        and s[end + 1 :] == out[start + 1 :]
        and math.prod(s[start : end + 1]) == out[start]
    )
    if not ok:
        raise Refuse(f"reshape {s} -> {out} is not a flatten of consecutive dims")
    return start, end
