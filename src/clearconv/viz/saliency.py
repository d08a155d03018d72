"""Where the network looks: input gradients (saliency) and Grad-CAM, with the engine's backward.

Saliency is ``d score_k / d x``: forward the input, then backward a one-hot
``e_k`` through the net (the gradient of the class-``k`` logit). Grad-CAM
(Selvaraju et al. 2017) weighs the last convolution stage's maps ``A`` by
the spatial mean of their gradients:

.. math:: \\alpha_c = \\frac{1}{HW}\\sum_{i,j} \\frac{\\partial y_k}{\\partial A_{cij}}, \\quad
          \\mathrm{CAM} = \\mathrm{ReLU}\\Big(\\sum_c \\alpha_c A_c\\Big)

then upsamples the map to the input size. Parameter gradients that the
backward pass adds are put back as they were, so calling these during
training changes nothing.
"""

from __future__ import annotations

import numpy as np

from clearconv.nn import Module
from clearconv.viz._image import normalize01
from clearconv.viz.featuremaps import is_conv, stages

__all__ = ["grad_cam", "last_conv_stage", "saliency", "saliency_map", "upsample"]


class _KeepGrads:
    """Restore every Parameter.grad on exit (backward here is for pictures, not training)."""

    def __init__(self, model: Module) -> None:
        self.params = model.parameters()

    def __enter__(self) -> None:
        self.saved = [p.grad for p in self.params]
        for p in self.params:
            p.grad = None if p.grad is None else p.grad.copy()

    def __exit__(self, *exc: object) -> None:
        for p, g in zip(self.params, self.saved):
            p.grad = g


def _one_hot(logits: np.ndarray, target: int | np.ndarray | None) -> np.ndarray:
    n, k = logits.shape
    t = logits.argmax(axis=1) if target is None else np.broadcast_to(np.asarray(target), (n,))
    if np.any((t < 0) | (t >= k)):
        raise ValueError(f"target class must be in [0, {k - 1}], got {np.asarray(target).tolist()}")
    g = np.zeros_like(logits)
    g[np.arange(n), t] = 1
    return g


def saliency(model: Module, x: np.ndarray, target: int | np.ndarray | None = None) -> np.ndarray:
    """Gradient of the class score (logit) for ``target`` with respect to the input.

    Parameters
    ----------
    model : Module
        A Model or net mapping ``(N, *input_shape)`` to logits ``(N, K)``.
    x : numpy.ndarray
        The preprocessed batch.
    target : int or (N,) int array, optional
        Class per sample; default the predicted class.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``x``.

    Example
    -------
    >>> from clearconv import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=np.random.default_rng(0)))
    >>> g = saliency(net, np.ones((1, 1, 2, 2), np.float32), target=1)
    >>> np.allclose(g.reshape(-1), net[1].weight.data[1])
    True
    """
    with _KeepGrads(model):
        logits = model(x, training=False)
        return model.backward(_one_hot(logits, target))


def saliency_map(grad: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` in ``[0, 1]``: max over channels of ``|grad|``, scaled per sample."""
    a = np.abs(np.asarray(grad, dtype=np.float32)).max(axis=1)
    return normalize01(a, axis=tuple(range(1, a.ndim)))


def last_conv_stage(model: Module) -> int:
    """Index of the stage whose output Grad-CAM uses: the last stage holding a
    convolution, moved past the elementwise stages right after it (ReLU,
    BatchNorm: same shape), so the maps are the rectified ones.

    Raises
    ------
    ValueError
        When the net has no convolution.
    """
    st = stages(model)
    idx = [i for i, (_, m) in enumerate(st) if is_conv(m)]
    if not idx:
        raise ValueError("Grad-CAM needs a convolution layer, and this network has none")
    i = idx[-1]
    elementwise = ("ReLU", "LeakyReLU", "Tanh", "Sigmoid", "BatchNorm2d", "BatchNorm1d", "Dropout")
    while i + 1 < len(st) and type(st[i + 1][1]).__name__ in elementwise:
        i += 1
    return i


def upsample(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``(N, h, w)`` maps to ``(N, H, W)`` (align_corners=False, as torch)."""
    maps = np.asarray(maps, dtype=np.float32)

    def interp(n_in: int, n_out: int) -> np.ndarray:
        # (n_out, n_in) triangle weights at the output pixel centres
        centre = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        w = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in)[None, :] - centre[:, None]))
        return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)

    rows, cols = interp(maps.shape[1], size[0]), interp(maps.shape[2], size[1])
    return np.einsum("Hh,nhw,Ww->nHW", rows, maps, cols)


def grad_cam(
    model: Module, x: np.ndarray, target: int | np.ndarray | None = None, stage: int | None = None
) -> np.ndarray:
    """Grad-CAM heat maps ``(N, H, W)`` in ``[0, 1]`` (divided by their peak) at the input's size.

    Parameters
    ----------
    model : Module
        A Model or Sequential with at least one 2-D convolution.
    x : numpy.ndarray
        The preprocessed batch ``(N, C, H, W)``.
    target : int or (N,) int array, optional
        Class per sample; default the predicted class.
    stage : int, optional
        The stage whose output is used; default :func:`last_conv_stage`.

    Raises
    ------
    ValueError
        Without a convolution, or when the chosen stage's output is not ``(N, C, h, w)``.

    Example
    -------
    >>> from clearconv import nn
    >>> r = np.random.default_rng(0)
    >>> conv, lin = nn.Conv2d(1, 2, 3, rng=r), nn.Linear(18, 3, rng=r)
    >>> net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), lin)
    >>> grad_cam(net, r.normal(size=(2, 1, 5, 5)).astype(np.float32)).shape
    (2, 5, 5)
    """
    st = stages(model)
    k = last_conv_stage(model) if stage is None else int(stage)
    with _KeepGrads(model):
        h = x
        acts = None
        for i, (_, layer) in enumerate(st):
            h = layer(h, training=False)
            if i == k:
                acts = h
        if acts is None or acts.ndim != 4:
            shape = None if acts is None else acts.shape
            raise ValueError(f"Grad-CAM needs a stage output (N, C, h, w), stage {k} gives {shape}")
        g = _one_hot(h, target)
        for _, layer in reversed(st[k + 1 :]):
            g = layer.backward(g)
    weights = g.mean(axis=(2, 3))  # (N, C)
    cam = np.maximum(np.einsum("nc,nchw->nhw", weights, acts), 0.0)
    cam = upsample(cam, x.shape[2:])
    peak = cam.max(axis=(1, 2), keepdims=True)
    return (cam / np.where(peak > 0, peak, 1.0)).astype(np.float32)  # no evidence stays 0
