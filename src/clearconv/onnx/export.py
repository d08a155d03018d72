"""clearconv -> ONNX: every layer of the engine as standard operators (opset 17 by default).

The graph has one input ``"input"`` of shape ``(N, *input_shape)`` with a
dynamic batch ``N`` and one output ``"logits"``. Layers map one to one:

========================  ==============================================
clearconv                   ONNX
========================  ==============================================
Conv1d / Conv2d           Conv (explicit ``pads``; 'same' as its pads)
MaxPool1d / MaxPool2d     MaxPool (pads, dilations, ceil_mode), + Slice (see _pool_window)
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
ConvTranspose2d,          see :mod:`clearconv.onnx._segment`
Upsample, Concat,
Identity
========================  ==============================================

BatchNorm's training-only settings ``momentum=None`` and ``affine=False`` have
no ONNX form: they come back from :func:`clearconv.onnx.load` as momentum 0.1
and ``affine=True`` with weight 1 and bias 0 (the same outputs).

Weights are written as float32 initializers named by their ``state_dict``
keys (``"0.weight"``); nodes are named by the layer's path (``"3.block.0"``).
Class names, normalisation and the input shape go into ``metadata_props`` as
JSON strings, so :func:`clearconv.onnx.load` restores the whole :class:`Model`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from clearconv import nn
from clearconv.engine.pool import pool_out_size
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


def _spatial_pads(module: Any) -> list[tuple[int, int]]:
    """(begin, end) padding per spatial axis of a conv or pool layer."""
    nd = len(module.kernel_size)
    if module.padding == "valid":
        return [(0, 0)] * nd
    if module.padding == "same":  # as PyTorch: total d*(k-1), the odd pixel at the end
        totals = [d * (k - 1) for k, d in zip(module.kernel_size, module.dilation)]
        return [(t // 2, t - t // 2) for t in totals]
    return [(int(p), int(p)) for p in module.padding]


def _onnx_pads(pairs: list[tuple[int, int]]) -> list[int]:
    """[(b1, e1), (b2, e2)] -> ONNX's [b1, b2, e1, e2]."""
    return [b for b, _ in pairs] + [e for _, e in pairs]


def _pool_window(
    m: Any, shape: tuple[int, ...]
) -> tuple[int, list[tuple[int, int]], list[int] | None]:
    """``ceil_mode``, pads and a crop for a pool, so that ONNX's sizes equal PyTorch's.

    PyTorch's ceil mode drops a last window that would start in the end padding;
    the ONNX spec (and its shape inference) does not. Where the two disagree on
    every axis, floor mode gives PyTorch's count exactly. Where they disagree
    on some axes only, the pool runs in ceil mode and a Slice keeps PyTorch's
    count (the third value; None when no Slice is needed). Padding the end
    instead would need pads as wide as a dilated kernel, which onnxruntime
    refuses. An average that counts padding has no equivalent there.
    """
    pairs = _spatial_pads(m)
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
    if not isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)) and m.count_include_pad:
        raise ValueError(
            f"cannot export {m!r} for input {shape[2:]}: with ceil_mode and "
            "count_include_pad its border windows have no ONNX equivalent "
            "(use count_include_pad=False or an input size where ceil_mode is exact)"
        )
    return 1, pairs, [want for _, want, _ in axes]


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


def _emit(g: _Graph, m: nn.Module, x: str, shape: tuple[int, ...], path: str):
    """Append the nodes of ``m`` applied to tensor ``x`` of ``shape`` (batch 1).

    Returns the output tensor name and its shape.
    """
    out_shape = tuple(m.output_shape(shape))
    name = path.rstrip(".")
    pre = path  # initializer names: the state_dict keys, "0.weight"
    if isinstance(m, nn.Sequential):
        for i, child in enumerate(m):
            x, shape = _emit(g, child, x, shape, f"{path}{i}.")
        return x, shape
    if isinstance(m, nn.Residual):
        y, _ = _emit(g, m.block, x, shape, f"{path}block.")
        shortcut = getattr(m, "shortcut", None)  # a projection: shortcut(x) + block(x)
        skip = x if shortcut is None else _emit(g, shortcut, x, shape, f"{path}shortcut.")[0]
        return g.node("Add", [skip, y], f"{name}.add" if name else "add"), out_shape
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        inputs = [x, g.const(pre + "weight", _param(m, "weight"))]
        if m.bias is not None:
            inputs.append(g.const(pre + "bias", _param(m, "bias")))
        y = g.node(
            "Conv",
            inputs,
            name,
            kernel_shape=list(m.kernel_size),
            strides=list(m.stride),
            dilations=list(m.dilation),
            pads=_onnx_pads(_spatial_pads(m)),
            group=1,
        )
        return y, out_shape
    if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
        ceil, pads, keep = _pool_window(m, shape)
        y = g.node(
            "MaxPool",
            [x],
            name,
            kernel_shape=list(m.kernel_size),
            strides=list(m.stride),
            dilations=list(m.dilation),
            pads=_onnx_pads(pads),
            ceil_mode=ceil,
        )
        return _crop(g, y, name, keep), out_shape
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d)):
        ceil, pads, keep = _pool_window(m, shape)
        y = g.node(
            "AveragePool",
            [x],
            name,
            kernel_shape=list(m.kernel_size),
            strides=list(m.stride),
            pads=_onnx_pads(pads),
            ceil_mode=ceil,
            count_include_pad=int(m.count_include_pad),
        )
        return _crop(g, y, name, keep), out_shape
    if isinstance(m, nn.AdaptiveAvgPool2d):
        (h, w), (oh, ow) = shape[2:], out_shape[2:]
        if (oh, ow) == (1, 1):
            return g.node("GlobalAveragePool", [x], name), out_shape
        if (oh, ow) == (h, w):
            return x, out_shape  # every bin is one pixel: the identity
        if h % oh or w % ow:
            raise ValueError(
                f"cannot export {m!r} at {name!r}: input {h}x{w} does not divide evenly into "
                f"{oh}x{ow} bins, and ONNX has no adaptive pooling (use an input size that "
                "is a multiple of the output size, or output_size=1)"
            )
        k = [h // oh, w // ow]
        return g.node("AveragePool", [x], name, kernel_shape=k, strides=k), out_shape
    if isinstance(m, nn.ReLU):
        return g.node("Relu", [x], name), out_shape
    if isinstance(m, nn.LeakyReLU):
        return g.node("LeakyRelu", [x], name, alpha=float(m.negative_slope)), out_shape
    if isinstance(m, nn.Sigmoid):
        return g.node("Sigmoid", [x], name), out_shape
    if isinstance(m, nn.Tanh):
        return g.node("Tanh", [x], name), out_shape
    if isinstance(m, nn.Softmax):
        axis = m._axis_for(len(shape))
        return g.node("Softmax", [x], name, axis=int(axis)), out_shape
    if isinstance(m, nn.Flatten):
        rank = len(shape)
        start, end = m.start_dim % rank, m.end_dim % rank
        if start == 0:
            raise ValueError(
                f"cannot export {m!r} at {name!r}: flattening the batch dimension leaves "
                "the graph without a batch axis"
            )
        if start == end:
            return x, out_shape  # one dim "flattened" into itself: nothing to do
        if start == 1 and end == rank - 1:
            return g.node("Flatten", [x], name, axis=1), out_shape
        # Reshape to the known per-sample dims; 0 copies the (dynamic) batch.
        target = [0, *out_shape[1:]]
        s = g.const(pre + "shape", target, np.int64)
        return g.node("Reshape", [x, s], name), out_shape
    if isinstance(m, nn.Linear):
        weight, b = np.asarray(m.weight.data), _param(m, "bias")
        if len(shape) == 2:
            inputs = [x, g.const(pre + "weight", weight)]
            if b is not None:
                inputs.append(g.const(pre + "bias", b))
            return g.node("Gemm", inputs, name, transB=1), out_shape
        # (N, *, in) @ (in, out): Gemm takes matrices only.
        y = g.node("MatMul", [x, g.const(pre + "weight_t", weight.T)], name)
        if b is not None:
            y = g.node("Add", [y, g.const(pre + "bias", b)], f"{name}.bias")
        return y, out_shape
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if m.running_mean is None:
            raise ValueError(
                f"cannot export {m!r} at {name!r}: it keeps no running statistics "
                "(track_running_stats=False), so inference depends on the batch"
            )
        c = m.num_features
        scale = _param(m, "weight") if m.weight is not None else np.ones(c)
        bias = _param(m, "bias") if m.bias is not None else np.zeros(c)
        inputs = [
            x,
            g.const(pre + "weight", scale),
            g.const(pre + "bias", bias),
            g.const(pre + "running_mean", m.running_mean),
            g.const(pre + "running_var", m.running_var),
        ]
        # ONNX's momentum weighs the old statistic: 1 - PyTorch's.
        mom = 0.9 if m.momentum is None else 1.0 - float(m.momentum)
        y = g.node("BatchNormalization", inputs, name, epsilon=float(m.eps), momentum=mom)
        return y, out_shape
    if isinstance(m, nn.Dropout):
        ratio = g.const(pre + "ratio", np.float32(m.p))
        return g.node("Dropout", [x, ratio], name), out_shape
    # -- segmentation layers and branches: clearconv.onnx._segment -----------
    from clearconv.onnx import _segment

    done = _segment.emit(g, m, x, shape, path, _emit)
    if done is not None:
        return done
    raise TypeError(
        f"cannot export layer {type(m).__name__} at {name or 'the top'!r}: it has no "
        "ONNX mapping (supported: Sequential, Residual, Conv1d/2d, MaxPool1d/2d, AvgPool1d/2d, "
        "AdaptiveAvgPool2d, ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, Flatten, Linear, "
        "BatchNorm1d/2d, Dropout, ConvTranspose2d, Upsample, Concat, Identity)"
    )


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
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"export: opset must be an int, got {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"export: opset must be in [{MIN_OPSET}, {newest}], got {opset}")
    net, shape, names, mean, std, meta = _unwrap(model, input_shape, class_names, mean, std)
    if not shape or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(
            f"export: input_shape must be one sample's shape, e.g. (C, H, W), of positive "
            f"ints, got {shape}"
        )
    shape = tuple(int(s) for s in shape)

    g = _Graph(onnx)
    g._names.add(INPUT_NAME)
    y, out_shape = _emit(g, net, INPUT_NAME, (1, *shape), "")
    if y == INPUT_NAME:  # the net is the identity: still give the output its name
        g.nodes.append(onnx.helper.make_node("Identity", [y], [OUTPUT_NAME], name="output"))
    else:  # rename the last tensor (produced by exactly one node) to "logits"
        for node in g.nodes:
            node.input[:] = [OUTPUT_NAME if t == y else t for t in node.input]
            node.output[:] = [OUTPUT_NAME if t == y else t for t in node.output]
    if names is None:
        names = [str(i) for i in range(out_shape[1])] if len(out_shape) == 2 else []

    elem = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes,
        "clearconv",
        [onnx.helper.make_tensor_value_info(INPUT_NAME, elem, [BATCH_DIM, *shape])],
        [onnx.helper.make_tensor_value_info(OUTPUT_NAME, elem, [BATCH_DIM, *out_shape[1:]])],
        initializer=g.inits,
    )
    opsets = [onnx.helper.make_opsetid("", int(opset))]
    proto = onnx.helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="clearconv",
        ir_version=onnx.helper.find_min_ir_version_for(opsets),
    )
    from clearconv import __version__

    proto.producer_version = __version__
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
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto)
    return proto


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
