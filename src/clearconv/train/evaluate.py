"""``evaluate``: accuracy, mean loss, confusion matrix and per-class precision/recall."""

from __future__ import annotations

from typing import Any

import numpy as np

from clearconv._validate import check_int
from clearconv.data.loader import Dataset, iterate_batches
from clearconv.model import Model
from clearconv.nn.loss import CrossEntropyLoss

__all__ = ["as_data", "check_labels", "evaluate"]


def as_data(owner: str, data: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)`` from a Dataset or a pair; errors name ``owner``."""
    if isinstance(data, Dataset):
        return data.images, data.labels
    if isinstance(data, (tuple, list)) and len(data) in (2, 3):
        images, labels = np.asarray(data[0]), np.asarray(data[1])
        if len(images) != len(labels):
            raise ValueError(
                f"{owner}: images and labels differ in length ({len(images)} and {len(labels)})"
            )
        if labels.dtype.kind not in "iu":
            raise TypeError(f"{owner}: labels must be integers, got dtype {labels.dtype}")
        return images, labels.astype(np.int64, copy=False)
    raise TypeError(
        f"{owner}: expected a Dataset or an (images, labels) pair, got {type(data).__name__}"
    )


def check_labels(owner: str, labels: np.ndarray, k: int) -> None:
    """Raise ValueError unless every label is a class index of a ``k``-class model."""
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(
            f"{owner}: labels must be in [0, {k - 1}] for a model with {k} classes, "
            f"got values in [{labels.min()}, {labels.max()}]"
        )


def evaluate(
    model: Model, images: Any, labels: Any = None, batch_size: int = 256
) -> dict[str, Any]:
    """Accuracy, mean cross-entropy, confusion matrix and per-class precision/recall.

    Parameters
    ----------
    model : Model
    images : numpy.ndarray or Dataset
        Raw images ``(N, *input_shape)`` (uint8 or float in [0, 1]); or a Dataset
        (then ``labels`` is left out).
    labels : numpy.ndarray
        ``(N,)`` integers.
    batch_size : int

    Returns
    -------
    dict
        ``accuracy`` (fraction), ``loss``, ``n``, ``confusion`` (``(K, K)`` int64,
        rows true class, columns predicted), ``precision`` and ``recall``
        (``(K,)`` float64; 0 where a class is never predicted / absent),
        ``class_names``.

    Example
    -------
    >>> from clearconv import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=np.random.default_rng(0)))
    >>> m = Model(net, (1, 2, 2), ["a", "b"])
    >>> r = evaluate(m, np.zeros((3, 1, 2, 2), np.float32), np.array([0, 1, 1]))
    >>> r["confusion"].sum(), r["n"]
    (np.int64(3), 3)
    """
    if not isinstance(model, Model):
        raise TypeError(f"evaluate expected a clearconv.Model, got {type(model).__name__}")
    if labels is None:
        images, labels = as_data("evaluate", images)
    else:
        images, labels = as_data("evaluate", (images, labels))
    batch_size = check_int("evaluate", "batch_size", batch_size, minimum=1)
    k = model.num_classes
    check_labels("evaluate", labels, k)
    if labels.ndim > 1:  # a mask per image: pixel accuracy and IoU
        from clearconv import segmentation

        return segmentation.evaluate(model, images, labels, batch_size)
    n = len(labels)
    ce = CrossEntropyLoss()
    loss_sum = 0.0
    preds = np.empty(n, dtype=np.int64)
    for idx in iterate_batches(n, batch_size, shuffle=False):
        logits = model(model.preprocess(images[idx]), training=False)
        loss_sum += float(ce(logits, labels[idx])) * len(idx)
        preds[idx] = logits.argmax(axis=1)
    confusion = np.bincount(labels * k + preds, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    actual = confusion.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros(k), where=actual > 0)
    return {
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "loss": loss_sum / n if n else float("nan"),
        "n": n,
        "confusion": confusion,
        "precision": precision,
        "recall": recall,
        "class_names": list(model.class_names),
    }
