"""After training: loss/accuracy curves, the confusion matrix, the worst mistakes.

The array functions (:func:`load_history`, :func:`confusion_matrix`,
:func:`worst_mistakes`) are NumPy only; the ``plot_*`` functions draw PNG files
with matplotlib (the optional extra ``viz``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "confusion_matrix",
    "load_history",
    "plot_confusion",
    "plot_curves",
    "plot_health",
    "plot_mistakes",
    "worst_mistakes",
]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the installation
        from clearconv._extras import install_hint

        raise ImportError(f"plots need matplotlib: {install_hint('viz')}") from exc
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def load_history(path: str | Path) -> dict[str, list[float]]:
    """Read a training history: ``{column: [value per epoch]}``.

    Accepts CSV with a header row (``epoch,train_loss,val_accuracy,...``), JSON
    as a dict of lists, a list of per-epoch dicts, or ``{"records": [dicts]}`` (as
    :meth:`clearconv.train.History.save` writes it).
    Non-numeric cells become NaN.

    Raises
    ------
    ValueError
        For an empty or unreadable history, naming the file.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    rows: list[dict[str, Any]]
    if path.suffix.lower() == ".json" or text.lstrip().startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not a JSON history ({exc})") from exc
        for key in ("records", "epochs"):  # clearconv.train.History.save writes "records"
            if isinstance(data, dict) and isinstance(data.get(key), list):
                data = data[key]
        if isinstance(data, dict) and "history" in data:
            data = data["history"]
        if isinstance(data, dict):
            cols = {k: v for k, v in data.items() if isinstance(v, list)}
            return {k: [_num(x) for x in v] for k, v in cols.items()} or _empty(path)
        if isinstance(data, list) and all(isinstance(r, dict) for r in data):
            rows = data
        else:
            raise ValueError(f"{path}: expected a dict of lists or a list of per-epoch dicts")
    else:
        rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        _empty(path)
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return {k: [_num(r.get(k)) for r in rows] for k in keys}


def _empty(path: Path) -> dict[str, list[float]]:
    raise ValueError(f"{path}: the history is empty")


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """``C[i, j]`` = how many examples of true class ``i`` were predicted ``j`` (int64 ``(K, K)``).

    Example
    -------
    >>> confusion_matrix(np.array([0, 0, 1]), np.array([0, 1, 1]), 2).tolist()
    [[1, 1], [0, 1]]
    """
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    if labels.shape != preds.shape:
        raise ValueError(f"confusion_matrix: labels {labels.shape} and preds {preds.shape} differ")
    return np.bincount(labels * num_classes + preds, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def worst_mistakes(probs: np.ndarray, labels: np.ndarray, k: int = 16) -> np.ndarray:
    """Indices of up to ``k`` misclassified examples, most confident mistake first.

    Ranked by the probability given to the (wrong) predicted class.

    Example
    -------
    >>> p = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    >>> worst_mistakes(p, np.array([0, 0, 0])).tolist()
    [1, 2]
    """
    probs = np.asarray(probs)
    labels = np.asarray(labels)
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != labels)
    order = np.argsort(-probs[wrong, pred[wrong]], kind="stable")
    return wrong[order][:k]


def plot_curves(history: dict[str, list[float]], path: str | Path) -> Path:
    """Loss curves (left) and accuracy curves (right) against the epoch, as PNG."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    draw_curves(axes, history)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def draw_curves(axes: Sequence[Any], history: dict[str, list[float]]) -> None:
    """:func:`plot_curves`' drawing on two matplotlib axes. A one-epoch history has
    no curve to show: each point carries its value, written beside it."""
    epochs = history.get("epoch") or list(range(1, 1 + max(len(v) for v in history.values())))
    one = len(epochs) == 1
    for ax, word in zip(axes, ("loss", "acc")):
        for key, vals in history.items():
            if word in key and key != "epoch":
                ax.plot(epochs[: len(vals)], vals, marker="o", ms=6 if one else 3, label=key)
                if one and vals and np.isfinite(vals[0]):
                    ax.annotate(f"{vals[0]:.4g}", (epochs[0], vals[0]), xytext=(6, 0),
                                textcoords="offset points", va="center", fontsize=8)  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_title(("loss" if word == "loss" else "accuracy") + (" (one epoch)" if one else ""))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: str | Path) -> Path:
    """The confusion matrix with counts in the cells (rows: true class, columns: predicted)."""
    plt = _pyplot()
    m = np.asarray(matrix)
    k = len(m)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * k, 1.0 + 0.45 * k))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    top = m.max() if m.size else 0
    for i, j in zip(*np.nonzero(m)):  # only the non-empty cells get a number
        ax.text(
            j,
            i,
            str(m[i, j]),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if m[i, j] > top / 2 else "black",
        )
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def plot_mistakes(
    images: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    k: int = 16,
) -> Path:
    """A grid of the ``k`` worst mistakes: the image, ``true -> predicted (probability)``."""
    plt = _pyplot()
    idx = worst_mistakes(probs, labels, k)
    cols = max(1, min(8, len(idx)))
    rows = max(1, -(-len(idx) // cols))
    # 2.1 in a row: tight_layout keeps the square images' aspect, and at 1.7 in
    # each two-line title ran under the images of the row above
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 2.1 * rows + 0.3), squeeze=False)
    fig.suptitle("worst mistakes: true→predicted, with its probability", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), idx):
        img = np.asarray(images[i])
        img = img[0] if img.ndim == 3 and img.shape[0] == 1 else img
        img = img.transpose(1, 2, 0) if img.ndim == 3 and img.shape[0] == 3 else img
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        p = int(np.argmax(probs[i]))
        ax.set_title(f"{class_names[labels[i]]}→{class_names[p]}\n{probs[i, p]:.2f}", fontsize=8)
    if len(idx) == 0:
        axes[0, 0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return Path(path)


def plot_health(monitor_history: list[dict[str, dict[str, float]]], path: str | Path) -> Path:
    """Per-layer gradient norms (log scale) and dead-ReLU fractions over epochs."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for ax, key, title in zip(axes, ("grad_norm", "dead_relu"), ("gradient norm", "dead ReLUs")):
        series: dict[str, list[float]] = {}
        for rec in monitor_history:
            for name, val in rec[key].items():
                series.setdefault(name, []).append(val)
        for name, vals in series.items():
            if key == "dead_relu" or name.endswith("weight"):
                ax.plot(range(1, len(vals) + 1), vals, marker="o", ms=3, label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if key == "grad_norm" and series:
            ax.set_yscale("log")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return Path(path)
