"""The importer's operator table: each ONNX operator, the attributes it accepts, its handler.

A handler takes the importer, the node and its attributes, and returns one
value per node output (see :mod:`clearconv.onnx.graph` for what a value is):
most append one layer to the activation they read. A handler that cannot map
its node exactly raises :class:`~clearconv.onnx.shapes.Refuse` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from clearconv import nn
from clearconv.engine.pool import pool_out_size
from clearconv.onnx import _segment
from clearconv.onnx.graph import Data, Merge, N, f32, sym
from clearconv.onnx.shapes import (
    Refuse,
    conv_padding,
    flatten_span,
    pads_from_attrs,
    reshape_target,
    symmetric,
)

if TYPE_CHECKING:
    from clearconv.onnx.load import Importer

Handler = Callable[["Importer", Any, dict[str, Any]], list[Any]]
Check = Callable[[Any], bool] | None  # an attribute's accepted values; None: any


@dataclass(frozen=True)
class Op:
    """One supported operator: its handler and the attributes it accepts.

    ``first_output_only``: the operator has training outputs (BatchNorm's
    statistics, Dropout's mask, MaxPool's indices) that no layer computes, so
    a graph that reads them is refused.
    """

    handler: Handler
    attrs: dict[str, Check] = field(default_factory=dict)
    first_output_only: bool = False


def _is(*values: Any) -> Callable[[Any], bool]:
    return lambda v: v in values


def _ones(v: Any) -> bool:
    return all(int(x) == 1 for x in v)


_AUTO_PAD = ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER")


# -- layers with weights --------------------------------------------------------
@dataclass(frozen=True)
class Padded:
    """An activation zero-padded by a Pad node, waiting for the Conv (or the
    average pool counting padding) that takes the padding as its own."""

    x: Data
    pairs: list[tuple[int, int]]  # (begin, end) per spatial axis


def pad(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    x = imp.data(node)
    # pads and value: attributes before opset 11, inputs after
    pads = a.get("pads", imp.const(node, 1, "pads", required=False))
    value = a.get("value", imp.const(node, 2, "constant_value", required=False))
    if a.get("mode", "constant") != "constant" or (value is not None and float(np.ravel(value)[0])):
        raise Refuse("only zero padding (mode constant, value 0) is supported")
    rank = len(x.shape)
    p = [int(v) for v in np.ravel(pads)] if pads is not None else [0] * 2 * rank
    if len(p) != 2 * rank or any(v < 0 for v in p) or any(p[i] or p[rank + i] for i in (0, 1)):
        raise Refuse(f"pads={p}: only non-negative padding of the spatial axes")
    return [Padded(x, list(zip(p[2:rank], p[rank + 2 :])))]


def _input_and_pads(
    imp: Importer, node: Any, a: dict[str, Any]
) -> tuple[Data, list[tuple[int, int]] | None]:
    """The activation a Conv or pool reads and the padding a Pad before it added."""
    v = imp.values.get(node.input[0])
    if isinstance(v, Padded):
        if imp.consumers.get(node.input[0], 0) != 1:
            raise Refuse("a padded activation read by several nodes")
        if a.get("auto_pad", "NOTSET") != "NOTSET":
            raise Refuse("a Pad before a node with auto_pad")
        return v.x, v.pairs
    return imp.data(node), None


def _add_pads(pairs, extra):
    if extra is None:
        return pairs
    return [(b + eb, e + ee) for (b, e), (eb, ee) in zip(pairs, extra)]


def conv(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    x, extra = _input_and_pads(imp, node, a)
    w = imp.const(node, 1, "the weight W")
    b = imp.const(node, 2, "the bias B", required=False)
    nd = w.ndim - 2
    if nd not in (1, 2) or len(x.shape) != nd + 2:
        raise Refuse(f"a {nd}-D convolution of input {x.shape}; only 1-D and 2-D")
    groups = int(a.get("group", 1))
    if w.shape[1] * groups != x.shape[1] or w.shape[0] % groups:
        raise Refuse(f"weight {w.shape} with group={groups} does not match {x.shape[1]} channels")
    k = list(w.shape[2:])
    if list(a.get("kernel_shape", k)) != k:
        raise Refuse(f"kernel_shape={a['kernel_shape']} but the weight is {w.shape}")
    s = [int(v) for v in a.get("strides", [1] * nd)]
    d = [int(v) for v in a.get("dilations", [1] * nd)]
    cfg = {
        "type": f"Conv{nd}d",
        "in_channels": int(w.shape[1]) * groups,
        "out_channels": int(w.shape[0]),
        "kernel_size": k,
        "stride": s,
        "padding": conv_padding(
            _add_pads(pads_from_attrs(a, x.shape[2:], k, s, d), extra), k, s, d
        ),
        "dilation": d,
        "groups": groups,
        "bias": b is not None,
    }
    state = {"weight": w} if b is None else {"weight": w, "bias": b}
    return [imp.append(x, imp.layer(cfg, state))]


def _linear(imp: Importer, x: Data, w: np.ndarray, b: np.ndarray | None) -> Data:
    """Linear with weight ``w`` (out, in)."""
    out_f, in_f = w.shape
    if x.shape[-1] != in_f:
        raise Refuse(f"weight {w.shape} does not match input {x.shape}")
    cfg = {"type": "Linear", "in_features": in_f, "out_features": out_f, "bias": b is not None}
    state = {"weight": w} if b is None else {"weight": w, "bias": b}
    return imp.append(x, imp.layer(cfg, state))


def gemm(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    x = imp.data(node)
    bmat = imp.const(node, 1, "B")
    c = imp.const(node, 2, "C", required=False)
    if len(x.shape) != 2 or bmat.ndim != 2:
        raise Refuse(f"Gemm of {x.shape} and {bmat.shape}; need matrices")
    w = bmat if a.get("transB", 0) else bmat.T
    bias = None
    if c is not None:
        if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
            raise Refuse(f"C of shape {c.shape} is not a bias of {w.shape[0]} features")
        bias = np.broadcast_to(c.reshape(-1), (w.shape[0],))
    return [_linear(imp, x, w, bias)]


def matmul(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    x = imp.data(node)
    bmat = imp.const(node, 1, "the weight (second input)")
    if bmat.ndim != 2:
        raise Refuse(f"weight of shape {bmat.shape}; need a matrix")
    return [_linear(imp, x, bmat.T, None)]


def batch_norm(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    x = imp.data(node)
    scale, bias, mean, var = (
        imp.const(node, i, what) for i, what in enumerate(("scale", "B", "mean", "var"), 1)
    )
    rank = len(x.shape)
    if rank not in (2, 3, 4):
        raise Refuse(f"input of shape {x.shape}")
    # ONNX's momentum weighs the old statistic: PyTorch's is 1 minus it.
    momentum = min(max(round(1.0 - f32(a.get("momentum", 0.9)), 7), 0.0), 1.0)
    cfg = {
        "type": "BatchNorm2d" if rank == 4 else "BatchNorm1d",
        "num_features": int(x.shape[1]),
        "eps": f32(a.get("epsilon", 1e-5)),
        "momentum": momentum,
    }
    state = {
        "weight": scale,
        "bias": bias,
        "running_mean": mean,
        "running_var": var,
        "num_batches_tracked": np.array(0, dtype=np.int64),
    }
    return [imp.append(x, imp.layer(cfg, state)), None, None][: len(node.output)]


# -- pooling ------------------------------------------------------------------------
def _pool(imp: Importer, node: Any, a: dict[str, Any], is_max: bool) -> Data:
    x, extra = _input_and_pads(imp, node, a)
    if extra is not None and (is_max or not a.get("count_include_pad", 0)):
        raise Refuse("a zero Pad before a pool that does not count padding as zeros")
    k = [int(v) for v in a.get("kernel_shape", [])]
    nd = len(k)
    if nd not in (1, 2) or len(x.shape) != nd + 2:
        raise Refuse(f"a {nd}-D pool of input {x.shape}; only 1-D and 2-D")
    s = [int(v) for v in a.get("strides", [1] * nd)]
    d = [int(v) for v in a.get("dilations", [1] * nd)]
    pairs = _add_pads(pads_from_attrs(a, x.shape[2:], k, s, d), extra)
    ceil = bool(a.get("ceil_mode", 0))
    if _one_window(x.shape[2:], k, d, pairs) and (is_max or not a.get("count_include_pad", 0)):
        # a window as large as the input plus its end padding (Caffe's global pool)
        k, pairs = list(x.shape[2:]), [(0, 0)] * nd
    if any(b != e for b, e in pairs) and not ceil:
        # Caffe's converters write ceil-mode pooling as floor mode with extra end pads.
        ceil = _end_pads_are_ceil(
            x.shape[2:], k, s, d, pairs, is_max or not a.get("count_include_pad", 0)
        )
        pairs = [(b, b) for b, _ in pairs]
    padding = symmetric(pairs, "clearconv's pooling")
    cfg: dict[str, Any] = {
        "type": f"{'MaxPool' if is_max else 'AvgPool'}{nd}d",
        "kernel_size": k,
        "stride": s,
        "padding": list(padding),
        "ceil_mode": ceil,
    }
    if is_max:
        cfg["dilation"] = d
    else:
        cfg["count_include_pad"] = bool(a.get("count_include_pad", 0))
    return imp.append(x, imp.layer(cfg))


def _one_window(sizes, k, d, pairs) -> bool:
    """True when the pool has one window per axis covering the input and only end padding."""
    return all(
        b == 0 and size <= d_ * (k_ - 1) + 1 <= size + e
        for size, k_, d_, (b, e) in zip(sizes, k, d, pairs)
    ) and any(e for _, e in pairs)


def _end_pads_are_ceil(sizes, k, s, d, pairs, excludes_pad: bool) -> bool:
    """True when extra end pads give ceil mode's windows (the same count, each window
    starting inside the input, the padding not counted); else Refuse."""
    for size, k_, s_, d_, (b, e) in zip(sizes, k, s, d, pairs):
        span = size - d_ * (k_ - 1) - 1
        floor_end = (span + b + e) // s_ + 1  # ONNX's count with the end pads
        if e < b or not excludes_pad or floor_end != pool_out_size(size, k_, s_, b, d_, True):
            raise Refuse(
                f"asymmetric pads {pairs} (begin, end); clearconv's pooling pads both sides alike"
            )
    return True


def max_pool(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    return [_pool(imp, node, a, True), None]


def average_pool(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    return [_pool(imp, node, a, False)]


def global_average_pool(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    x = imp.data(node)
    if len(x.shape) == 4:
        return [imp.append(x, imp.layer({"type": "AdaptiveAvgPool2d", "output_size": 1}))]
    if len(x.shape) == 3:
        return [imp.append(x, imp.layer({"type": "AvgPool1d", "kernel_size": x.shape[2]}))]
    raise Refuse(f"input of shape {x.shape}; need (N, C, H, W) or (N, C, L)")


# -- activations and reshapes ----------------------------------------------------
def _simple(cfg: dict[str, Any]) -> Handler:
    """A handler that appends the layer ``cfg`` (no settings read from the node)."""
    return lambda imp, node, a: [imp.append(imp.data(node), imp.layer(cfg))]


def leaky_relu(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    cfg = {"type": "LeakyReLU", "negative_slope": f32(a.get("alpha", 0.01))}
    return [imp.append(imp.data(node), imp.layer(cfg))]


def softmax(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    x = imp.data(node)
    rank = len(x.shape)
    axis = int(a.get("axis", -1 if imp.opset >= 13 else 1)) % rank
    if imp.opset < 13 and axis != rank - 1:
        # Before opset 13 Softmax normalised all dims from `axis` on together:
        # one softmax when only one of them is longer than 1 (SqueezeNet's (N, K, 1, 1)).
        long_ = [i for i in range(axis, rank) if x.shape[i] != 1]
        if len(long_) > 1:
            raise Refuse(f"opset {imp.opset} Softmax over the flattened dims {axis}..{rank - 1}")
        axis = long_[0] if long_ else axis
    return [imp.append(x, imp.layer({"type": "Softmax", "dim": axis}))]


def flatten(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    x = imp.data(node)
    axis = int(a.get("axis", 1))
    if (axis + len(x.shape) if axis < 0 else axis) != 1:
        # ONNX Flatten always makes a matrix: any other axis folds the batch in.
        raise Refuse(f"axis={axis} merges the batch dimension with others")
    return [imp.append(x, imp.layer({"type": "Flatten"}))]


def reshape(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    v = imp.values.get(node.input[0])
    target = imp.const(node, 1, "the shape")
    t = [v if isinstance(v, str) else int(v) for v in np.asarray(target).reshape(-1)]
    if isinstance(v, Split):  # the end of a channel shuffle: back to (N, C, *)
        x = v.x
        if not v.swapped or reshape_target(x.shape, t, imp.batch, N) != x.shape:
            raise Refuse("a reshape of split channels that is not the end of a channel shuffle")
        return [imp.append(x, imp.layer({"type": "ChannelShuffle", "groups": v.groups}))]
    x = imp.data(node)
    out = reshape_target(x.shape, t, imp.batch, N)
    if out == x.shape:
        return [x]
    if len(out) == len(x.shape) + 1 and out[1] * out[2] == x.shape[1] and out[3:] == x.shape[2:]:
        return [Split(x, int(out[1]))]  # (N, C, *) -> (N, g, C/g, *): a channel shuffle begins
    start, end = flatten_span(x.shape, out)
    cfg = {"type": "Flatten", "start_dim": start, "end_dim": end - len(x.shape)}
    return [imp.append(x, imp.layer(cfg))]


def dropout(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    x = imp.data(node)
    ratio = imp.const(node, 1, "ratio", required=False)
    mode = imp.const(node, 2, "training_mode", required=False)
    if mode is not None and bool(np.asarray(mode)):
        raise Refuse("training_mode=True (dropout at inference)")
    p = f32(a.get("ratio", 0.5) if ratio is None else np.asarray(ratio))
    outs = [x if p == 0.0 else imp.append(x, imp.layer({"type": "Dropout", "p": p}))]
    return outs + [None] * (len(node.output) - 1)


def identity(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    return [imp.values.get(node.input[0])]


# -- merges: Concat, Add and Sum of activations ----------------------------------
def _merge(kind: str, xs: list[Data], axis: int = 1) -> Data:
    """The activation where ``xs`` meet (see :mod:`clearconv.onnx.assemble`)."""
    shapes = [x.shape for x in xs]
    rank = len(shapes[0])
    if any(len(s) != rank for s in shapes):
        raise Refuse(f"inputs of different ranks {shapes}")
    if kind == "add":
        if any(s != shapes[0] for s in shapes):
            raise Refuse(
                f"an Add of activations of shapes {shapes} (broadcasting is not supported)"
            )
        return Data((shapes[0],), (), Merge("add", tuple(xs)))
    ax = axis % rank if -rank <= axis < rank else -1
    if ax < 1:
        raise Refuse(
            f"a Concat along axis {axis} of {rank}-d activations; need a dim after the batch"
        )
    if any(s[:ax] + s[ax + 1 :] != shapes[0][:ax] + shapes[0][ax + 1 :] for s in shapes):
        raise Refuse(f"a Concat along axis {ax} of shapes {shapes}")
    out = (*shapes[0][:ax], sum(s[ax] for s in shapes), *shapes[0][ax + 1 :])
    return Data((out,), (), Merge("concat", tuple(xs), ax))


def add(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    v0, v1 = (imp.values.get(t) for t in node.input[:2])
    if isinstance(v0, Data) and isinstance(v1, Data):
        return [_merge("add", [v0, v1])]
    if isinstance(v0, Data):
        return [_affine(imp, v0, None, np.asarray(v1), node.input[0], "an Add")]
    if isinstance(v1, Data):
        return [_affine(imp, v1, None, np.asarray(v0), node.input[1], "an Add")]
    raise Refuse("an Add of two constants")


def mul(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    v0, v1 = (imp.values.get(t) for t in node.input[:2])
    if isinstance(v0, Data) and not isinstance(v1, Data):
        return [_affine(imp, v0, np.asarray(v1), None, node.input[0], "a Mul")]
    if isinstance(v1, Data) and not isinstance(v0, Data):
        return [_affine(imp, v1, np.asarray(v0), None, node.input[1], "a Mul")]
    raise Refuse("a Mul of two activations (only a per-channel scale by a constant is supported)")


def sum_(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    xs = [imp.data(node, i) for i in range(len(node.input))]
    return [xs[0] if len(xs) == 1 else _merge("add", xs)]


def concat(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    vals = [imp.values.get(t) for t in node.input]
    if any(isinstance(v, Data) for v in vals):
        if not all(isinstance(v, Data) for v in vals):
            raise Refuse("a Concat of activations and constants")
        xs = [v for v in vals if isinstance(v, Data)]
        return [xs[0] if len(xs) == 1 else _merge("concat", xs, int(a.get("axis", 1)))]
    return [sym(np.concatenate([np.asarray(v) for v in vals], axis=a.get("axis", 0)))]


def _channel_vector(c: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray | None:
    """A constant that broadcasts along ``axis`` of ``shape`` only, as one value per
    channel; None when it varies along another dim."""
    rank = len(shape)
    if c.ndim > rank:
        return None
    full = c.reshape((1,) * (rank - c.ndim) + c.shape)
    n = shape[axis]
    dims: tuple[int, ...] = full.shape
    if not all(d in (1, n) if i == axis else d == 1 for i, d in enumerate(dims)):
        return None
    return np.broadcast_to(full.reshape(-1), (n,)).astype(np.float32)


def _affine(
    imp: Importer,
    x: Data,
    scale: np.ndarray | None,
    shift: np.ndarray | None,
    tensor: str,
    what: str,
) -> Data:
    """``x * scale + shift`` per channel, folded into the layer that made ``x``
    (a Conv, Linear or BatchNorm read by nothing else), else as a BatchNorm-like
    affine layer (mean 0, variance ``1 - eps``: ``y = x * weight + bias``)."""
    last = x.layers[-1] if x.layers else None
    rank = len(x.shape)
    axis = rank - 1 if isinstance(last, nn.Linear) else 1
    c = scale if scale is not None else shift
    vec = None if rank < 2 or c is None else _channel_vector(np.asarray(c), x.shape, axis)
    if vec is None:
        raise Refuse(
            f"{what} of a constant that is not the bias of a layer or a per-channel "
            f"scale or shift: a constant of shape {np.shape(c)} on activations {x.shape}"  # type: ignore[arg-type]
        )
    n = x.shape[axis]
    s = vec if scale is not None else np.ones(n, np.float32)
    t = vec if shift is not None else np.zeros(n, np.float32)
    alone = imp.consumers.get(tensor, 0) == 1
    if alone and isinstance(last, (nn.Linear, nn.Conv1d, nn.Conv2d)):
        w = np.asarray(last.weight.data)
        b = np.zeros(n, np.float32) if last.bias is None else np.asarray(last.bias.data)
        cfg = nn.to_config(last)
        cfg["bias"] = True
        w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
        layer = imp.layer(cfg, {"weight": w, "bias": b * s + t})
        return Data(x.shapes, (*x.layers[:-1], layer), x.origin)
    if alone and isinstance(last, (nn.BatchNorm1d, nn.BatchNorm2d)) and last.weight is not None:
        state = dict(last.state_dict())
        state["weight"] = np.asarray(state["weight"]) * s
        state["bias"] = np.asarray(state["bias"]) * s + t
        layer = imp.layer(nn.to_config(last), state)
        return Data(x.shapes, (*x.layers[:-1], layer), x.origin)
    if rank not in (2, 3, 4):
        raise Refuse(f"{what} of a per-channel constant on activations {x.shape}")
    eps = 1e-5
    cfg = {"type": "BatchNorm2d" if rank == 4 else "BatchNorm1d", "num_features": n, "eps": eps}
    state = {
        "weight": s,
        "bias": t,
        "running_mean": np.zeros(n, np.float32),
        "running_var": np.full(n, 1.0 - eps, np.float32),
        "num_batches_tracked": np.array(0, dtype=np.int64),
    }
    return imp.append(x, imp.layer(cfg, state))


# -- classic layers: LRN, Clip, channel shuffles, crops ----------------------------
def lrn(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    x = imp.data(node)
    size = int(a.get("size", 0))
    if size < 1:
        raise Refuse(f"size={size}; need a positive window")
    if size % 2 == 0:
        # ONNX's window is c - (size-1)//2 .. c + size//2, PyTorch's the mirror image.
        raise Refuse(f"size={size}: for even sizes ONNX's window differs from PyTorch's")
    cfg = {
        "type": "LocalResponseNorm",
        "size": size,
        "alpha": f32(a.get("alpha", 1e-4)),
        "beta": f32(a.get("beta", 0.75)),
        "k": f32(a.get("bias", 1.0)),
    }
    return [imp.append(x, imp.layer(cfg))]


def clip(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    x = imp.data(node)
    lo = imp.const(node, 1, "min", required=False)  # inputs from opset 11, attributes before
    hi = imp.const(node, 2, "max", required=False)
    lo_v = float(a.get("min", -np.inf) if lo is None else np.asarray(lo))
    hi_v = float(a.get("max", np.inf) if hi is None else np.asarray(hi))
    if (lo_v, hi_v) == (0.0, 6.0):
        return [imp.append(x, imp.layer({"type": "ReLU6"}))]
    if lo_v == 0.0 and hi_v == np.inf:
        return [imp.append(x, imp.layer({"type": "ReLU"}))]
    raise Refuse(f"Clip to [{lo_v}, {hi_v}]; only [0, 6] (ReLU6) and [0, inf) (ReLU)")


@dataclass(frozen=True)
class Split:
    """An activation ``(N, C, *)`` viewed as ``(N, g, C/g, *)``; ``swapped`` once
    transposed to ``(N, C/g, g, *)``: the middle of a channel shuffle."""

    x: Data
    groups: int
    swapped: bool = False


def transpose(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    v = imp.values.get(node.input[0])
    if isinstance(v, Split) and not v.swapped:
        rank = len(v.x.shape) + 1
        if list(a.get("perm", [])) == [0, 2, 1, *range(3, rank)]:
            return [Split(v.x, v.groups, True)]
    raise Refuse(
        "a Transpose that is not the middle of a channel shuffle "
        "(Reshape (N, g, C/g, H, W) -> Transpose(0, 2, 1, 3, 4) -> Reshape (N, C, H, W))"
    )


def slice_data(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    """A Slice of activations that keeps them whole: the crop the exporter writes after
    a ceil-mode pool, which clearconv's pool (PyTorch's rule) already leaves out."""
    x = imp.data(node)
    vals: list[Any] = [imp.values.get(t) if t else None for t in node.input] + [None] * 5
    starts = a.get("starts", vals[1])
    ends = a.get("ends", vals[2])
    axes = a.get("axes", vals[3])
    steps = vals[4]
    if any(isinstance(v, Data) for v in (starts, ends, axes, steps)):
        raise Refuse("slice bounds computed from activations")
    starts, ends = np.ravel(starts).astype(np.int64), np.ravel(ends).astype(np.int64)
    axes = range(len(starts)) if axes is None else np.ravel(axes).astype(int)
    steps = [1] * len(starts) if steps is None else np.ravel(steps).astype(int)
    rank = len(x.shape)
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        size = x.shape[int(ax) % rank]
        if int(ax) % rank == 0 or sp != 1 or st != 0 or min(int(en), size) != size:
            raise Refuse(
                f"a Slice of activations {x.shape} that drops values (axis {int(ax)}, "
                f"{int(st)}:{int(en)}:{int(sp)}); only crops that keep them whole"
            )
    return [x]


# -- constants and shape arithmetic (as torch writes x.view(x.size(0), -1)) --------
def constant(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    if "value" in a:
        return [imp.to_array(a["value"])]
    key, value = next(iter(a.items()))
    return [np.asarray(value, dtype=np.float32 if "float" in key else np.int64)]


def shape(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    v: Any = imp.values.get(node.input[0])  # Data or an array
    if not isinstance(v, (Data, np.ndarray)):
        raise Refuse("the shape of the middle of a channel shuffle or a Pad")
    dims: list[Any] = [imp.batch, *v.shape[1:]] if isinstance(v, Data) else list(v.shape)
    start, end = a.get("start", 0), a.get("end", len(dims))
    return [sym(dims[start:end])]


def gather(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    data, idx = imp.shape_args(node)
    return [sym(np.take(data, np.asarray(idx, dtype=np.int64), axis=a.get("axis", 0)))]


def _axes(imp: Importer, node: Any, a: dict[str, Any]) -> list[int] | None:
    """Unsqueeze's and Squeeze's axes: an attribute before opset 13, an input after."""
    if "axes" in a:
        return [int(v) for v in a["axes"]]
    vals = imp.shape_args(node)
    return None if len(vals) < 2 or vals[1] is None else [int(v) for v in vals[1].ravel()]


def unsqueeze(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    data = imp.shape_args(node)[0]
    axes = _axes(imp, node, a) or []
    rank = data.ndim + len(axes)
    out = data
    for ax in sorted(v % rank for v in axes):
        out = np.expand_dims(out, ax)
    return [sym(out)]


def squeeze(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    data = imp.shape_args(node)[0]
    axes = _axes(imp, node, a)
    return [sym(np.squeeze(data, axis=None if axes is None else tuple(axes)))]


def cast(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    data = imp.shape_args(node)[0]
    if data.dtype == object:
        return [data]
    return [data.astype(imp.onnx.helper.tensor_dtype_to_np_dtype(a["to"]))]


def slice_(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    if isinstance(imp.values.get(node.input[0]), Data):
        return slice_data(imp, node, a)
    vals = imp.shape_args(node) + [None] * 5
    data = vals[0]
    starts = a.get("starts", vals[1])  # attributes before opset 10, inputs after
    ends = a.get("ends", vals[2])
    axes = a.get("axes", vals[3])
    steps = vals[4]
    starts, ends = np.ravel(starts).astype(int), np.ravel(ends).astype(int)
    axes = range(len(starts)) if axes is None else np.ravel(axes).astype(int)
    steps = [1] * len(starts) if steps is None else np.ravel(steps).astype(int)
    index = [slice(None)] * data.ndim
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        index[int(ax)] = slice(int(st), int(en), int(sp))
    return [sym(data[tuple(index)])]


_WINDOW = {"kernel_shape": None, "strides": None, "pads": None, "auto_pad": _is(*_AUTO_PAD)}

OPS: dict[str, Op] = {
    "Conv": Op(conv, {**_WINDOW, "dilations": None, "group": None}),
    "MaxPool": Op(
        max_pool,
        {**_WINDOW, "dilations": None, "ceil_mode": _is(0, 1), "storage_order": _is(0)},
        first_output_only=True,
    ),
    "AveragePool": Op(
        average_pool,
        {**_WINDOW, "ceil_mode": _is(0, 1), "count_include_pad": _is(0, 1), "dilations": _ones},
    ),
    "GlobalAveragePool": Op(global_average_pool),
    "Relu": Op(_simple({"type": "ReLU"})),
    "LeakyRelu": Op(leaky_relu, {"alpha": None}),
    "Sigmoid": Op(_simple({"type": "Sigmoid"})),
    "Tanh": Op(_simple({"type": "Tanh"})),
    "Softmax": Op(softmax, {"axis": None}),
    "Flatten": Op(flatten, {"axis": None}),
    "Reshape": Op(reshape, {"allowzero": _is(0)}),
    "Gemm": Op(gemm, {"alpha": _is(1.0), "beta": _is(1.0), "transA": _is(0), "transB": _is(0, 1)}),
    "MatMul": Op(matmul),
    "Add": Op(add, {"broadcast": None, "axis": None}),
    "Mul": Op(mul, {"broadcast": None, "axis": None}),
    "Sum": Op(sum_),
    "LRN": Op(lrn, {"size": None, "alpha": None, "beta": None, "bias": None}),
    "Clip": Op(clip, {"min": None, "max": None}),
    "Transpose": Op(transpose, {"perm": None}),
    "Pad": Op(pad, {"mode": None, "pads": None, "value": None}),
    "BatchNormalization": Op(
        batch_norm,
        {
            "epsilon": None,
            "momentum": None,
            "training_mode": _is(0),
            "spatial": _is(1),
            "is_test": _is(1),
        },
        first_output_only=True,
    ),
    "Dropout": Op(dropout, {"ratio": None, "seed": None, "is_test": None}, first_output_only=True),
    "Identity": Op(identity),
    "Constant": Op(
        constant,
        dict.fromkeys(("value", "value_float", "value_floats", "value_int", "value_ints")),
    ),
    "Shape": Op(shape, {"start": None, "end": None}),
    "Gather": Op(gather, {"axis": None}),
    "Unsqueeze": Op(unsqueeze, {"axes": None}),
    "Squeeze": Op(squeeze, {"axes": None}),
    "Concat": Op(concat, {"axis": None}),
    "Cast": Op(cast, {"to": None, "saturate": None}),
    "Slice": Op(slice_, {"starts": None, "ends": None, "axes": None}),
    "ConvTranspose": Op(_segment.conv_transpose, _segment.ATTRS["ConvTranspose"]),
    "Resize": Op(_segment.resize, _segment.ATTRS["Resize"]),
}

# Operators on constants and shapes that keep the symbolic batch "N" (the rest
# of the nodes that read no activation go to ONNX's reference runtime).
SHAPE_OPS = frozenset(
    ("Constant", "Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Slice", "Identity")
)
