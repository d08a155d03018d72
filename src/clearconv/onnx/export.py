"""clearconv -> ONNX: every layer of the engine as standard operators (opset 17 by default).

The graph has one input ``"input"`` of shape ``(N, *input_shape)`` with a
dynamic batch ``N`` and one output ``"logits"``. Layers map one to one:

========================  ==============================================
clearconv                   ONNX
========================  ==============================================
Conv1d / Conv2d           Conv (explicit ``pads``; 'same' as its pads)
MaxPool1d / MaxPool2d     MaxPool (pads, dilations, ceil_mode), + Slice (see shapes.pool_window)
AvgPool1d / AvgPool2d     AveragePool (pads, ceil_mode, count_include_pad), + Slice
AdaptiveAvgPool2d         GlobalAveragePool for size 1, else AveragePool
                          when the input divides evenly (else refused)
ReLU, LeakyReLU           Relu, LeakyRelu(alpha)
Sigmoid, Tanh             Sigmoid, Tanh
Softmax(dim)              Softmax(axis)
Flatten                   Flatten(axis=1), other dims as Reshape
Linear                    Gemm(transB=1) on 2-D input, else MatMul + Add
BatchNorm1d / 2d          BatchNormalization (running statistics)
Dropout                   Dropout (the identity at inference)
Residual                  the block (and shortcut), then Add(x or
                          shortcut(x), block(x))
Concat(*branches, dim)    the branches, then Concat(axis=dim)
Add(*branches)            the branches, then Add (two) or Sum (more)
Identity                  nothing (the input tensor itself)
LocalResponseNorm         LRN (odd sizes; even ones are refused: ONNX
                          centres the window differently)
ChannelShuffle(g)         Reshape (N, g, C/g, *) -> Transpose -> Reshape
ReLU6                     Clip(0, 6)
ConvTranspose2d,          ConvTranspose, Resize: see
Upsample                  :mod:`clearconv.onnx._segment`
========================  ==============================================

BatchNorm's training-only settings ``momentum=None`` and ``affine=False`` have
no ONNX form: they come back from :func:`clearconv.onnx.load` as momentum 0.1
and ``affine=True`` with weight 1 and bias 0 (the same outputs).

Weights are written as float32 initializers named by their ``state_dict``
keys (``"0.weight"``); nodes are named by the layer's path (``"3.block.0"``).
Class names, normalisation and the input shape go into ``metadata_props`` as
JSON strings, so :func:`clearconv.onnx.load` restores the whole :class:`Model`.

Each row of the table is one emitter function, found through :data:`EMITTERS`
by the layer's class; a new layer type gets an emitter and an entry there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clearconv import nn
from clearconv.onnx import _segment
from clearconv.onnx._common import (
    BATCH_DIM,
    INPUT_NAME,
    META_CLASS_NAMES,
    META_INPUT_SHAPE,
    META_MODEL,
    META_NORMALIZATION,
    MIN_OPSET,
    OPSET,
    OUTPUT_NAME,
    require_onnx,
)
from clearconv.onnx.shapes import onnx_pads, pool_window, spatial_pads


class _Graph:
    """Nodes and initializers collected while walking the layers."""

    def __init__(self, onnx: Any) -> None:
        self.onnx = onnx
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._names: set[str] = set()

    def _unique(self, name: str) -> str:
        base, i = name, 1
        while name in self._names:
            name, i = f"{base}_{i}", i + 1
        self._names.add(name)
        return name

    def const(self, name: str, array: Any, dtype: Any = np.float32) -> str:
        """An initializer (float32 unless told) under a unique name."""
        name = self._unique(name)
        arr = np.array(array, dtype=dtype, order="C")  # keeps 0-d scalars 0-d
        self.inits.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        """Add one node; returns the name of its (single) output."""
        node_name = self._unique(f"{name}/{op}" if name else op)
        out = self._unique(f"{node_name}:0")
        self.nodes.append(self.onnx.helper.make_node(op, inputs, [out], name=node_name, **attrs))
        return out


def _crop(g: _Graph, y: str, name: str, keep: list[int] | None) -> str:
    """``y[..., :keep[0], :keep[1]]`` over the spatial axes (a Slice), or ``y``."""
    if keep is None:
        return y
    nd = len(keep)
    starts = g.const(f"{name}.crop_starts", [0] * nd, np.int64)
    ends = g.const(f"{name}.crop_ends", keep, np.int64)
    axes = g.const(f"{name}.crop_axes", list(range(2, 2 + nd)), np.int64)
    return g.node("Slice", [y, starts, ends, axes], name)


def _param(module: Any, attr: str) -> np.ndarray | None:
    p = getattr(module, attr, None)
    return None if p is None else np.asarray(p.data)


@dataclass(frozen=True)
class _At:
    """Where an emitter works: the tensor ``x`` it reads, its ``shape`` (batch 1),
    the layer's output shape, and its path (``"3.block.0."``, the state_dict
    prefix of its weights)."""

    x: str
    shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    path: str

    @property
    def name(self) -> str:
        """The node name: the path without its trailing dot ("" at the top)."""
        return self.path.rstrip(".")


# An emitter appends the nodes of one layer and returns the name of its output.
Emitter = Callable[[_Graph, Any, _At], str]


def _emit(g: _Graph, m: nn.Module, x: str, shape: tuple[int, ...], path: str):
    """Append the nodes of ``m`` applied to tensor ``x`` of ``shape`` (batch 1).

    Returns the output tensor name and its shape.
    """
    # The nearest class in the layer's MRO with an emitter: subclasses export as their base.
    emitter = next((EMITTERS[t] for t in type(m).__mro__ if t in EMITTERS), None)
    if emitter is None:
        supported = ", ".join(sorted(t.__name__ for t in EMITTERS))
        raise TypeError(
            f"cannot export layer {type(m).__name__} at {path.rstrip('.') or 'the top'!r}: "
            f"it has no ONNX mapping (supported: {supported})"
        )
    out_shape = tuple(m.output_shape(shape))
    return emitter(g, m, _At(x, shape, out_shape, path)), out_shape


def _sequential(g: _Graph, m: nn.Sequential, at: _At) -> str:
    x, shape = at.x, at.shape
    for i, child in enumerate(m):
        x, shape = _emit(g, child, x, shape, f"{at.path}{i}.")
    return x


def _residual(g: _Graph, m: nn.Residual, at: _At) -> str:
    y, _ = _emit(g, m.block, at.x, at.shape, f"{at.path}block.")
    skip = at.x  # shortcut(x) + block(x) with a projection
    if m.shortcut is not None:
        skip, _ = _emit(g, m.shortcut, at.x, at.shape, f"{at.path}shortcut.")
    return g.node("Add", [skip, y], f"{at.name}.add" if at.name else "add")


def _branches(g: _Graph, m: Any, at: _At) -> list[str]:
    """The output of each branch of a Concat or Add, all read from ``at.x``."""
    return [_emit(g, b, at.x, at.shape, f"{at.path}{i}.")[0] for i, b in enumerate(m)]


def _concat(g: _Graph, m: nn.Concat, at: _At) -> str:
    axis = m.dim % len(at.out_shape)
    return g.node("Concat", _branches(g, m, at), at.name or "concat", axis=axis)


def _add(g: _Graph, m: nn.Add, at: _At) -> str:
    ys = _branches(g, m, at)
    if len(ys) == 1:
        return ys[0]
    return g.node("Add" if len(ys) == 2 else "Sum", ys, at.name or "add")


def _lrn(g: _Graph, m: nn.LocalResponseNorm, at: _At) -> str:
    if m.size % 2 == 0:
        raise ValueError(
            f"cannot export {m!r} at {at.name!r}: ONNX's LRN centres an even window "
            f"one channel later than PyTorch's (c - {m.size // 2 - 1} .. c + {m.size // 2}, "
            f"not c - {m.size // 2} .. c + {m.size // 2 - 1}); use an odd size"
        )
    return g.node(
        "LRN",
        [at.x],
        at.name,
        size=m.size,
        alpha=float(m.alpha),
        beta=float(m.beta),
        bias=float(m.k),
    )


def _channel_shuffle(g: _Graph, m: nn.ChannelShuffle, at: _At) -> str:
    n_g, (c, *rest) = m.groups, at.shape[1:]
    # (N, C, *) -> (N, g, C/g, *) -> (N, C/g, g, *) -> (N, C, *); 0 copies the batch
    split = g.const(at.path + "split", [0, n_g, c // n_g, *rest], np.int64)
    y = g.node("Reshape", [at.x, split], at.name)
    y = g.node("Transpose", [y], at.name, perm=[0, 2, 1, *range(3, len(at.shape) + 1)])
    merged = g.const(at.path + "merge", [0, c, *rest], np.int64)
    return g.node("Reshape", [y, merged], at.name)


def _relu6(g: _Graph, m: nn.ReLU6, at: _At) -> str:
    lo, hi = g.const(at.path + "min", np.float32(0)), g.const(at.path + "max", np.float32(6))
    return g.node("Clip", [at.x, lo, hi], at.name)


def _conv(g: _Graph, m: Any, at: _At) -> str:
    inputs = [at.x, g.const(at.path + "weight", _param(m, "weight"))]
    if m.bias is not None:
        inputs.append(g.const(at.path + "bias", _param(m, "bias")))
    return g.node(
        "Conv",
        inputs,
        at.name,
        kernel_shape=list(m.kernel_size),
        strides=list(m.stride),
        dilations=list(m.dilation),
        pads=onnx_pads(spatial_pads(m)),
        group=m.groups,
    )


def _max_pool(g: _Graph, m: Any, at: _At) -> str:
    ceil, pads, keep = pool_window(m, at.shape)
    y = g.node(
        "MaxPool",
        [at.x],
        at.name,
        kernel_shape=list(m.kernel_size),
        strides=list(m.stride),
        dilations=list(m.dilation),
        pads=onnx_pads(pads),
        ceil_mode=ceil,
    )
    return _crop(g, y, at.name, keep)


def _avg_pool(g: _Graph, m: Any, at: _At) -> str:
    ceil, pads, keep = pool_window(m, at.shape)
    y = g.node(
        "AveragePool",
        [at.x],
        at.name,
        kernel_shape=list(m.kernel_size),
        strides=list(m.stride),
        pads=onnx_pads(pads),
        ceil_mode=ceil,
        count_include_pad=int(m.count_include_pad),
    )
    return _crop(g, y, at.name, keep)


def _adaptive_avg_pool(g: _Graph, m: nn.AdaptiveAvgPool2d, at: _At) -> str:
    (h, w), (oh, ow) = at.shape[2:], at.out_shape[2:]
    if (oh, ow) == (1, 1):
        return g.node("GlobalAveragePool", [at.x], at.name)
    if (oh, ow) == (h, w):
        return at.x  # every bin is one pixel: the identity
    if h % oh or w % ow:
        raise ValueError(
            f"cannot export {m!r} at {at.name!r}: input {h}x{w} does not divide evenly into "
            f"{oh}x{ow} bins, and ONNX has no adaptive pooling (use an input size that "
            "is a multiple of the output size, or output_size=1)"
        )
    k = [h // oh, w // ow]
    return g.node("AveragePool", [at.x], at.name, kernel_shape=k, strides=k)


def _op(op: str) -> Emitter:
    """The emitter of a layer that is one ONNX operator with no settings."""
    return lambda g, m, at: g.node(op, [at.x], at.name)


def _leaky_relu(g: _Graph, m: nn.LeakyReLU, at: _At) -> str:
    return g.node("LeakyRelu", [at.x], at.name, alpha=float(m.negative_slope))


def _softmax(g: _Graph, m: nn.Softmax, at: _At) -> str:
    return g.node("Softmax", [at.x], at.name, axis=int(m._axis_for(len(at.shape))))


def _flatten(g: _Graph, m: nn.Flatten, at: _At) -> str:
    rank = len(at.shape)
    start, end = m.start_dim % rank, m.end_dim % rank
    if start == 0:
        raise ValueError(
            f"cannot export {m!r} at {at.name!r}: flattening the batch dimension leaves "
            "the graph without a batch axis"
        )
    if start == end:
        return at.x  # one dim "flattened" into itself: nothing to do
    if start == 1 and end == rank - 1:
        return g.node("Flatten", [at.x], at.name, axis=1)
    # Reshape to the known per-sample dims; 0 copies the (dynamic) batch.
    s = g.const(at.path + "shape", [0, *at.out_shape[1:]], np.int64)
    return g.node("Reshape", [at.x, s], at.name)


def _linear(g: _Graph, m: nn.Linear, at: _At) -> str:
    weight, b = np.asarray(m.weight.data), _param(m, "bias")
    if len(at.shape) == 2:
        inputs = [at.x, g.const(at.path + "weight", weight)]
        if b is not None:
            inputs.append(g.const(at.path + "bias", b))
        return g.node("Gemm", inputs, at.name, transB=1)
    # (N, *, in) @ (in, out): Gemm takes matrices only.
    y = g.node("MatMul", [at.x, g.const(at.path + "weight_t", weight.T)], at.name)
    if b is not None:
        y = g.node("Add", [y, g.const(at.path + "bias", b)], f"{at.name}.bias")
    return y


def _batch_norm(g: _Graph, m: Any, at: _At) -> str:
    if m.running_mean is None:
        raise ValueError(
            f"cannot export {m!r} at {at.name!r}: it keeps no running statistics "
            "(track_running_stats=False), so inference depends on the batch"
        )
    c = m.num_features
    scale = _param(m, "weight") if m.weight is not None else np.ones(c)
    bias = _param(m, "bias") if m.bias is not None else np.zeros(c)
    inputs = [
        at.x,
        g.const(at.path + "weight", scale),
        g.const(at.path + "bias", bias),
        g.const(at.path + "running_mean", m.running_mean),
        g.const(at.path + "running_var", m.running_var),
    ]
    # ONNX's momentum weighs the old statistic: 1 - PyTorch's.
    mom = 0.9 if m.momentum is None else 1.0 - float(m.momentum)
    return g.node("BatchNormalization", inputs, at.name, epsilon=float(m.eps), momentum=mom)


def _dropout(g: _Graph, m: nn.Dropout, at: _At) -> str:
    ratio = g.const(at.path + "ratio", np.float32(m.p))
    return g.node("Dropout", [at.x, ratio], at.name)


# Layer type -> emitter (one entry per class; a subclass uses its base's).
EMITTERS: dict[type, Emitter] = {
    nn.Sequential: _sequential,
    nn.Residual: _residual,
    nn.Concat: _concat,
    nn.Add: _add,
    nn.Identity: lambda g, m, at: at.x,
    nn.LocalResponseNorm: _lrn,
    nn.ChannelShuffle: _channel_shuffle,
    nn.ReLU6: _relu6,
    nn.Conv1d: _conv,
    nn.Conv2d: _conv,
    nn.MaxPool1d: _max_pool,
    nn.MaxPool2d: _max_pool,
    nn.AvgPool1d: _avg_pool,
    nn.AvgPool2d: _avg_pool,
    nn.AdaptiveAvgPool2d: _adaptive_avg_pool,
    nn.ReLU: _op("Relu"),
    nn.LeakyReLU: _leaky_relu,
    nn.Sigmoid: _op("Sigmoid"),
    nn.Tanh: _op("Tanh"),
    nn.Softmax: _softmax,
    nn.Flatten: _flatten,
    nn.Linear: _linear,
    nn.BatchNorm1d: _batch_norm,
    nn.BatchNorm2d: _batch_norm,
    nn.Dropout: _dropout,
    nn.ConvTranspose2d: _segment.emit_conv_transpose,
    nn.Upsample: _segment.emit_upsample,
}


def _unwrap(model: Any, input_shape, class_names, mean, std):
    """(net, input_shape, class_names, mean, std, meta) from a Model or a bare Module."""
    from clearconv.model import Model

    if isinstance(model, Model):
        return (
            model.net,
            tuple(model.input_shape) if input_shape is None else tuple(input_shape),
            list(model.class_names) if class_names is None else list(class_names),
            model.mean if mean is None else mean,
            model.std if std is None else std,
            model.meta,
        )
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"export expected a clearconv.Model or nn.Module, got {type(model).__name__}"
        )
    if input_shape is None:
        raise ValueError(
            "export of a bare Module needs input_shape=(C, H, W) or (C, L) (one sample's shape)"
        )
    return model, tuple(input_shape), class_names, mean, std, {}


def to_onnx(
    model: Any,
    input_shape: tuple[int, ...] | None = None,
    *,
    class_names: list[str] | None = None,
    mean: Any = None,
    std: Any = None,
    opset: int = OPSET,
) -> Any:
    """The ONNX ``ModelProto`` of a clearconv model (nothing written).

    Parameters
    ----------
    model : clearconv.Model or nn.Module
        A Model carries its input shape, class names and normalisation; a bare
        Module needs ``input_shape``.
    input_shape : tuple of int, optional
        One sample's shape, ``(C, H, W)`` or ``(C, L)`` (or ``(F,)`` for a bare
        Module of Linear layers); the batch is dynamic.
    class_names : list of str, optional
        Default: the Model's, else ``"0" .. "K-1"`` for a 2-D output.
    mean, std : sequence of float, optional
        Per-channel normalisation a client applies before the graph (metadata only).
    opset : int, default 17
        From 13 (per-axis Softmax) to the newest the installed ``onnx`` knows.

    Returns
    -------
    onnx.ModelProto
        Passes ``onnx.checker.check_model``.

    Raises
    ------
    TypeError
        For a layer with no ONNX mapping (named with its path).
    ValueError
        For a bad opset or input shape, BatchNorm without running statistics,
        Flatten over the batch dimension, or an adaptive pooling whose bins are
        uneven.
    ImportError
        When ``onnx`` is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0)), nn.ReLU(),
    ...                     nn.Flatten(), nn.Linear(8, 2, rng=np.random.default_rng(1)))
    >>> proto = to_onnx(net, (1, 4, 4))
    >>> [n.op_type for n in proto.graph.node], proto.opset_import[0].version
    (['Conv', 'Relu', 'Flatten', 'Gemm'], 17)
    """
    onnx = require_onnx()
    _check_opset(onnx, opset)
    net, shape, names, mean, std, meta = _unwrap(model, input_shape, class_names, mean, std)
    shape = _check_shape(shape)
    graph, out_shape = _graph(onnx, net, shape)
    if names is None:
        names = [str(i) for i in range(out_shape[1])] if len(out_shape) == 2 else []
    opsets = [onnx.helper.make_opsetid("", int(opset))]
    proto = onnx.helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="clearconv",
        ir_version=onnx.helper.find_min_ir_version_for(opsets),
    )
    from clearconv import __version__

    proto.producer_version = __version__
    onnx.helper.set_model_props(proto, _metadata(names, mean, std, shape, meta))
    onnx.checker.check_model(proto)
    return proto


def _graph(onnx: Any, net: nn.Module, shape: tuple[int, ...]) -> tuple[Any, tuple[int, ...]]:
    """The ``GraphProto`` of ``net`` on input ``"input"`` (N, *shape), and its output shape."""
    g = _Graph(onnx)
    g._names.add(INPUT_NAME)
    y, out_shape = _emit(g, net, INPUT_NAME, (1, *shape), "")
    if y == INPUT_NAME:  # the net is the identity: still give the output its name
        g.nodes.append(onnx.helper.make_node("Identity", [y], [OUTPUT_NAME], name="output"))
    else:  # rename the last tensor (produced by exactly one node) to "logits"
        for node in g.nodes:
            node.input[:] = [OUTPUT_NAME if t == y else t for t in node.input]
            node.output[:] = [OUTPUT_NAME if t == y else t for t in node.output]
    elem = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes,
        "clearconv",
        [onnx.helper.make_tensor_value_info(INPUT_NAME, elem, [BATCH_DIM, *shape])],
        [onnx.helper.make_tensor_value_info(OUTPUT_NAME, elem, [BATCH_DIM, *out_shape[1:]])],
        initializer=g.inits,
    )
    return graph, out_shape


def _check_opset(onnx: Any, opset: Any) -> None:
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"export: opset must be an int, got {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"export: opset must be in [{MIN_OPSET}, {newest}], got {opset}")


def _check_shape(shape: tuple[Any, ...]) -> tuple[int, ...]:
    if not shape or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(
            f"export: input_shape must be one sample's shape, e.g. (C, H, W), of positive "
            f"ints, got {shape}"
        )
    return tuple(int(s) for s in shape)


def _metadata(names, mean, std, shape: tuple[int, ...], meta: Any) -> dict[str, str]:
    """The ``metadata_props`` that let :func:`clearconv.onnx.load` restore a Model."""
    norm = {
        "mean": None if mean is None else [float(v) for v in np.ravel(mean)],
        "std": None if std is None else [float(v) for v in np.ravel(std)],
    }
    props = {
        META_CLASS_NAMES: json.dumps(list(names)),
        META_NORMALIZATION: json.dumps(norm),
        META_INPUT_SHAPE: json.dumps(list(shape)),
    }
    try:
        props[META_MODEL] = json.dumps(meta)
    except (TypeError, ValueError):  # training metadata that is not JSON: leave it out
        pass
    return props


def export(
    model: Any,
    path: str | os.PathLike,
    *,
    input_shape: tuple[int, ...] | None = None,
    class_names: list[str] | None = None,
    mean: Any = None,
    std: Any = None,
    opset: int = OPSET,
) -> Path:
    """Write ``model`` as an ONNX file (see :func:`to_onnx` for the arguments).

    The file is written to a temporary name in the same folder, then renamed,
    so a failed export never leaves a truncated file behind.

    Returns
    -------
    pathlib.Path
        ``path``.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, rng=np.random.default_rng(0)))
    >>> with tempfile.TemporaryDirectory() as d:
    ...     p = export(net, os.path.join(d, "net.onnx"), input_shape=(1, 2, 2))
    ...     p.stat().st_size > 0
    True
    """
    proto = to_onnx(model, input_shape, class_names=class_names, mean=mean, std=std, opset=opset)
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_bytes(proto.SerializeToString())
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
