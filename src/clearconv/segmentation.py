"""Segmentation metrics and helpers: a class for every pixel.

All metrics come from one confusion matrix over pixels, ``M[t, p]`` = pixels
of true class ``t`` predicted as ``p`` (pixels labelled ``ignore_index``
left out)::

    pixel_accuracy = trace(M) / sum(M)
    IoU[c]         = M[c, c] / (sum_p M[c, p] + sum_t M[t, c] - M[c, c])
    mean_iou       = mean of IoU[c] over the classes present (in truth or prediction)

A class that appears in neither has no IoU (NaN), and is left out of the mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clearconv.data.loader import iterate_batches
from clearconv.model import Model
from clearconv.nn.loss import CrossEntropyLoss

__all__ = [
    "PALETTE",
    "colour_mask",
    "confusion_matrix",
    "evaluate",
    "iou_scores",
    "overlay",
    "predict_masks",
]

#: Colours of classes 0, 1, 2, ... in masks and overlays (class 0, usually background, black).
PALETTE = np.array(
    [
        [0, 0, 0], [230, 25, 75], [60, 180, 75], [0, 130, 200], [255, 225, 25],
        [145, 30, 180], [70, 240, 240], [245, 130, 48], [240, 50, 230], [128, 128, 128],
    ],
    dtype=np.uint8,
)  # fmt: skip


def confusion_matrix(
    target: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = -100
) -> np.ndarray:
    """``(K, K)`` int64 pixel counts, rows the true class, columns the predicted one.

    Example
    -------
    >>> confusion_matrix(np.array([[0, 1], [1, -100]]), np.array([[0, 0], [1, 1]]), 2).tolist()
    [[1, 0], [1, 1]]
    """
    t = np.asarray(target).reshape(-1)
    p = np.asarray(pred).reshape(-1)
    keep = t != ignore_index
    t, p = t[keep], p[keep]
    k = num_classes
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.int64)


def iou_scores(confusion: np.ndarray) -> dict[str, Any]:
    """``pixel_accuracy``, ``iou`` (per class, NaN where a class is absent) and ``mean_iou``.

    Example
    -------
    >>> r = iou_scores(np.array([[3, 1], [0, 4]]))
    >>> r["pixel_accuracy"], [round(v, 3) for v in r["iou"]], round(r["mean_iou"], 3)
    (0.875, [0.75, 0.8], 0.775)
    """
    m = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(m)
    union = m.sum(axis=0) + m.sum(axis=1) - tp
    iou = np.divide(tp, union, out=np.full(len(tp), np.nan), where=union > 0)
    total = m.sum()
    present = ~np.isnan(iou)
    return {
        "pixel_accuracy": float(tp.sum() / total) if total else float("nan"),
        "iou": iou.tolist(),
        "mean_iou": float(iou[present].mean()) if present.any() else float("nan"),
    }


def predict_masks(model: Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Predicted class per pixel, ``(N, H, W)`` int64, of raw images ``(N, C, H, W)``."""
    out = np.empty((len(images), *model.input_shape[1:]), dtype=np.int64)
    for idx in iterate_batches(len(images), batch_size, shuffle=False):
        out[idx] = model(model.preprocess(images[idx]), training=False).argmax(axis=1)
    return out


def evaluate(
    model: Model,
    images: np.ndarray,
    masks: np.ndarray,
    batch_size: int = 64,
    distributed: Any = None,
) -> dict[str, Any]:
    """Loss, pixel accuracy, per-class and mean IoU of ``model`` on images and masks.

    With ``distributed`` (a :class:`clearconv.distributed.Distributed`; every
    rank calls this with the same arrays) each rank runs its contiguous share
    of the images and one allreduce sums the confusion counts and the loss:
    the same dict as one process gives.

    Returns
    -------
    dict
        ``loss``, ``pixel_accuracy`` (also as ``accuracy``), ``mean_iou``,
        ``iou`` (list, per class), ``confusion`` ``(K, K)``, ``n`` (images),
        ``class_names``.
    """
    k, n = model.num_classes, len(images)
    ce = CrossEntropyLoss()
    confusion = np.zeros((k, k), np.int64)
    loss_sum = 0.0
    share = np.arange(n)[slice(None) if distributed is None else distributed.part(n)]
    for idx in iterate_batches(len(share), batch_size, shuffle=False):
        idx = share[idx]
        logits = model(model.preprocess(images[idx]), training=False)
        loss_sum += float(ce(logits, masks[idx])) * len(idx)
        confusion += confusion_matrix(masks[idx], logits.argmax(axis=1), k)
    if distributed is not None:  # float64 holds pixel counts exactly up to 2**53
        total = distributed.sum([*confusion.ravel(), loss_sum])
        confusion, loss_sum = np.rint(total[:-1]).astype(np.int64).reshape(k, k), total[-1]
    scores = iou_scores(confusion)
    return {
        "loss": loss_sum / n if n else float("nan"),
        "accuracy": scores["pixel_accuracy"],
        **scores,
        "confusion": confusion,
        "n": n,
        "class_names": list(model.class_names),
    }


def colour_mask(mask: np.ndarray) -> np.ndarray:
    """``(H, W)`` class indices -> ``(H, W, 3)`` uint8 colours from :data:`PALETTE` (cycled)."""
    return PALETTE[np.asarray(mask) % len(PALETTE)]


def overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The image ``(C, H, W)`` uint8 with the mask's colours blended over it (class 0 left clear).

    Returns ``(H, W, 3)`` uint8.
    """
    rgb = np.repeat(image, 3, axis=0) if image.shape[0] == 1 else image
    rgb = rgb.transpose(1, 2, 0).astype(np.float32)
    colours = colour_mask(mask).astype(np.float32)
    a = np.where(np.asarray(mask)[..., None] > 0, np.float32(alpha), np.float32(0))
    return np.round(rgb * (1 - a) + colours * a).astype(np.uint8)
