"""What each layer makes of one input: the activations, stage by stage.

A *stage* is one top-level child of a :class:`~clearconv.nn.Sequential` (a
Residual block or a nested Sequential counts as one stage), so the walk follows
the architecture as it is written. The forward pass is the engine's own: each
stage's ``forward`` is called in order, exactly as ``Sequential.forward`` does.

A stage that merges branches (:class:`~clearconv.nn.Concat`,
:class:`~clearconv.nn.Add`, a :class:`~clearconv.nn.Residual`'s block and
shortcut) also keeps each branch's own output, so an Inception block shows
what its 1x1, 3x3, 5x5 and pooling paths each found before they were stacked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clearconv.nn import Add, Concat, Conv1d, Conv2d, Module, Residual, Sequential
from clearconv.viz._image import normalize01

__all__ = ["LayerOutput", "branch_paths", "feature_maps", "path_label", "stages", "trace"]


@dataclass(frozen=True)
class LayerOutput:
    """One stage's output: ``name`` (the dotted PyTorch name), ``layer``, ``output`` array.

    ``branches`` holds, for a stage that merges branches, each branch's own
    output (in the merge's order, named like the summary's rows: ``"11.2"``,
    ``"3.block"``); it is empty for a plain layer.
    """

    name: str
    layer: Module
    output: np.ndarray
    branches: tuple[LayerOutput, ...] = ()

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
    training : bool, default False
        Run the layers in training mode (then no branch outputs are kept).

    Returns
    -------
    list of LayerOutput
        One per stage; the last output is the logits ``(N, K)``. A merging
        stage's ``branches`` hold each branch's output (see :func:`branch_paths`).

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
        out = layer(h, training=training)
        outs.append(LayerOutput(name, layer, out, _branches(name, layer, h, training)))
        h = out
    return outs


def branch_paths(name: str, layer: Module) -> list[tuple[str, Module]]:
    """``(name, module)`` of the paths a merging layer runs on its input (none for others).

    >>> from clearconv import nn
    >>> [n for n, _ in branch_paths("4", nn.Concat(nn.Identity(), nn.ReLU()))]
    ['4.0', '4.1']
    >>> [n for n, _ in branch_paths("2", nn.Residual(nn.ReLU()))]
    ['2.block']
    """
    if isinstance(layer, (Concat, Add)):
        return [(f"{name}.{i}", b) for i, b in enumerate(layer)]
    if isinstance(layer, Residual):
        paths = [(f"{name}.block", layer.block)]
        if layer.shortcut is not None:
            paths.append((f"{name}.shortcut", layer.shortcut))
        return paths
    return []


def path_label(m: Module) -> str:
    """A branch in a few words: its layers in order, with kernel sizes.

    >>> from clearconv import nn
    >>> path_label(nn.Sequential(nn.MaxPool2d(3, 1, padding=1), nn.Conv2d(8, 4, 1), nn.ReLU()))
    'MaxPool2d 3x3 → Conv2d 1x1 → ReLU'
    >>> path_label(nn.Conv2d(8, 8, 3, stride=2, groups=8)), path_label(nn.Identity())
    ('Conv2d 3x3 stride 2 depthwise', 'Identity (the input itself)')
    """
    if isinstance(m, Sequential):
        return " → ".join(path_label(c) for _, c in m.children()) or "(empty)"
    kind = type(m).__name__
    if isinstance(m, (Concat, Add)):
        return f"{kind} of {len(m)} branches"
    if kind == "Identity":
        return "Identity (the input itself)"
    k = getattr(m, "kernel_size", None)
    if not isinstance(k, tuple):
        return kind
    text = f"{kind} {'x'.join(map(str, k))}"
    stride = getattr(m, "stride", None)
    if isinstance(stride, tuple) and max(stride) > 1:
        text += f" stride {'x'.join(map(str, sorted(set(stride))))}"
    groups = getattr(m, "groups", 1)
    if groups > 1:
        text += " depthwise" if groups == m.in_channels else f" groups={groups}"  # type: ignore[attr-defined]
    return text


def _branches(name: str, layer: Module, x: np.ndarray, training: bool) -> tuple[LayerOutput, ...]:
    # Each branch runs again on the stage's input: the merged output does not
    # keep an Add's terms, and a second inference pass costs what the first did.
    # Not in training mode, where a second pass would update BatchNorm's running
    # statistics twice. A branch that is itself a merge lists its own branches.
    if training:
        return ()
    return tuple(
        LayerOutput(n, b, b(x, training=False), _branches(n, b, x, False))
        for n, b in branch_paths(name, layer)
    )


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
