"""``clearconv.summary``: the table of a model's layers, shapes, sizes and costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from clearconv import nn


@dataclass(frozen=True)
class Row:
    """One layer of the table.

    ``receptive_field`` is the (height, width) of input pixels one output
    pixel sees, or None once the layer mixes every position (Linear, global pooling).
    ``depth`` counts the merges (Concat, Add) the layer is a branch of: the
    table indents it under its merge's row.
    """

    name: str
    layer: str
    output_shape: tuple[int, ...]
    params: int
    macs: int
    receptive_field: tuple[int, ...] | None
    depth: int = 0


@dataclass(frozen=True)
class Summary:
    """What :func:`summary` returns; ``str()`` gives the table."""

    input_shape: tuple[int, ...]
    rows: list[Row] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.rows[-1].output_shape if self.rows else self.input_shape

    def __str__(self) -> str:
        head = ("Layer", "Type", "Output shape", "Params", "Mult-adds", "Receptive field")
        body = [
            (
                "  " * r.depth + r.name,
                r.layer,
                _shape(r.output_shape),
                f"{r.params:,}",
                f"{r.macs:,}",
                "all" if r.receptive_field is None else "x".join(map(str, r.receptive_field)),
            )
            for r in self.rows
        ]
        widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
        right = (False, False, False, True, True, True)

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(
                c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)
            ).rstrip()

        rule = "-" * len(line(head))
        out = [f"Input: {_shape(self.input_shape)}", rule, line(head), rule]
        out += [line(b) for b in body]
        out += [
            rule,
            f"Total params: {self.total_params:,}",
            f"Total mult-adds per sample: {self.total_macs:,} ({self.total_macs / 1e6:.2f} M)",
            f"Parameter memory (float32): {self.total_params * 4 / 2**20:.2f} MiB",
        ]
        return "\n".join(out)


def _shape(s: tuple[int, ...]) -> str:
    return "(N, " + ", ".join(map(str, s[1:])) + ")" if s else "()"


def summary(model: nn.Module, input_shape: tuple[int, ...] | None = None) -> Summary:
    """Describe ``model`` layer by layer for one sample of ``input_shape``.

    Parameters
    ----------
    model : Module
        A layer, a Sequential, or a :class:`clearconv.Model` (its own input shape
        is used when ``input_shape`` is None).
    input_shape : tuple of int
        One sample's shape without the batch, e.g. ``(1, 28, 28)``.

    Returns
    -------
    Summary
        ``rows`` (name, layer, output shape, parameters, multiply-adds,
        receptive field), ``total_params``, ``total_macs``; ``str()`` is a table.

    Raises
    ------
    ValueError
        When the input shape does not fit the model (the message names the layer).

    Examples
    --------
    >>> import numpy as np
    >>> net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
    ...                     nn.Flatten(), nn.Linear(6 * 14 * 14, 10))
    >>> s = summary(net, (1, 28, 28))
    >>> s.total_params, s.rows[2].receptive_field, s.rows[0].macs
    (11926, (6, 6), 117600)
    """
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise ValueError("summary: input_shape is required (one sample, e.g. (1, 28, 28))")
    shape = (1, *(int(s) for s in input_shape))
    net = getattr(model, "net", model)
    rows: list[Row] = []
    nd = len(shape) - 2
    _walk(net, "", shape, (1,) * nd, (1,) * nd, rows)
    return Summary(input_shape=shape, rows=rows)


def _walk(
    m: nn.Module, name: str, shape, rf, jump, rows: list[Row], depth: int = 0
) -> tuple[Any, Any, Any]:
    """Append rows for ``m``, ``depth`` merges deep; returns (output shape, field, jump)."""
    if isinstance(m, nn.Sequential):
        for i, (_, child) in enumerate(m.children()):
            child_name = f"{name}.{i}" if name else str(i)
            shape, rf, jump = _walk(child, child_name, shape, rf, jump, rows, depth)
        return shape, rf, jump
    if isinstance(m, (nn.Concat, nn.Add)):
        return _merge(m, name, shape, rf, jump, rows, depth)
    if isinstance(m, nn.Residual):
        # Both paths start from the block's input: the block's layers, then the
        # shortcut's (a projection has parameters of its own), then the sum.
        _, rf_b, jump_b = _walk(m.block, f"{name}.block", shape, rf, jump, rows, depth)
        if m.shortcut is not None:
            _walk(m.shortcut, f"{name}.shortcut", shape, rf, jump, rows, depth)
        try:
            out = tuple(m.output_shape(shape))
        except ValueError as exc:
            raise ValueError(f"summary: layer {name} does not fit its input: {exc}") from exc
        label = residual_label(m, shape, out)
        rows.append(Row(name or "Residual", label, out, 0, 0, _rf(rf_b, out), depth))
        return out, rf_b, jump_b
    try:
        out = tuple(m.output_shape(shape))
    except ValueError as exc:
        raise ValueError(f"summary: layer {name} {m!r} does not fit its input: {exc}") from exc
    params = sum(p.size for p in m.parameters())
    macs = 0
    if isinstance(m, (nn.Conv2d, nn.Conv1d)):
        macs = int(np.prod(out[1:])) * m.in_channels // m.groups * int(np.prod(m.kernel_size))
    elif isinstance(m, nn.Linear):
        macs = int(np.prod(out[1:-1], dtype=np.int64)) * m.in_features * m.out_features
    k = getattr(m, "kernel_size", None)
    if rf is not None and k is not None and len(k) == len(rf):
        d = getattr(m, "dilation", (1,) * len(k))
        s = getattr(m, "stride", (1,) * len(k))
        rf = tuple(r + (dd * (kk - 1)) * j for r, kk, dd, j in zip(rf, k, d, jump))
        jump = tuple(j * ss for j, ss in zip(jump, s))
    elif isinstance(m, nn.AdaptiveAvgPool2d) or len(out) < 3:
        rf = None  # every input position now reaches every output
    rows.append(Row(name or type(m).__name__, repr(m), out, params, macs, _rf(rf, out), depth))
    return out, rf, jump


def _merge(m: nn.Module, name: str, shape, rf, jump, rows: list[Row], depth: int):
    """A Concat's or Add's row, then each branch's rows one level deeper.

    Every branch starts from the merge's input; the merged maps see as far as
    the farthest-seeing branch (Concat stacks them, Add sums them).
    """
    try:
        out = tuple(m.output_shape(shape))
    except ValueError as exc:
        raise ValueError(f"summary: layer {name} does not fit its input: {exc}") from exc
    head = len(rows)
    rows.append(Row(name or type(m).__name__, merge_label(m), out, 0, 0, None, depth))
    ends = [
        _walk(branch, f"{name}.{i}" if name else str(i), shape, rf, jump, rows, depth + 1)
        for i, (_, branch) in enumerate(m.children())
    ]
    rfs = [e[1] for e in ends]
    rf_out = None if any(r is None for r in rfs) else tuple(max(d) for d in zip(*rfs))
    jump_out = tuple(max(d) for d in zip(*(e[2] for e in ends)))
    rows[head] = Row(rows[head].name, rows[head].layer, out, 0, 0, _rf(rf_out, out), depth)
    return out, rf_out, jump_out


def merge_label(m: nn.Module) -> str:
    """What a merge does with its branches' outputs, in one line.

    >>> merge_label(nn.Concat(nn.Identity(), nn.ReLU()))
    'Concat: cat(2 branches, dim=1)'
    >>> merge_label(nn.Add(nn.Identity(), nn.Conv2d(4, 4, 3, padding=1)))
    'Add: x + branch 1'
    """
    k = len(m)  # type: ignore[arg-type]
    if isinstance(m, nn.Concat):
        return f"Concat: cat({k} branches, dim={m.dim})"
    if isinstance(m, nn.Add):
        terms = ["x" if isinstance(b, nn.Identity) else f"branch {i}" for i, b in enumerate(m)]
        return "Add: " + " + ".join(terms)
    raise TypeError(f"merge_label expected a Concat or Add, got {type(m).__name__}")


def residual_label(m: nn.Residual, shape: tuple[int, ...], out: tuple[int, ...]) -> str:
    """What the sum of a residual block adds, and what its shortcut does to the input.

    >>> res = nn.Residual(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.Conv2d(4, 8, 1, stride=2))
    >>> residual_label(res, (1, 4, 8, 8), (1, 8, 4, 4))
    'Residual add: shortcut(x) + block(x), downsampling shortcut'
    >>> residual_label(nn.Residual(nn.ReLU()), (1, 4, 8, 8), (1, 4, 8, 8))
    'Residual add: x + block(x)'
    """
    if m.shortcut is None:
        return "Residual add: x + block(x)"
    if tuple(out[2:]) != tuple(shape[2:]):
        how = "downsampling"
    elif out[1:2] != shape[1:2]:
        how = "projection"
    else:
        how = "transforming"
    return f"Residual add: shortcut(x) + block(x), {how} shortcut"


def _rf(rf, out):
    return None if rf is None or len(out) < 3 else rf
