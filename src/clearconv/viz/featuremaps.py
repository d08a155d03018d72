"""What each layer makes of one input: the activations, stage by stage.

A *stage* is one top-level child of a :class:`~clearconv.nn.Sequential` (a
Residual block or a nested Sequential counts as one stage), so the walk follows
the architecture as it is written. The forward pass is the engine's own: each
stage's ``forward`` is called in order, exactly as ``Sequential.forward`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clearconv.nn import Conv1d, Conv2d, Module, Sequential
from clearconv.viz._image import normalize01

__all__ = ["LayerOutput", "feature_maps", "stages", "trace"]


@dataclass(frozen=True)
class LayerOutput:
    """One stage's output: ``name`` (the dotted PyTorch name), ``layer``, ``output`` array."""

    name: str
    layer: Module
    output: np.ndarray

    @property
    def kind(self) -> str:
        return type(self.layer).__name__


def _net_of(model: Module) -> Module:
    return getattr(model, "net", model)


def stages(model: Module) -> list[tuple[str, Module]]:
    """``(name, module)`` of the top-level stages of a model or net.

    A net that is not a Sequential is one stage named ``"net"``.
    """
    net = _net_of(model)
    if isinstance(net, Sequential):
        return list(net.children())
    return [("net", net)]


def trace(model: Module, x: np.ndarray, training: bool = False) -> list[LayerOutput]:
    """Run ``x`` through every stage and keep each output.

    Parameters
    ----------
    model : Module
        A :class:`~clearconv.Model` or a net (usually a Sequential).
    x : numpy.ndarray
        The preprocessed batch ``(N, *input_shape)``.

    Returns
    -------
    list of LayerOutput
        One per stage; the last output is the logits ``(N, K)``.

    Example
    -------
    >>> from clearconv import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0)), nn.ReLU())
    >>> [(o.name, o.kind, o.output.shape) for o in trace(net, np.ones((1, 1, 5, 5), np.float32))]
    [('0', 'Conv2d', (1, 2, 3, 3)), ('1', 'ReLU', (1, 2, 3, 3))]
    """
    outs = []
    h = x
    for name, layer in stages(model):
        h = layer(h, training=training)
        outs.append(LayerOutput(name, layer, h))
    return outs


def feature_maps(output: np.ndarray, scale: str = "shared") -> np.ndarray:
    """One sample's maps ``(C, H, W)`` (or a vector ``(D,)``) scaled to ``[0, 1]`` for display.

    ``scale="shared"`` uses one range for all maps of the layer (so a weak map
    looks weak); ``"per_map"`` stretches each map to its own range (so every
    pattern is visible). 1-D conv outputs ``(C, L)`` become ``(C, 1, L)``.

    Raises
    ------
    ValueError
        For an unknown ``scale`` or an array that is not one sample's output.

    Example
    -------
    >>> m = feature_maps(np.array([[[0.0, 1.0]], [[0.0, 4.0]]]), "shared")
    >>> m.shape, m.max(), m[0].max()
    ((2, 1, 2), np.float32(1.0), np.float32(0.25))
    """
    a = np.asarray(output, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, None, :]  # (C, L) -> (C, 1, L)
    if a.ndim == 1:
        return normalize01(a)
    if a.ndim != 3:
        raise ValueError(
            f"feature_maps expected one sample's (C, H, W), (C, L) or (D,), got {a.shape}"
        )
    if scale == "shared":
        return normalize01(a)
    if scale == "per_map":
        return normalize01(a, axis=(1, 2))
    raise ValueError(f"feature_maps: scale must be 'shared' or 'per_map', got {scale!r}")


def is_conv(layer: Module) -> bool:
    """True when ``layer`` is, or contains, a convolution."""
    return any(isinstance(m, (Conv1d, Conv2d)) for m in layer.modules())
