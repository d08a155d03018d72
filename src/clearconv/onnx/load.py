"""ONNX -> clearconv: a graph of supported operators back into layers and weights.

The graph has one input and one output; in between, any series-parallel
graph: where a tensor forks, the paths until they meet again in a Concat,
Add or Sum become :class:`nn.Concat`, :class:`nn.Residual` (two paths) or
:class:`nn.Add`, nested as deep as the graph goes (see
:mod:`clearconv.onnx.assemble`). Each other node maps to one layer, built
with :func:`nn.from_config` and filled with :meth:`load_state_dict`:

- Conv (+ bias, ``group``; explicit, 'VALID' or 'SAME_*' pads; a zero Pad
  before it joins its padding) -> Conv1d / Conv2d;
- MaxPool, AveragePool -> MaxPool1d/2d, AvgPool1d/2d (Caffe's ceil mode
  written as extra end pads reads as ``ceil_mode=True``); GlobalAveragePool ->
  AdaptiveAvgPool2d(1) (AvgPool1d over the length for 1-D input);
- Relu, LeakyRelu, Sigmoid, Tanh, Softmax -> the activation of the same name;
  Clip(0, 6) -> ReLU6; LRN (odd sizes) -> LocalResponseNorm;
- Reshape (N, g, C/g, H, W) -> Transpose(0, 2, 1, 3, 4) -> Reshape (N, C, H, W)
  -> ChannelShuffle(g);
- BatchNormalization (inference) -> BatchNorm1d / BatchNorm2d; a per-channel
  Mul or Add of a constant folds into the Conv, Linear or BatchNorm before it
  (else becomes a BatchNorm-like affine layer);
- Flatten(axis=1), and Reshape to ``(N, -1)``-style shapes (constant, or
  computed from ``Shape``/``Gather``/``Unsqueeze``/``Concat`` as
  ``torch.onnx.export`` writes ``x.view(x.size(0), -1)``) -> Flatten;
- Gemm (transB 0 or 1, alpha = beta = 1), MatMul with constant weights
  (+ an Add of a constant, folded into the bias) -> Linear;
- Dropout -> Dropout(p) (the identity at inference, kept for fine-tuning);
  Identity is dropped, and so is a Slice that keeps its activations whole
  (what export writes after a ceil-mode pool).

A node whose inputs depend on no graph input (ConstantOfShape making
weights, shape arithmetic on constants) is evaluated at load time by ONNX's
reference runtime, whatever its operator. Opsets 9 to 17 are read (Pad,
Clip, Squeeze, Unsqueeze, Slice and Dropout take settings as attributes or
inputs as their opset says).

:func:`load` (a :class:`Model`, which classifies) flattens an output of shape
``(N, K, 1, 1)`` (SqueezeNet's and DenseNet's last 1x1 conv or global pool
before the softmax) to ``(N, K)``; :func:`from_onnx` keeps the graph's shape.

Pooling with ``ceil_mode=1`` follows PyTorch's rule (a last window that would
start in the end padding is dropped), as onnxruntime does and as
``torch.onnx.export`` means it; the ONNX spec's formula can count one more.

Anything else (another operator, asymmetric padding, branches that cross,
...) is refused, never approximated: the error lists every unsupported node,
grouped by operator, with its name and the offending attribute.

This module walks the graph (:class:`Importer`) and holds the public API;
each operator's handler and accepted attributes are in
:data:`clearconv.onnx.ops.OPS`, the graph reading in :mod:`clearconv.onnx.graph`
and the padding and reshape arithmetic in :mod:`clearconv.onnx.shapes`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import numpy as np

from clearconv import nn
from clearconv.onnx import graph as G
from clearconv.onnx._common import (
    LEGACY_PREFIX,
    META_CLASS_NAMES,
    META_INPUT_SHAPE,
    META_MODEL,
    META_NORMALIZATION,
    META_PREFIX,
    require_onnx,
)
from clearconv.onnx.assemble import assemble
from clearconv.onnx.graph import Data
from clearconv.onnx.ops import OPS, SHAPE_OPS
from clearconv.onnx.shapes import Refuse
from clearconv.zoo import shape_only_rng


class UnsupportedModelError(ValueError):
    """An ONNX graph that clearconv cannot represent exactly.

    The message groups the problems by operator with counts
    (``"ConstantOfShape x36 (...), LRN x2 (...)"``), quoting up to three of each.

    Attributes
    ----------
    problems : list of str
        One entry per unsupported node: ``"Conv 'conv1' (group=2: ...)"``.
    """

    def __init__(self, source: str, problems: list[str]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        groups: dict[str, list[str]] = {}
        for p in self.problems:
            # "Conv 'c1' (...)" is a node's problem; others are the graph's
            head = p.split(" (", 1)[0]
            groups.setdefault(head.split(" ", 1)[0] if " '" in head else "graph", []).append(p)
        parts = []
        for op, items in groups.items():
            shown = "; ".join(items[:3]) + ("; ..." if len(items) > 3 else "")
            parts.append(f"{op} x{len(items)} ({shown})")
        super().__init__(
            f"{source}: cannot import {n} unsupported node{'s' if n != 1 else ''}: "
            + ", ".join(parts)
            + f" (supported operators: {', '.join(sorted(OPS))}; any operator whose "
            "inputs do not depend on the graph input is evaluated at load time)"
        )


@dataclass
class Imported:
    """What an ONNX file holds, in clearconv's terms (the parts of a Model)."""

    net: nn.Module
    input_shape: tuple[int, ...]
    class_names: list[str]
    mean: list[float] | None = None
    std: list[float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def static_problems(onnx: Any, nodes: list[Any]) -> list[str]:
    """Every node whose operator or attribute is outside the supported set."""
    problems = []
    for node in nodes:
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{G.label(node)} (operator domain {node.domain!r})")
            continue
        op = OPS.get(node.op_type)
        if op is None:
            problems.append(f"{G.label(node)} (operator {node.op_type} is not supported)")
            continue
        for key, value in G.attrs(onnx, node).items():
            if key not in op.attrs:
                problems.append(f"{G.label(node)} (attribute {key}={value!r} is not supported)")
                continue
            check = op.attrs[key]
            if check is not None and not check(value):
                problems.append(f"{G.label(node)} ({key}={value!r} is not supported)")
    return problems


class Importer:
    """One walk over one graph: the value of every tensor so far, and what was refused.

    The operator handlers (:data:`clearconv.onnx.ops.OPS`) read their inputs
    with :meth:`data` and :meth:`const`, build layers with :meth:`layer` and
    extend an activation with :meth:`append`.
    """

    def __init__(self, onnx: Any, proto: Any, source: str) -> None:
        self.onnx, self.proto, self.source = onnx, proto, source
        self.graph = proto.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
        # Every weight is loaded from the file: the layers start with zero
        # views that cost no memory or time (VGG-19's 144 M weights drawn at random took seconds).
        self.rng = shape_only_rng()
        self.values: dict[str, Any] = {}
        self.problems: list[str] = []
        self.consumers = G.consumers(self.graph)
        self.batch: int | str = G.N  # the input's batch size, or N when dynamic
        self.static: set[int] = set()  # ids of the nodes that depend on no graph input

    # -- what handlers use ---------------------------------------------------
    # required=True gives an array or raises Refuse; only optional inputs may be None.
    @overload
    def const(self, node: Any, i: int, what: str, required: Literal[True] = True) -> np.ndarray: ...
    @overload
    def const(self, node: Any, i: int, what: str, required: bool) -> np.ndarray | None: ...
    def const(self, node: Any, i: int, what: str, required: bool = True) -> np.ndarray | None:
        """Input ``i`` of ``node``, which must be a constant (named ``what`` in errors)."""
        if i >= len(node.input) or not node.input[i]:
            if required:
                raise Refuse(f"missing input {what}")
            return None
        v = self.values.get(node.input[i])
        if isinstance(v, Data):
            raise Refuse(f"{what} must be a constant (an initializer), not computed")
        return v

    def data(self, node: Any, i: int = 0) -> Data:
        """Input ``i`` of ``node``, which must be an activation."""
        v = self.values.get(node.input[i]) if i < len(node.input) else None
        if not isinstance(v, Data) and v is not None and not isinstance(v, np.ndarray):
            raise Refuse(
                f"input {i} is the middle of a channel shuffle or a Pad, which only "
                "a Transpose/Reshape of the shuffle or a Conv reads"
            )
        if not isinstance(v, Data):
            raise Refuse(f"input {i} must be an activation, not a constant")
        return v

    def shape_args(self, node: Any) -> list[Any]:
        """The node's inputs: int64 arrays, object arrays holding the symbolic
        batch ``"N"``, or None for an omitted input; each op indexes them as
        its ONNX schema says (hence Any, not ``np.ndarray | None``)."""
        vals = [self.values.get(t) if t else None for t in node.input]
        if any(v is not None and not isinstance(v, np.ndarray) for v in vals):
            raise Refuse("shape arithmetic on activations")
        return vals

    def layer(self, cfg: dict[str, Any], state: dict[str, Any] | None = None) -> nn.Module:
        """The layer of config ``cfg`` with ``state`` loaded (float32; the counter int64)."""
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
            raise Refuse(str(exc)) from None
        return module

    def append(self, x: Data, layer: nn.Module) -> Data:
        """The activation ``layer(x)``."""
        try:
            shape = tuple(layer.output_shape(x.shape))
        except ValueError as exc:
            raise Refuse(str(exc)) from None
        return Data((*x.shapes, shape), (*x.layers, layer), x.origin)

    def to_array(self, tensor: Any) -> np.ndarray:
        return G.to_array(self.onnx, tensor)

    # -- the walk -----------------------------------------------------------
    def run(self) -> Imported:
        """The whole graph as layers, or UnsupportedModelError listing every problem."""
        g = self.graph
        for init in g.initializer:
            self.values[init.name] = self.to_array(init)
        inputs = [i for i in g.input if i.name not in self.values]
        try:
            order = G.topological(list(g.node), set(self.values) | {i.name for i in inputs})
        except ValueError as exc:
            raise ValueError(f"{self.source}: {exc}") from None
        # Nodes that depend on no activation (ConstantOfShape making weights,
        # arithmetic on shapes) are evaluated, whatever their operator.
        dynamic = {i.name for i in inputs}
        for node in order:
            if node.op_type != "Shape" and any(t in dynamic for t in node.input):
                dynamic.update(node.output)
            else:
                self.static.add(id(node))
        problems = static_problems(self.onnx, [n for n in order if id(n) not in self.static])
        input_shape = self._input(inputs, problems)
        if len(g.output) != 1:
            problems.append(f"the graph has {len(g.output)} outputs; a classifier has one")
        if problems:
            raise UnsupportedModelError(self.source, problems)
        for node in order:
            self._visit(node)
        if self.problems:
            raise UnsupportedModelError(self.source, self.problems)
        out = self.values.get(g.output[0].name)
        if not isinstance(out, Data):
            problem = f"the output {g.output[0].name!r} does not depend on the input"
            raise UnsupportedModelError(self.source, [problem])
        try:
            net = assemble(out)
        except Refuse as exc:
            raise UnsupportedModelError(self.source, [str(exc)]) from None
        return self._finish(net, input_shape, out.shape)

    def _visit(self, node: Any) -> None:
        """Set the values of ``node``'s outputs (None where it, or an input, was refused)."""
        outs: list[Any] = [None] * len(node.output)
        if all(not t or self.values.get(t, 0) is not None for t in node.input):
            try:
                outs = self._evaluate(node) if id(node) in self.static else self._convert(node)
            except Refuse as exc:
                self.problems.append(f"{G.label(node)} ({exc})")
        # else: downstream of a refused node, which is already reported
        for t, v in zip(node.output, outs):
            self.values[t] = v

    def _evaluate(self, node: Any) -> list[Any]:
        """The outputs of a node that reads no activation: by its handler for the
        shape operators (which carry the symbolic batch), else by ONNX's reference runtime."""
        if node.op_type in SHAPE_OPS:
            return self._convert(node)
        if any(np.asarray(self.values[t]).dtype == object for t in node.input if t):
            raise Refuse(f"{node.op_type} of the symbolic batch size")
        from onnx.reference import ReferenceEvaluator

        helper = self.onnx.helper
        feeds = {t: np.asarray(self.values[t]) for t in dict.fromkeys(node.input) if t}

        def info(name: str, arr: np.ndarray | None = None) -> Any:
            if arr is None:
                return helper.make_empty_tensor_value_info(name)
            elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
            return helper.make_tensor_value_info(name, elem, arr.shape)

        graph = helper.make_graph(
            [node],
            "constant",
            [info(t, a) for t, a in feeds.items()],
            [info(t) for t in node.output if t],
        )
        model = helper.make_model(graph, opset_imports=list(self.proto.opset_import))
        try:
            got = ReferenceEvaluator(model).run(None, feeds)
        except Exception as exc:  # the reference runtime raises many kinds
            raise Refuse(f"cannot evaluate this constant: {exc!r}"[:300]) from None
        values = iter(got)
        return [np.asarray(next(values)) if t else None for t in node.output]

    def _convert(self, node: Any) -> list[Any]:
        op = OPS[node.op_type]
        if op.first_output_only and any(self.consumers.get(t, 0) for t in node.output[1:]):
            raise Refuse("only the first output may be used (training outputs or indices)")
        return op.handler(self, node, G.attrs(self.onnx, node))

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
        self.batch = dims[0] if dims[0] else G.N
        b = dims[0] or 1
        self.values[inp.name] = Data(((b, *sample),), ())
        return tuple(int(s) for s in sample)

    def _meta(self, key: str) -> Any:
        # Files exported before the rename carry the same keys under "convnet.".
        keys = (key, key.replace(META_PREFIX, LEGACY_PREFIX, 1))
        for p in self.proto.metadata_props:
            if p.key in keys:
                try:
                    return json.loads(p.value)
                except ValueError:
                    return None
        return None

    def _finish(self, net: nn.Module, input_shape, out_shape) -> Imported:
        # classes along axis 1: one per image (N, K), or per pixel (N, K, H, W)
        k = out_shape[1] if len(out_shape) in (2, 4) else 0
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
        ``net`` (a Sequential of layers and containers), ``input_shape``
        (one sample's), ``class_names`` (from metadata, else ``"0" .. "K-1"``),
        ``mean``/``std`` and ``meta``.

    Raises
    ------
    UnsupportedModelError
        Listing every node that cannot be represented exactly.
    """
    onnx = require_onnx()
    if not isinstance(proto, onnx.ModelProto):
        raise TypeError(f"from_onnx expected an onnx.ModelProto, got {type(proto).__name__}")
    return Importer(onnx, proto, source).run()


def load(path: str | os.PathLike) -> Any:
    """Read an ONNX file as a :class:`clearconv.Model`.

    Raises
    ------
    FileNotFoundError, ValueError
        See :func:`read_proto`.
    UnsupportedModelError
        When the graph holds operators or attributes outside the supported set
        (every such node is listed), or is not series-parallel.

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
    out = got.net.output_shape((1, *got.input_shape))
    if len(out) > 2 and all(d == 1 for d in out[2:]):
        layers = list(got.net) if isinstance(got.net, nn.Sequential) else [got.net]
        got.net = nn.Sequential(*layers, nn.Flatten())  # (N, K, 1, 1) -> (N, K) scores
        got.class_names = [str(i) for i in range(out[1])]
    return Model(got.net, got.input_shape, got.class_names, got.mean, got.std, got.meta)
