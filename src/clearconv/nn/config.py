"""Architectures as plain data: a model <-> a JSON-able config, both ways.

A config is a dict with a ``"type"`` (the layer's class name) and the layer's
constructor arguments; containers nest: ``{"type": "Sequential", "layers":
[...]}``, ``{"type": "Residual", "block": {...}}``, and the branch containers
``{"type": "Concat", "branches": [...], "dim": 1}`` and ``{"type": "Add",
"branches": [...]}``. Model files, the model
zoo, architecture files (TOML/JSON) and ONNX import all go through here.

With ``input_shape`` given, :func:`from_config` fills in the sizes a person
would rather not count: ``in_channels`` (Conv), ``in_features`` (Linear) and
``num_features`` (BatchNorm) may be left out and are taken from the shape
flowing into the layer.

Examples
--------
>>> import numpy as np
>>> cfg = {"type": "Sequential", "layers": [
...     {"type": "Conv2d", "out_channels": 4, "kernel_size": 3},
...     {"type": "ReLU"}, {"type": "Flatten"}, {"type": "Linear", "out_features": 2}]}
>>> model = from_config(cfg, input_shape=(1, 5, 5), rng=np.random.default_rng(0))
>>> model[3]
Linear(in_features=36, out_features=2)
>>> from_config(to_config(model))[0]
Conv2d(1, 4, kernel_size=3)
"""

from __future__ import annotations

import difflib
from typing import Any

import numpy as np

from clearconv import nn as _nn
from clearconv.nn.module import Module

# Constructor arguments stored for each layer type, in signature order; the
# 1-D and 2-D forms of a layer take the same ones.
_CONV = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups")
_MAX_POOL = ("kernel_size", "stride", "padding", "ceil_mode", "dilation")
_AVG_POOL = ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
_BATCH_NORM = ("num_features", "eps", "momentum", "affine", "track_running_stats")
_ARGS: dict[str, tuple[str, ...]] = {
    "Conv2d": _CONV,
    "Conv1d": _CONV,
    "MaxPool2d": _MAX_POOL,
    "MaxPool1d": _MAX_POOL,
    "AvgPool2d": _AVG_POOL,
    "AvgPool1d": _AVG_POOL,
    "AdaptiveAvgPool2d": ("output_size",),
    "ReLU": ("inplace",),
    "LeakyReLU": ("negative_slope", "inplace"),
    "Sigmoid": (),
    "Tanh": (),
    "Softmax": ("dim",),
    "Flatten": ("start_dim", "end_dim"),
    "Linear": ("in_features", "out_features"),
    "Dropout": ("p", "inplace"),
    "BatchNorm1d": _BATCH_NORM,
    "BatchNorm2d": _BATCH_NORM,
    "Identity": (),
    "ReLU6": (),
    "LocalResponseNorm": ("size", "alpha", "beta", "k"),
    "ChannelShuffle": ("groups",),
    "Embedding": ("num_embeddings", "embedding_dim", "padding_idx"),
    "Permute": ("dims",),
    "AdaptiveMaxPool1d": ("output_size",),
    "ConvTranspose2d": (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "output_padding",
        "groups",
        "dilation",
    ),
    "Upsample": ("scale_factor", "mode", "align_corners"),
}
_BRANCHES = ("Concat", "Add")  # containers of branches run on one input
# Settings older model files lack, written only when not at their default: a file
# without them loads with the default, and a model that leaves them at the default
# writes a file that versions without them read too.
_OMIT_AT_DEFAULT: dict[str, dict[str, Any]] = {
    "Conv1d": {"groups": 1},
    "Conv2d": {"groups": 1},
    "ReLU": {"inplace": False},
    "LeakyReLU": {"inplace": False},
    "Dropout": {"inplace": False},
}
_HAS_BIAS = ("Conv2d", "Conv1d", "Linear", "ConvTranspose2d")
_RANDOM = ("Conv2d", "Conv1d", "Linear", "Embedding", "ConvTranspose2d")  # take rng= and dtype=
_TYPED = ("BatchNorm1d", "BatchNorm2d")  # take dtype=
# Sizes that may be inferred from the incoming shape: key -> axis of that shape.
_INFER = {"in_channels": 1, "num_features": 1, "in_features": -1}

LAYER_TYPES = ("Sequential", "Residual", *_BRANCHES, *sorted(_ARGS))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def to_config(module: Module) -> dict[str, Any]:
    """The config of ``module`` (JSON-able: lists for tuples).

    Raises
    ------
    TypeError
        For a module type that has no config (a custom layer).
    """
    kind = type(module).__name__
    if isinstance(module, _nn.Sequential):
        return {"type": "Sequential", "layers": [to_config(m) for m in module]}
    if isinstance(module, _nn.Residual):
        res: dict[str, Any] = {"type": "Residual", "block": to_config(module.block)}
        if module.shortcut is not None:
            res["shortcut"] = to_config(module.shortcut)
        return res
    if kind in _BRANCHES:
        cfg_b: dict[str, Any] = {"type": kind, "branches": [to_config(b) for b in module]}  # type: ignore[attr-defined]
        if kind == "Concat" and module.dim != 1:  # type: ignore[attr-defined]
            cfg_b["dim"] = module.dim  # type: ignore[attr-defined]
        return cfg_b
    if kind not in _ARGS:
        raise TypeError(f"to_config: no config for layer type {kind}; known: {LAYER_TYPES}")
    cfg: dict[str, Any] = {"type": kind}
    for key in _ARGS[kind]:
        omit = _OMIT_AT_DEFAULT.get(kind, {})
        if key in omit and getattr(module, key) == omit[key]:
            continue  # so that files clearconv wrote before the setting existed read the same
        cfg[key] = _jsonable(getattr(module, key))
    if kind in _HAS_BIAS:
        cfg["bias"] = module.bias is not None  # type: ignore[attr-defined]
    return cfg


def from_config(
    config: dict[str, Any],
    input_shape: tuple[int, ...] | None = None,
    *,
    rng: np.random.Generator | None = None,
    dtype: Any = np.float32,
) -> Module:
    """Build the module a config describes.

    Parameters
    ----------
    config : dict
        As written by :func:`to_config` or by hand.
    input_shape : tuple of int, optional
        One sample's shape without the batch, e.g. ``(1, 28, 28)``; enables
        size inference for keys left out.
    rng : numpy.random.Generator, optional
        Initial weights (one generator used in layer order, so a seed fixes them).
    dtype : float32 or float64

    Raises
    ------
    ValueError
        For an unknown type, unknown or missing keys, or sizes that cannot be inferred.
    """
    gen = rng if rng is not None else np.random.default_rng()
    shape = None if input_shape is None else (1, *tuple(int(s) for s in input_shape))
    module, _ = _build(config, shape, gen, dtype, "model")
    return module


def _build(cfg: Any, shape, rng, dtype, where: str) -> tuple[Module, tuple[int, ...] | None]:
    if not isinstance(cfg, dict) or "type" not in cfg:
        raise ValueError(f"{where}: a layer must be a table with a 'type' key, got {cfg!r}")
    kind = cfg["type"]
    if kind == "Sequential":
        _check_keys(cfg, ("layers",), where)
        items = cfg.get("layers")
        if not isinstance(items, list):
            raise ValueError(f"{where}: Sequential needs a list 'layers', got {items!r}")
        layers = []
        for i, sub in enumerate(items):
            m, shape = _build(sub, shape, rng, dtype, f"{where}.{i}")
            layers.append(m)
        return _nn.Sequential(*layers), shape
    if kind == "Residual":
        _check_keys(cfg, ("block", "shortcut"), where)
        block, out = _build(cfg.get("block"), shape, rng, dtype, f"{where}.block")
        shortcut = None
        if cfg.get("shortcut") is not None:
            shortcut, _ = _build(cfg["shortcut"], shape, rng, dtype, f"{where}.shortcut")
        res = _nn.Residual(block, shortcut)
        return res, (res.output_shape(shape) if shape is not None else None)
    if kind in _BRANCHES:
        return _build_branches(cfg, shape, rng, dtype, where)
    if kind not in _ARGS:
        raise ValueError(
            f"{where}: unknown layer type {kind!r}{_did_you_mean(kind)}; "
            f"known: {', '.join(LAYER_TYPES)}"
        )
    if kind == "Linear" and shape is not None and len(shape) > 2 and "in_features" not in cfg:
        raise ValueError(
            f"{where}: Linear gets maps of shape (N, {', '.join(map(str, shape[1:]))}); "
            f'add a Flatten layer before it (type = "Flatten"), which makes them '
            f"(N, {int(np.prod(shape[1:]))})"
        )
    allowed = _ARGS[kind] + (("bias",) if kind in _HAS_BIAS else ())
    _check_keys(cfg, allowed, where)
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k != "type"}
    for key, axis in _INFER.items():
        if key in _ARGS[kind] and key not in kwargs:
            if shape is None:
                raise ValueError(f"{where}: {kind} needs {key!r} (or an input shape to infer it)")
            kwargs[key] = int(shape[axis])
    if kind in _RANDOM:
        kwargs.update(rng=rng, dtype=dtype)
    elif kind in _TYPED:
        kwargs.update(dtype=dtype)
    elif kind == "Dropout":
        kwargs.update(rng=rng)
    try:
        layer = getattr(_nn, kind)(**kwargs)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    try:
        out = layer.output_shape(shape) if shape is not None else None
    except ValueError as exc:
        if kind == "Linear" and shape is not None and len(shape) > 2:
            raise ValueError(f"{where}: {exc}; add a Flatten layer before it") from exc
        raise
    return layer, out


def _build_branches(cfg: dict, shape, rng, dtype, where: str) -> tuple[Module, Any]:
    kind = cfg["type"]
    _check_keys(cfg, ("branches", "dim") if kind == "Concat" else ("branches",), where)
    items = cfg.get("branches")
    if not isinstance(items, list) or not items:
        raise ValueError(f"{where}: {kind} needs a non-empty list 'branches', got {items!r}")
    branches = [_build(b, shape, rng, dtype, f"{where}.{i}")[0] for i, b in enumerate(items)]
    extra = {"dim": cfg["dim"]} if "dim" in cfg else {}
    try:
        module = getattr(_nn, kind)(*branches, **extra)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    return module, (module.output_shape(shape) if shape is not None else None)


def _did_you_mean(kind: Any) -> str:
    """`` (did you mean 'ReLU'?)`` for a near miss of a known layer type, else ``""``.

    Example
    -------
    >>> _did_you_mean("Relu"), _did_you_mean("Conv2D"), _did_you_mean("Transformer")
    (" (did you mean 'ReLU'?)", " (did you mean 'Conv2d'?)", '')
    """
    if not isinstance(kind, str):
        return ""
    by_case = {t.lower(): t for t in LAYER_TYPES}
    match = by_case.get(kind.lower()) or next(
        iter(difflib.get_close_matches(kind, LAYER_TYPES, n=1, cutoff=0.6)), None
    )
    return f" (did you mean {match!r}?)" if match else ""


def _check_keys(cfg: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = [k for k in cfg if k != "type" and k not in allowed]
    if unknown:
        raise ValueError(
            f"{where}: {cfg['type']} has no setting {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(allowed) or 'none'}"
        )
