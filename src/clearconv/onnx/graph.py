"""Reading an ONNX graph: attributes, initializers, node order, and the values that flow.

The importer walks the graph once in topological order and keeps one value
per tensor name: a constant (a NumPy array, or an object array holding the
symbolic batch ``"N"`` inside shape arithmetic), a :class:`Data` (an
activation: the layers that compute it from the graph input, or from a
:class:`Merge` of other activations), or ``None`` (downstream of a refused node).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from clearconv import nn

N = "N"  # the symbolic batch size inside computed shapes


@dataclass(frozen=True, eq=False)
class Merge:
    """Where activations meet: ``"concat"`` along ``dim``, or ``"add"``."""

    kind: str
    inputs: tuple[Data, ...]
    dim: int = 1


@dataclass(frozen=True)
class Data:
    """An activation: the layers that compute it from its ``origin`` (the graph
    input when None, else a :class:`Merge`), in order, and the shape after
    each (``shapes[0]`` the origin's; batch as in the graph, 1 when dynamic).

    Two activations that share a prefix of layers (the same objects) share
    those tensors: that is how a fork looks.
    """

    shapes: tuple[tuple[int, ...], ...]
    layers: tuple[nn.Module, ...]
    origin: Merge | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return self.shapes[-1]


def attrs(onnx: Any, node: Any) -> dict[str, Any]:
    """A node's attributes as Python values (strings decoded)."""
    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        out[a.name] = value
    return out


def label(node: Any) -> str:
    """``"Conv 'conv1'"``: how error messages name a node (its output when unnamed)."""
    return f"{node.op_type} {node.name or (node.output[0] if node.output else '?')!r}"


def topological(nodes: list[Any], known: set[str]) -> list[Any]:
    """Nodes in an order where every input is computed before it is used.

    Raises
    ------
    ValueError
        When some nodes wait on tensors nothing computes (a cycle, or a name
        no node or initializer defines).
    """
    ready, order, pending = set(known), [], list(nodes)
    while pending:
        rest = []
        for node in pending:
            if all(not t or t in ready for t in node.input):
                order.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted({t for n in rest for t in n.input if t and t not in ready})
            raise ValueError(f"the graph has a cycle or undefined tensors: {missing[:5]}")
        pending = rest
    return order


def consumers(graph: Any) -> dict[str, int]:
    """How many times each tensor is read (by a node, or as a graph output)."""
    counts: dict[str, int] = {}
    for node in graph.node:
        for t in node.input:
            counts[t] = counts.get(t, 0) + 1
    for out in graph.output:
        counts[out.name] = counts.get(out.name, 0) + 1
    return counts


def to_array(onnx: Any, tensor: Any) -> np.ndarray:
    """An initializer or Constant tensor as a NumPy array.

    Raises
    ------
    ValueError
        For external data (never opened: its path comes from the file) or a
        data type the installed ``onnx`` cannot read.
    """
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        raise ValueError(f"tensor {tensor.name!r} refers to external data, which is not read")
    try:
        return np.asarray(onnx.numpy_helper.to_array(tensor))
    except (KeyError, TypeError, ValueError) as exc:
        # an unknown data type code raised KeyError from onnx (found by fuzz.run)
        raise ValueError(
            f"tensor {tensor.name!r} (data type {tensor.data_type}) is unreadable: {exc!r}"
        ) from None


def f32(value: Any) -> float:
    """An ONNX float attribute (stored as float32) as the decimal it was written
    from: 1e-5 comes back as 1e-05, not 9.999999747378752e-06.

    >>> f32(np.float32(1e-5))
    1e-05
    """
    return float(str(np.float32(value)))


def sym(values: Any) -> np.ndarray:
    """An int64 array, or an object array when it holds the symbolic batch "N"
    (floats stay floats: weights pass through Unsqueeze and friends too).

    >>> sym([2, 3]).dtype, sym([N, 3]).dtype, sym(np.ones(2, np.float32)).dtype
    (dtype('int64'), dtype('O'), dtype('float32'))
    """
    arr = np.asarray(values, dtype=object)
    if any(isinstance(v, str) for v in arr.ravel()):
        return arr
    if isinstance(values, np.ndarray) and values.dtype.kind in "fc":
        return values
    return arr.astype(np.int64)
