"""The benchmark networks, built identically in clearconv and PyTorch.

``build_clearconv`` takes the library's ``nn`` module: this tree's by default,
or another revision's (``run --against``; ``convnet.nn`` before the rename),
so a worker imports only the library it times.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

# (name, layer list) with PyTorch-style specs: ("conv", in, out, k, pad), ("pool", k),
# ("relu",), ("flatten",), ("linear", in, out), ("bn", c)
ARCHS = {
    "lenet5": [
        ("conv", 1, 6, 5, 2), ("relu",), ("pool", 2),
        ("conv", 6, 16, 5, 0), ("relu",), ("pool", 2), ("flatten",),
        ("linear", 400, 120), ("relu",), ("linear", 120, 84), ("relu",), ("linear", 84, 10),
    ],
    "simple": [
        ("conv", 1, 30, 5, 0), ("relu",), ("pool", 2), ("flatten",),
        ("linear", 4320, 100), ("relu",), ("linear", 100, 10),
    ],
    "conv4": [
        ("conv", 1, 32, 3, 1), ("relu",), ("conv", 32, 32, 3, 1), ("relu",), ("pool", 2),
        ("conv", 32, 64, 3, 1), ("relu",), ("conv", 64, 64, 3, 1), ("relu",), ("pool", 2),
        ("flatten",), ("linear", 64 * 7 * 7, 256), ("relu",), ("linear", 256, 10),
    ],
}  # fmt: skip


def build_clearconv(name: str, seed: int = 0, nn: ModuleType | None = None):
    if nn is None:
        from clearconv import nn
    rng = np.random.default_rng(seed)
    layers = []
    for spec in ARCHS[name]:
        kind = spec[0]
        if kind == "conv":
            layers.append(nn.Conv2d(spec[1], spec[2], spec[3], padding=spec[4], rng=rng))
        elif kind == "pool":
            layers.append(nn.MaxPool2d(spec[1]))
        elif kind == "relu":
            layers.append(nn.ReLU())
        elif kind == "flatten":
            layers.append(nn.Flatten())
        elif kind == "linear":
            layers.append(nn.Linear(spec[1], spec[2], rng=rng))
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
    return nn.Sequential(*layers)


def build_torch(name: str, like=None):
    import torch

    layers = []
    for spec in ARCHS[name]:
        kind = spec[0]
        if kind == "conv":
            layers.append(torch.nn.Conv2d(spec[1], spec[2], spec[3], padding=spec[4]))
        elif kind == "pool":
            layers.append(torch.nn.MaxPool2d(spec[1]))
        elif kind == "relu":
            layers.append(torch.nn.ReLU())
        elif kind == "flatten":
            layers.append(torch.nn.Flatten())
        elif kind == "linear":
            layers.append(torch.nn.Linear(spec[1], spec[2]))
    net = torch.nn.Sequential(*layers)
    if like is not None:
        state = {k: torch.from_numpy(np.asarray(v).copy()) for k, v in like.state_dict().items()}
        net.load_state_dict(state)
    return net
