"""The tutorials' X/O example, exactly, with the engine's own layers.

Brandon Rohrer's "How convolutional neural networks work" classifies a 9x9 X
and O of +1/-1 pixels with three hand-made 3x3 features: the two diagonals
and a small cross (an x: +1 on both diagonals, -1 elsewhere). Filtering is the
*mean* of the products of feature and patch, so a patch that matches the
feature exactly gives 1 and its exact opposite -1; here that is an
``nn.Conv2d(1, 3, 3, bias=False)`` with weights ``feature / 9`` and no padding
(9x9 -> 7x7). Then ReLU (negatives to 0), 2x2 max pooling with the ragged
border padded (``MaxPool2d(2, ceil_mode=True)``: 7x7 -> 4x4), and a fully
connected layer whose weights are the votes: each class votes with the pooled
maps of its canonical image, normalised to sum to 1, so a class's score is the
vote-weighted average of the pooled values.

:func:`train_xo` trains the same network from random weights on
:func:`clearconv.data.make_xo` images, so the learned 3x3 features can be put
beside the hand-made ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from clearconv import nn
from clearconv.data import XO_CLASSES, make_xo, xo_canonical

__all__ = ["FEATURE_NAMES", "train_xo", "tutorial_net", "walkthrough", "xo_features"]

FEATURE_NAMES = ["diagonal \\", "cross x", "diagonal /"]


def xo_features() -> np.ndarray:
    """The three 3x3 features, float32 ``(3, 3, 3)`` of +1/-1: ``\\``, ``x``, ``/``.

    Example
    -------
    >>> xo_features()[1].astype(int).tolist()
    [[1, -1, 1], [-1, 1, -1], [1, -1, 1]]
    """
    eye = np.eye(3, dtype=bool)
    anti = eye[:, ::-1]
    lines = np.stack([eye, eye | anti, anti])
    return np.where(lines, 1.0, -1.0).astype(np.float32)


def tutorial_net(
    votes: np.ndarray | None = None, rng: np.random.Generator | None = None
) -> nn.Sequential:
    """conv (3 features, mean of products) -> ReLU -> 2x2 max pool (ceil) -> flatten -> votes.

    With ``votes=None`` and ``rng=None`` the hand-made network (features and
    the canonical votes); with an ``rng`` a randomly initialised one of the same shape.
    """
    r = rng if rng is not None else np.random.default_rng(0)
    conv = nn.Conv2d(1, 3, 3, bias=False, rng=r)
    fc = nn.Linear(3 * 4 * 4, 2, bias=False, rng=r)
    net = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True), nn.Flatten(), fc)
    if rng is None:
        conv.weight.data = (xo_features()[:, None] / 9).astype(np.float32)
        if votes is None:
            pooled = net[:4](xo_canonical())  # (2, 48): the X's and the O's pooled maps
            votes = pooled / pooled.sum(axis=1, keepdims=True)
        fc.weight.data = np.asarray(votes, dtype=np.float32)
    return net


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _weight(layer: nn.Module) -> np.ndarray:
    """The weight of the tutorial's conv or linear layer (``net[0]`` or ``net[4]``)."""
    if not isinstance(layer, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"walkthrough: expected Conv2d or Linear, got {type(layer).__name__}")
    return layer.weight.data


def walkthrough(
    net: nn.Sequential | None = None, images: np.ndarray | None = None
) -> dict[str, Any]:
    """Every array of the tutorial's story, for the canonical X and O (or ``images``).

    Returns
    -------
    dict
        ``images`` (2, 9, 9); ``features`` (3, 3, 3); ``conv`` (2, 3, 7, 7)
        (mean of products); ``relu`` (2, 3, 7, 7); ``pooled`` (2, 3, 4, 4);
        ``flat`` (2, 48); ``votes`` (2 classes, 48) the FC weights; ``scores``
        (2 images, 2 classes); ``probabilities`` (softmax of the scores);
        ``class_names``.

    Example
    -------
    >>> w = walkthrough()
    >>> float(w["conv"][0, 0, 1, 1]), round(float(w["conv"][0, 0, 0, 0]), 2)
    (1.0, 0.78)
    >>> w["scores"].argmax(axis=1).tolist()  # the X is voted X, the O is voted O
    [0, 1]
    """
    net = tutorial_net() if net is None else net
    x = xo_canonical() if images is None else np.asarray(images, np.float32)
    conv = net[0](x)
    relu = net[1](conv)
    pooled = net[2](relu)
    flat = net[3](pooled)
    scores = net[4](flat)
    return {
        "images": x[:, 0],
        "features": _weight(net[0])[:, 0] * 9,
        "conv": conv,
        "relu": relu,
        "pooled": pooled,
        "flat": flat,
        "votes": _weight(net[4]),
        "scores": scores,
        "probabilities": _softmax(scores),
        "class_names": list(XO_CLASSES),
    }


def train_xo(
    epochs: int = 30, n: int = 400, seed: int = 0, lr: float = 0.02, batch_size: int = 32
) -> tuple[nn.Sequential, dict[str, list[float]]]:
    """Train the tutorial's network from random weights on ``n`` generated X/O images.

    Uses :func:`clearconv.train.fit` (Adam). Returns the trained net and its
    history ``{"loss", "accuracy"}`` per epoch (training loss; accuracy on a
    fresh held-out set of ``n // 2`` images).
    """
    from clearconv.model import Model
    from clearconv.train import fit

    rng = np.random.default_rng(seed)
    train = make_xo(n, rng)
    val = make_xo(max(2, n // 2), rng)
    net = tutorial_net(rng=rng)
    model = Model(net, (1, 9, 9), XO_CLASSES, meta={"dataset": "xo"})
    hist = fit(
        model,
        (train.images, train.labels),
        (val.images, val.labels),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        progress=False,
    )
    return net, {"loss": list(hist["train_loss"]), "accuracy": list(hist["val_acc"])}
