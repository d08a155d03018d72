"""ONNX -> clearconv: a graph of supported operators back into layers and weights.

The graph must be what a CNN is: a chain from one input to one output, with
skip connections (``Add(x, block(x))``, the ResNet basic block, and
``Add(shortcut(x), block(x))`` with a projection shortcut, become
:class:`nn.Residual`). Each node maps to one layer,
built with :func:`nn.from_config` and filled with :meth:`load_state_dict`:

- Conv (+ bias; explicit, 'VALID' or 'SAME_*' pads) -> Conv1d / Conv2d;
- MaxPool, AveragePool -> MaxPool1d/2d, AvgPool1d/2d; GlobalAveragePool ->
  AdaptiveAvgPool2d(1) (AvgPool1d over the length for 1-D input);
- Relu, LeakyRelu, Sigmoid, Tanh, Softmax -> the activation of the same name;
- BatchNormalization (inference) -> BatchNorm1d / BatchNorm2d;
- Flatten(axis=1), and Reshape to ``(N, -1)``-style shapes (constant, or
  computed from ``Shape``/``Gather``/``Unsqueeze``/``Concat`` as
  ``torch.onnx.export`` writes ``x.view(x.size(0), -1)``) -> Flatten;
- Gemm (transB 0 or 1, alpha = beta = 1), MatMul with constant weights
  (+ an Add of a constant, folded into the bias) -> Linear;
- Dropout -> Dropout(p) (the identity at inference, kept for fine-tuning);
  Identity is dropped; Constant nodes and initializers feed shapes and weights.

Pooling with ``ceil_mode=1`` follows PyTorch's rule (a last window that would
start in the end padding is dropped), as onnxruntime does and as
``torch.onnx.export`` means it; the ONNX spec's formula can count one more.

Anything else (another operator, a grouped convolution, asymmetric padding,
branches that do not meet in an Add, ...) is refused, never approximated: the error lists
every unsupported node with its type, name and offending attribute.
"""

from __future__ import annotations

import inspect
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import numpy as np

from clearconv import nn
from clearconv.onnx import _segment
from clearconv.onnx._common import (
    META_CLASS_NAMES,
    META_INPUT_SHAPE,
    META_MODEL,
    META_NORMALIZATION,
    require_onnx,
)

_N = "N"  # the symbolic batch size inside computed shapes
# Whether nn.Residual takes a projection shortcut (shortcut(x) + block(x)).
_HAS_SHORTCUT = "shortcut" in inspect.signature(nn.Residual.__init__).parameters


class UnsupportedModelError(ValueError):
    """An ONNX graph that clearconv cannot represent exactly.

    Attributes
    ----------
    problems : list of str
        One entry per unsupported node: ``"Conv 'conv1' (group=2: ...)"``.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        super().__init__(
            f"{source}: cannot import {n} unsupported node{'s' if n != 1 else ''}: "
            + "; ".join(self.problems)
            + f" (supported operators: {', '.join(sorted(_ATTRS))})"
        )


@dataclass
class Imported:
    """What an ONNX file holds, in clearconv's terms (the parts of a Model)."""

    net: nn.Sequential
    input_shape: tuple[int, ...]
    class_names: list[str]
    mean: list[float] | None = None
    std: list[float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Data:
    """An activation: the layers that compute it from the graph input, in order,
    and the shape after each (``shapes[0]`` the input's; batch as in the graph,
    1 when dynamic)."""

    shapes: tuple[tuple[int, ...], ...]
    layers: tuple[nn.Module, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.shapes[-1]


class _Refuse(Exception):
    """A node that cannot be mapped; its message says why."""


# -- the supported operators and the attribute values each accepts ----------
_Check = Callable[[Any], bool] | None
_AUTO_PAD = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


def _is(*values: Any) -> Callable[[Any], bool]:
    return lambda v: v in values


def _ones(v: Any) -> bool:
    return all(int(x) == 1 for x in v)


_ATTRS: dict[str, dict[str, _Check]] = {
    "Conv": {
        "kernel_shape": None,
        "strides": None,
        "pads": None,
        "dilations": None,
        "group": _is(1),
        "auto_pad": _is(*_AUTO_PAD),
    },
    "MaxPool": {
        "kernel_shape": None,
        "strides": None,
        "pads": None,
        "dilations": None,
        "ceil_mode": _is(0, 1),
        "auto_pad": _is(*_AUTO_PAD),
        "storage_order": _is(0),
    },
    "AveragePool": {
        "kernel_shape": None,
        "strides": None,
        "pads": None,
        "ceil_mode": _is(0, 1),
        "count_include_pad": _is(0, 1),
        "auto_pad": _is(*_AUTO_PAD),
        "dilations": _ones,
    },
    "GlobalAveragePool": {},
    "Relu": {},
    "LeakyRelu": {"alpha": None},
    "Sigmoid": {},
    "Tanh": {},
    "Softmax": {"axis": None},
    "Flatten": {"axis": None},
    "Reshape": {"allowzero": _is(0)},
    "Gemm": {"alpha": _is(1.0), "beta": _is(1.0), "transA": _is(0), "transB": _is(0, 1)},
    "MatMul": {},
    "Add": {},
    "BatchNormalization": {
        "epsilon": None,
        "momentum": None,
        "training_mode": _is(0),
        "spatial": _is(1),
        "is_test": _is(1),
    },
    "Dropout": {"ratio": None, "seed": None, "is_test": None},
    "Identity": {},
    "Constant": {
        "value": None,
        "value_float": None,
        "value_floats": None,
        "value_int": None,
        "value_ints": None,
    },
    "Shape": {"start": None, "end": None},
    "Gather": {"axis": None},
    "Unsqueeze": {"axes": None},
    "Squeeze": {"axes": None},
    "Concat": {"axis": None},
    "Cast": {"to": None, "saturate": None},
    "Slice": {"starts": None, "ends": None, "axes": None},
}


_ATTRS.update(_segment.ATTRS)  # ConvTranspose, Resize


def _attrs(onnx: Any, node: Any) -> dict[str, Any]:
    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, list):
            value = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value]
        out[a.name] = value
    return out


def _label(node: Any) -> str:
    return f"{node.op_type} {node.name or (node.output[0] if node.output else '?')!r}"


def _static_problems(onnx: Any, nodes: list[Any]) -> list[str]:
    """Every node whose operator or attribute is outside the supported set."""
    problems = []
    for node in nodes:
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{_label(node)} (operator domain {node.domain!r})")
            continue
        allowed = _ATTRS.get(node.op_type)
        if allowed is None:
            problems.append(f"{_label(node)} (operator {node.op_type} is not supported)")
            continue
        for key, value in _attrs(onnx, node).items():
            if key not in allowed:
                problems.append(f"{_label(node)} (attribute {key}={value!r} is not supported)")
                continue
            check = allowed[key]
            if check is not None and not check(value):
                problems.append(f"{_label(node)} ({key}={value!r} is not supported)")
    return problems


def _topological(nodes: list[Any], known: set[str]) -> list[Any]:
    """Nodes in an order where every input is computed before it is used."""
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


# -- padding -----------------------------------------------------------------
def _pads(
    a: dict[str, Any], spatial: tuple[int, ...], k: list[int], s: list[int], d: list[int]
) -> list[tuple[int, int]]:
    """(begin, end) per spatial axis from ``pads`` or ``auto_pad`` (static sizes)."""
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
        raise _Refuse(f"pads={pads} for {nd} spatial axes")
    return list(zip(pads[:nd], pads[nd:]))


def _symmetric(pairs: list[tuple[int, int]], what: str) -> tuple[int, ...]:
    if any(b != e for b, e in pairs):
        raise _Refuse(f"asymmetric pads {pairs} (begin, end); {what} pads both sides alike")
    return tuple(b for b, _ in pairs)


# -- the importer ------------------------------------------------------------
class _Importer:
    def __init__(self, onnx: Any, proto: Any, source: str) -> None:
        self.onnx, self.proto, self.source = onnx, proto, source
        self.graph = proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.rng = np.random.default_rng(0)  # initial weights, all overwritten
        self.values: dict[str, Any] = {}
        self.problems: list[str] = []
        self.consumers: dict[str, int] = {}
        for node in self.graph.node:
            for t in node.input:
                self.consumers[t] = self.consumers.get(t, 0) + 1
        for out in self.graph.output:
            self.consumers[out.name] = self.consumers.get(out.name, 0) + 1
        self.batch: int | str = _N

    # -- values -----------------------------------------------------------
    # required=True gives an array or raises _Refuse; only optional inputs may be None.
    @overload
    def _const(
        self, node: Any, i: int, what: str, required: Literal[True] = True
    ) -> np.ndarray: ...
    @overload
    def _const(self, node: Any, i: int, what: str, required: bool) -> np.ndarray | None: ...
    def _const(self, node: Any, i: int, what: str, required: bool = True) -> np.ndarray | None:
        if i >= len(node.input) or not node.input[i]:
            if required:
                raise _Refuse(f"missing input {what}")
            return None
        v = self.values.get(node.input[i])
        if isinstance(v, _Data):
            raise _Refuse(f"{what} must be a constant (an initializer), not computed")
        return v

    def _data(self, node: Any, i: int = 0) -> _Data:
        v = self.values.get(node.input[i]) if i < len(node.input) else None
        if not isinstance(v, _Data):
            raise _Refuse(f"input {i} must be an activation, not a constant")
        return v

    def _layer(self, cfg: dict[str, Any], state: dict[str, Any] | None = None) -> nn.Module:
        try:
            module = nn.from_config(cfg, rng=self.rng)
            if state:
                module.load_state_dict(
                    {
                        k: np.asarray(v, dtype=np.float32 if k != "num_batches_tracked" else None)
                        for k, v in state.items()
                    }
                )
        except (ValueError, TypeError, KeyError) as exc:
            raise _Refuse(str(exc)) from None
        return module

    def _append(self, x: _Data, layer: nn.Module) -> _Data:
        try:
            shape = tuple(layer.output_shape(x.shape))
        except ValueError as exc:
            raise _Refuse(str(exc)) from None
        return _Data((*x.shapes, shape), (*x.layers, layer))

    # -- the walk -----------------------------------------------------------
    def run(self) -> Imported:
        onnx, g = self.onnx, self.graph
        for init in g.initializer:
            self.values[init.name] = self._to_array(init)
        inputs = [i for i in g.input if i.name not in self.values]
        problems = _static_problems(onnx, list(g.node))
        input_shape = self._input(inputs, problems)
        if len(g.output) != 1:
            problems.append(f"the graph has {len(g.output)} outputs; a classifier has one")
        if problems:
            raise UnsupportedModelError(self.source, problems)
        try:
            order = _topological(list(g.node), set(self.values))
        except ValueError as exc:
            raise ValueError(f"{self.source}: {exc}") from None
        for node in order:
            if any(t and self.values.get(t, 0) is None for t in node.input):
                for t in node.output:  # downstream of a refused node: already reported
                    self.values[t] = None
                continue
            try:
                outs = self._convert(node)
            except _Refuse as exc:
                self.problems.append(f"{_label(node)} ({exc})")
                outs = [None] * len(node.output)
            for t, v in zip(node.output, outs):
                self.values[t] = v
        if self.problems:
            raise UnsupportedModelError(self.source, self.problems)
        out = self.values.get(g.output[0].name)
        if not isinstance(out, _Data):
            problem = f"the output {g.output[0].name!r} does not depend on the input"
            raise UnsupportedModelError(self.source, [problem])
        net = nn.Sequential(*out.layers)
        return self._finish(net, input_shape, out.shape)

    def _to_array(self, tensor: Any) -> np.ndarray:
        if tensor.data_location == self.onnx.TensorProto.EXTERNAL:
            raise ValueError(f"tensor {tensor.name!r} refers to external data, which is not read")
        try:
            return np.asarray(self.onnx.numpy_helper.to_array(tensor))
        except (KeyError, TypeError, ValueError) as exc:
            # an unknown data type code raised KeyError from onnx (found by fuzz.run)
            raise ValueError(
                f"tensor {tensor.name!r} (data type {tensor.data_type}) is unreadable: {exc!r}"
            ) from None

    def _input(self, inputs: list[Any], problems: list[str]) -> tuple[int, ...] | None:
        """The graph input's shape per sample (from metadata when the graph leaves it open)."""
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            problems.append(f"the graph has {len(inputs)} inputs {names}; a CNN has one")
            return None
        inp = inputs[0]
        ttype = inp.type.tensor_type
        if ttype.elem_type != self.onnx.TensorProto.FLOAT:
            problems.append(f"input {inp.name!r} has element type {ttype.elem_type}; need float32")
            return None
        dims = [d.dim_value if d.HasField("dim_value") else None for d in ttype.shape.dim]
        meta = self._meta(META_INPUT_SHAPE)
        if len(dims) not in (2, 3, 4):
            problems.append(
                f"input {inp.name!r} has {len(dims)} dims; need (N, C, H, W), (N, C, L) or (N, F)"
            )
            return None
        sample = [d for d in dims[1:] if d is not None and d > 0]
        if len(sample) != len(dims) - 1:  # some size is open (None or <= 0)
            if isinstance(meta, list) and len(meta) == len(dims) - 1:
                sample = [int(v) for v in meta]
            else:
                problems.append(
                    f"input {inp.name!r} has open sizes {dims[1:]}; "
                    "clearconv needs a fixed (C, H, W)"
                )
                return None
        self.batch = dims[0] if dims[0] else _N
        b = dims[0] or 1
        self.values[inp.name] = _Data(((b, *sample),), ())
        return tuple(int(s) for s in sample)

    def _meta(self, key: str) -> Any:
        # Files exported before the rename carry the same keys under "convnet.".
        keys = (key, key.replace("clearconv.", "convnet.", 1))
        for p in self.proto.metadata_props:
            if p.key in keys:
                try:
                    return json.loads(p.value)
                except ValueError:
                    return None
        return None

    def _finish(self, net: nn.Sequential, input_shape, out_shape) -> Imported:
        # classes along axis 1: one per image (N, K), or per pixel (N, K, H, W)
        k = out_shape[1] if len(out_shape) == 2 or len(out_shape) == 4 else 0
        names = self._meta(META_CLASS_NAMES)
        if not (isinstance(names, list) and len(names) == k):
            names = [str(i) for i in range(k)]
        norm = self._meta(META_NORMALIZATION) or {}
        mean, std = (norm.get("mean"), norm.get("std")) if isinstance(norm, dict) else (None, None)
        meta = self._meta(META_MODEL)
        meta = dict(meta) if isinstance(meta, dict) else {}
        producer = f"{self.proto.producer_name} {self.proto.producer_version}".strip()
        meta.setdefault("imported_from", f"onnx ({producer or 'unknown producer'})")
        return Imported(net, input_shape, [str(n) for n in names], mean, std, meta)

    # -- one node ---------------------------------------------------------------
    def _convert(self, node: Any) -> list[Any]:
        a = _attrs(self.onnx, node)
        op = node.op_type
        used = [self.consumers.get(t, 0) > 0 for t in node.output]
        if op in ("MaxPool", "BatchNormalization", "Dropout") and any(used[1:]):
            raise _Refuse("only the first output may be used (training outputs or indices)")
        method = getattr(self, f"_op_{op}")
        return method(node, a)

    def _op_Conv(self, node: Any, a: dict[str, Any]) -> list[Any]:
        x = self._data(node)
        w = self._const(node, 1, "the weight W")
        b = self._const(node, 2, "the bias B", required=False)
        nd = w.ndim - 2
        if nd not in (1, 2) or len(x.shape) != nd + 2:
            raise _Refuse(f"a {nd}-D convolution of input {x.shape}; only 1-D and 2-D")
        if w.shape[1] != x.shape[1]:
            raise _Refuse(f"weight {w.shape} does not match {x.shape[1]} input channels")
        k = list(w.shape[2:])
        if list(a.get("kernel_shape", k)) != k:
            raise _Refuse(f"kernel_shape={a['kernel_shape']} but the weight is {w.shape}")
        s = [int(v) for v in a.get("strides", [1] * nd)]
        d = [int(v) for v in a.get("dilations", [1] * nd)]
        pairs = _pads(a, x.shape[2:], k, s, d)
        same = [(t // 2, t - t // 2) for t in (d_ * (k_ - 1) for k_, d_ in zip(k, d))]
        if all(b_ == e for b_, e in pairs):
            padding: Any = [b_ for b_, _ in pairs]
        elif pairs == same and all(v == 1 for v in s):
            padding = "same"
        else:
            raise _Refuse(f"asymmetric pads {pairs} (begin, end) per axis")
        cfg = {
            "type": f"Conv{nd}d",
            "in_channels": int(w.shape[1]),
            "out_channels": int(w.shape[0]),
            "kernel_size": k,
            "stride": s,
            "padding": padding,
            "dilation": d,
            "bias": b is not None,
        }
        state = {"weight": w} if b is None else {"weight": w, "bias": b}
        return [self._append(x, self._layer(cfg, state))]

    # -- segmentation layers: the configs come from clearconv.onnx._segment ---
    def _op_ConvTranspose(self, node: Any, a: dict[str, Any]) -> list[Any]:
        x = self._data(node)
        w = self._const(node, 1, "the weight W")
        b = self._const(node, 2, "the bias B", required=False)
        try:
            cfg = _segment.conv_transpose_config(w, b, a, x.shape)
        except ValueError as exc:
            raise _Refuse(str(exc)) from None
        state = {"weight": w} if b is None else {"weight": w, "bias": b}
        return [self._append(x, self._layer(cfg, state))]

    def _op_Resize(self, node: Any, a: dict[str, Any]) -> list[Any]:
        x = self._data(node)
        if self._const(node, 3, "the sizes", required=False) is not None:
            raise _Refuse("Resize by sizes is not supported; give scales")
        try:
            cfg = _segment.resize_config(self._const(node, 2, "the scales", required=False), a)
        except ValueError as exc:
            raise _Refuse(str(exc)) from None
        return [self._append(x, self._layer(cfg))]

    def _pool(self, node: Any, a: dict[str, Any], is_max: bool) -> list[Any]:
        x = self._data(node)
        k = [int(v) for v in a.get("kernel_shape", [])]
        nd = len(k)
        if nd not in (1, 2) or len(x.shape) != nd + 2:
            raise _Refuse(f"a {nd}-D pool of input {x.shape}; only 1-D and 2-D")
        s = [int(v) for v in a.get("strides", [1] * nd)]
        d = [int(v) for v in a.get("dilations", [1] * nd)]
        padding = _symmetric(_pads(a, x.shape[2:], k, s, d), "clearconv's pooling")
        cfg: dict[str, Any] = {
            "type": f"{'MaxPool' if is_max else 'AvgPool'}{nd}d",
            "kernel_size": k,
            "stride": s,
            "padding": list(padding),
            "ceil_mode": bool(a.get("ceil_mode", 0)),
        }
        if is_max:
            cfg["dilation"] = d
        else:
            cfg["count_include_pad"] = bool(a.get("count_include_pad", 0))
        return [self._append(x, self._layer(cfg))]

    def _op_MaxPool(self, node: Any, a: dict[str, Any]) -> list[Any]:
        return [*self._pool(node, a, True), None]

    def _op_AveragePool(self, node: Any, a: dict[str, Any]) -> list[Any]:
        return self._pool(node, a, False)

    def _op_GlobalAveragePool(self, node: Any, a: dict[str, Any]) -> list[Any]:
        x = self._data(node)
        if len(x.shape) == 4:
            return [self._append(x, self._layer({"type": "AdaptiveAvgPool2d", "output_size": 1}))]
        if len(x.shape) == 3:
            return [self._append(x, self._layer({"type": "AvgPool1d", "kernel_size": x.shape[2]}))]
        raise _Refuse(f"input of shape {x.shape}; need (N, C, H, W) or (N, C, L)")

    def _simple(self, node: Any, cfg: dict[str, Any]) -> list[Any]:
        return [self._append(self._data(node), self._layer(cfg))]

    def _op_Relu(self, node: Any, a: dict[str, Any]) -> list[Any]:
        return self._simple(node, {"type": "ReLU"})

    def _op_LeakyRelu(self, node: Any, a: dict[str, Any]) -> list[Any]:
        return self._simple(
            node, {"type": "LeakyReLU", "negative_slope": _f32(a.get("alpha", 0.01))}
        )

    def _op_Sigmoid(self, node: Any, a: dict[str, Any]) -> list[Any]:
        return self._simple(node, {"type": "Sigmoid"})

    def _op_Tanh(self, node: Any, a: dict[str, Any]) -> list[Any]:
        return self._simple(node, {"type": "Tanh"})

    def _op_Softmax(self, node: Any, a: dict[str, Any]) -> list[Any]:
        x = self._data(node)
        rank = len(x.shape)
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1)) % rank
        if self.opset < 13 and axis != rank - 1:
            # Before opset 13 Softmax normalised all dims from `axis` on together.
            raise _Refuse(f"opset {self.opset} Softmax over the flattened dims {axis}..{rank - 1}")
        return [self._append(x, self._layer({"type": "Softmax", "dim": axis}))]

    def _op_Flatten(self, node: Any, a: dict[str, Any]) -> list[Any]:
        x = self._data(node)
        axis = int(a.get("axis", 1))
        if (axis + len(x.shape) if axis < 0 else axis) != 1:
            # ONNX Flatten always makes a matrix: any other axis folds the batch in.
            raise _Refuse(f"axis={axis} merges the batch dimension with others")
        return [self._append(x, self._layer({"type": "Flatten"}))]

    def _op_Reshape(self, node: Any, a: dict[str, Any]) -> list[Any]:
        x = self._data(node)
        target = self._const(node, 1, "the shape")
        t = [v if isinstance(v, str) else int(v) for v in np.asarray(target).reshape(-1)]
        s = x.shape
        per_sample = math.prod(s[1:])
        # Resolve the first entry: it must stand for the batch.
        first = t[0] if t else None
        rest: list[int] = []
        for i, v in enumerate(t[1:], start=1):
            if isinstance(v, str):
                raise _Refuse(f"shape {t} puts the batch size at position {i}")
            v = int(v)
            rest.append(s[i] if v == 0 and i < len(s) else v)
        if first == _N or (isinstance(first, (int, np.integer)) and int(first) == 0):
            pass
        elif isinstance(first, (int, np.integer)) and int(first) == -1:
            if -1 in rest:
                raise _Refuse(f"shape {t} leaves two dims open")
        elif isinstance(first, (int, np.integer)) and self.batch != _N and int(first) == self.batch:
            pass  # a batch size baked in by a static export: the graph's own batch
        else:
            raise _Refuse(f"shape {t} does not keep the batch dimension first")
        if rest.count(-1) > 1:
            raise _Refuse(f"shape {t} leaves two dims open")
        if -1 in rest:
            known = math.prod(v for v in rest if v != -1)
            if known <= 0 or per_sample % known:
                raise _Refuse(f"shape {t} does not fit an input of shape {s}")
            rest[rest.index(-1)] = per_sample // known
        if math.prod(rest) != per_sample:
            raise _Refuse(f"shape {t} does not fit an input of shape {s}")
        out = (s[0], *rest)
        if out == s:
            return [x]
        # Find the dims start..end of the input that the target merges into one.
        start = next(i for i in range(1, len(s)) if i >= len(out) or s[i] != out[i])
        end = len(s) - (len(out) - start)
        ok = (
            start <= end
            and s[end + 1 :] == out[start + 1 :]
            and math.prod(s[start : end + 1]) == out[start]
        )
        if not ok:
            raise _Refuse(f"reshape {s} -> {out} is not a flatten of consecutive dims")
        cfg = {"type": "Flatten", "start_dim": start, "end_dim": end - len(s)}
        return [self._append(x, self._layer(cfg))]

    def _linear(self, x: _Data, w: np.ndarray, b: np.ndarray | None) -> _Data:
        """Linear with weight ``w`` (out, in)."""
        out_f, in_f = w.shape
        if x.shape[-1] != in_f:
            raise _Refuse(f"weight {w.shape} does not match input {x.shape}")
        cfg = {"type": "Linear", "in_features": in_f, "out_features": out_f, "bias": b is not None}
        state = {"weight": w} if b is None else {"weight": w, "bias": b}
        return self._append(x, self._layer(cfg, state))

    def _op_Gemm(self, node: Any, a: dict[str, Any]) -> list[Any]:
        x = self._data(node)
        bmat = self._const(node, 1, "B")
        c = self._const(node, 2, "C", required=False)
        if len(x.shape) != 2 or bmat.ndim != 2:
            raise _Refuse(f"Gemm of {x.shape} and {bmat.shape}; need matrices")
        w = bmat if a.get("transB", 0) else bmat.T
        bias = None
        if c is not None:
            if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
                raise _Refuse(f"C of shape {c.shape} is not a bias of {w.shape[0]} features")
            bias = np.broadcast_to(c.reshape(-1), (w.shape[0],))
        return [self._linear(x, w, bias)]

    def _op_MatMul(self, node: Any, a: dict[str, Any]) -> list[Any]:
        x = self._data(node)
        bmat = self._const(node, 1, "the weight (second input)")
        if bmat.ndim != 2:
            raise _Refuse(f"weight of shape {bmat.shape}; need a matrix")
        return [self._linear(x, bmat.T, None)]

    def _op_Add(self, node: Any, a: dict[str, Any]) -> list[Any]:
        v0, v1 = (self.values.get(t) for t in node.input[:2])
        if isinstance(v0, _Data) and isinstance(v1, _Data):
            return [self._residual(v0, v1)]
        if isinstance(v0, _Data):
            return [self._fold_bias(v0, np.asarray(v1), node.input[0])]
        if isinstance(v1, _Data):
            return [self._fold_bias(v1, np.asarray(v0), node.input[1])]
        raise _Refuse("an Add of two constants")

    def _residual(self, x: _Data, y: _Data) -> _Data:
        """``Add`` of two branches from one tensor: a Residual of the layers between.

        With one branch the tensor itself, ``x + block(x)``; with layers on both
        (a projection shortcut, as torchvision's ``downsample``), the longer
        branch is the block and the other the shortcut.
        """
        common = 0
        for a, b in zip(x.layers, y.layers):
            if a is not b:
                break
            common += 1
        short, long_ = (x, y) if len(x.layers) <= len(y.layers) else (y, x)
        inner, skip = long_.layers[common:], short.layers[common:]
        if skip and not _HAS_SHORTCUT:
            raise _Refuse(
                "an Add of two computed branches; only x + block(x) with an identity "
                "shortcut is supported (a projection shortcut is not)"
            )
        block = inner[0] if len(inner) == 1 else nn.Sequential(*inner)
        try:
            if skip:
                shortcut = skip[0] if len(skip) == 1 else nn.Sequential(*skip)
                res = nn.Residual(block, shortcut)
            else:
                res = nn.Residual(block)
        except (TypeError, ValueError) as exc:
            raise _Refuse(str(exc)) from None
        return self._append(_Data(x.shapes[: common + 1], x.layers[:common]), res)

    def _fold_bias(self, x: _Data, c: np.ndarray, tensor: str) -> _Data:
        """Add a constant right after a bias-free Linear/Conv: it is that layer's bias."""
        last = x.layers[-1] if x.layers else None
        if (
            self.consumers.get(tensor, 0) != 1
            or not isinstance(last, (nn.Linear, nn.Conv1d, nn.Conv2d))
            or last.bias is not None
        ):
            raise _Refuse("an Add of a constant that is not the bias of a Linear or Conv")
        rank = len(x.shape)
        axis = rank - 1 if isinstance(last, nn.Linear) else 1
        full = c.reshape((1,) * (rank - c.ndim) + c.shape) if c.ndim <= rank else c
        n = x.shape[axis]
        ok = full.ndim == rank and all(
            d in (1, n) if i == axis else d == 1 for i, d in enumerate(full.shape)
        )
        if not ok:
            raise _Refuse(f"a constant of shape {c.shape} is not a per-channel bias of {x.shape}")
        bias = np.broadcast_to(full.reshape(-1), (n,))
        cfg = nn.to_config(last)
        cfg["bias"] = True
        layer = self._layer(cfg, {"weight": last.weight.data, "bias": bias})
        return _Data(x.shapes, (*x.layers[:-1], layer))

    def _op_BatchNormalization(self, node: Any, a: dict[str, Any]) -> list[Any]:
        x = self._data(node)
        scale, bias, mean, var = (
            self._const(node, i, what) for i, what in enumerate(("scale", "B", "mean", "var"), 1)
        )
        rank = len(x.shape)
        if rank not in (2, 3, 4):
            raise _Refuse(f"input of shape {x.shape}")
        momentum = min(max(round(1.0 - _f32(a.get("momentum", 0.9)), 7), 0.0), 1.0)
        cfg = {
            "type": "BatchNorm2d" if rank == 4 else "BatchNorm1d",
            "num_features": int(x.shape[1]),
            "eps": _f32(a.get("epsilon", 1e-5)),
            "momentum": momentum,
        }
        state = {
            "weight": scale,
            "bias": bias,
            "running_mean": mean,
            "running_var": var,
            "num_batches_tracked": np.array(0, dtype=np.int64),
        }
        return [self._append(x, self._layer(cfg, state)), None, None][: len(node.output)]

    def _op_Dropout(self, node: Any, a: dict[str, Any]) -> list[Any]:
        x = self._data(node)
        ratio = self._const(node, 1, "ratio", required=False)
        mode = self._const(node, 2, "training_mode", required=False)
        if mode is not None and bool(np.asarray(mode)):
            raise _Refuse("training_mode=True (dropout at inference)")
        p = _f32(a.get("ratio", 0.5) if ratio is None else np.asarray(ratio))
        outs = [x if p == 0.0 else self._append(x, self._layer({"type": "Dropout", "p": p}))]
        return outs + [None] * (len(node.output) - 1)

    def _op_Identity(self, node: Any, a: dict[str, Any]) -> list[Any]:
        return [self.values.get(node.input[0])]

    # -- constants and shape arithmetic (as torch writes x.view(x.size(0), -1)) --
    def _op_Constant(self, node: Any, a: dict[str, Any]) -> list[Any]:
        if "value" in a:
            return [self._to_array(a["value"])]
        key, value = next(iter(a.items()))
        return [np.asarray(value, dtype=np.float32 if "float" in key else np.int64)]

    def _shape_args(self, node: Any) -> list[Any]:
        """The node's inputs: int64 arrays, object arrays holding the symbolic
        batch ``"N"``, or None for an omitted input; each op indexes them as
        its ONNX schema says (hence Any, not ``np.ndarray | None``)."""
        vals = [self.values.get(t) if t else None for t in node.input]
        if any(isinstance(v, _Data) for v in vals):
            raise _Refuse("shape arithmetic on activations")
        return vals

    def _op_Shape(self, node: Any, a: dict[str, Any]) -> list[Any]:
        v: Any = self.values.get(node.input[0])  # _Data or an array
        dims: list[Any] = [self.batch, *v.shape[1:]] if isinstance(v, _Data) else list(v.shape)
        start, end = a.get("start", 0), a.get("end", len(dims))
        return [_sym(dims[start:end])]

    def _op_Gather(self, node: Any, a: dict[str, Any]) -> list[Any]:
        data, idx = self._shape_args(node)
        return [_sym(np.take(data, np.asarray(idx, dtype=np.int64), axis=a.get("axis", 0)))]

    def _axes(self, node: Any, a: dict[str, Any]) -> list[int] | None:
        if "axes" in a:
            return [int(v) for v in a["axes"]]
        vals = self._shape_args(node)
        return None if len(vals) < 2 or vals[1] is None else [int(v) for v in vals[1].ravel()]

    def _op_Unsqueeze(self, node: Any, a: dict[str, Any]) -> list[Any]:
        data = self._shape_args(node)[0]
        axes = self._axes(node, a) or []
        rank = data.ndim + len(axes)
        out = data
        for ax in sorted(v % rank for v in axes):
            out = np.expand_dims(out, ax)
        return [_sym(out)]

    def _op_Squeeze(self, node: Any, a: dict[str, Any]) -> list[Any]:
        data = self._shape_args(node)[0]
        axes = self._axes(node, a)
        return [_sym(np.squeeze(data, axis=None if axes is None else tuple(axes)))]

    def _op_Concat(self, node: Any, a: dict[str, Any]) -> list[Any]:
        vals = self._shape_args(node)
        return [_sym(np.concatenate([np.asarray(v) for v in vals], axis=a.get("axis", 0)))]

    def _op_Cast(self, node: Any, a: dict[str, Any]) -> list[Any]:
        data = self._shape_args(node)[0]
        if data.dtype == object:
            return [data]
        return [data.astype(self.onnx.helper.tensor_dtype_to_np_dtype(a["to"]))]

    def _op_Slice(self, node: Any, a: dict[str, Any]) -> list[Any]:
        vals = self._shape_args(node) + [None] * 5
        data = vals[0]
        starts = a.get("starts", vals[1])
        ends = a.get("ends", vals[2])
        axes = a.get("axes", vals[3])
        steps = vals[4]
        starts, ends = np.ravel(starts).astype(int), np.ravel(ends).astype(int)
        axes = range(len(starts)) if axes is None else np.ravel(axes).astype(int)
        steps = [1] * len(starts) if steps is None else np.ravel(steps).astype(int)
        index = [slice(None)] * data.ndim
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            index[int(ax)] = slice(int(st), int(en), int(sp))
        return [_sym(data[tuple(index)])]


def _f32(value: Any) -> float:
    """An ONNX float attribute (stored as float32) as the decimal it was written
    from: 1e-5 comes back as 1e-05, not 9.999999747378752e-06."""
    return float(str(np.float32(value)))


def _sym(values: Any) -> np.ndarray:
    """An int64 array, or an object array when it holds the symbolic batch "N"."""
    arr = np.asarray(values, dtype=object)
    if any(isinstance(v, str) for v in arr.ravel()):
        return arr
    return arr.astype(np.int64)


# -- public API ----------------------------------------------------------------
def read_proto(path: str | os.PathLike) -> Any:
    """Read and validate an ONNX file; a clear ValueError when it is not one.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        For a file that does not parse (truncated, not ONNX) or fails
        ``onnx.checker.check_model``.
    """
    onnx = require_onnx()
    p = os.fspath(path)
    if not os.path.isfile(p):
        raise FileNotFoundError(f"{p}: no such ONNX file")
    try:
        # external data files would be opened by paths the file names: never
        proto = onnx.load(p, load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ValueError(f"{p}: not a valid ONNX file (truncated or corrupt?): {exc}") from None
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx.checker.ValidationError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{p}: not a valid ONNX model (truncated or corrupt?): {first}") from None
    return proto


def from_onnx(proto: Any, source: str = "ONNX model") -> Imported:
    """Convert an ONNX ``ModelProto`` (see the module docstring for what maps).

    Returns
    -------
    Imported
        ``net`` (a Sequential), ``input_shape`` (one sample's), ``class_names``
        (from metadata, else ``"0" .. "K-1"``), ``mean``/``std`` and ``meta``.

    Raises
    ------
    UnsupportedModelError
        Listing every node that cannot be represented exactly.
    """
    onnx = require_onnx()
    if not isinstance(proto, onnx.ModelProto):
        raise TypeError(f"from_onnx expected an onnx.ModelProto, got {type(proto).__name__}")
    return _Importer(onnx, proto, source).run()


def load(path: str | os.PathLike) -> Any:
    """Read an ONNX file as a :class:`clearconv.Model`.

    Raises
    ------
    FileNotFoundError, ValueError
        See :func:`read_proto`.
    UnsupportedModelError
        When the graph holds operators or attributes outside the supported set
        (every such node is listed), or is not a chain with identity skips.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from clearconv.onnx import export
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, rng=np.random.default_rng(0)))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     model = load(export(net, os.path.join(d, "n.onnx"), input_shape=(1, 2, 2)))
    >>> model.input_shape, model.class_names, model.net[1]
    ((1, 2, 2), ['0', '1', '2'], Linear(in_features=4, out_features=3))
    """
    from clearconv.model import Model

    got = from_onnx(read_proto(path), source=os.fspath(path))
    return Model(got.net, got.input_shape, got.class_names, got.mean, got.std, got.meta)
