"""The benchmark networks, built identically in clearconv and PyTorch.

``build_clearconv`` takes the library's ``nn`` module: this tree's by default,
or another revision's (``run --against``; ``convnet.nn`` before the rename),
so a worker imports only the library it times.

The zoo's branched classics (``ZOO``: GoogLeNet, SqueezeNet 1.1, MobileNetV2 on
224x224 colour images) come from the zoo's configs; their PyTorch twins are
made by :func:`to_torch`, which walks the built clearconv net and makes the
same torch module for each layer (Concat and Add as two small torch modules),
weights copied. torchvision is not needed.
"""

from __future__ import annotations

import functools
import importlib
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

#: zoo models timed on 224x224 colour images (inference only)
ZOO = ("googlenet", "squeezenet1_1", "mobilenet_v2")


def input_shape(name: str) -> tuple[int, ...]:
    """One sample's shape for model ``name``: MNIST's for ``ARCHS``, ImageNet's for ``ZOO``."""
    return (3, 224, 224) if name in ZOO else (1, 28, 28)


def build_clearconv(name: str, seed: int = 0, nn: ModuleType | None = None):
    if nn is None:
        from clearconv import nn
    rng = np.random.default_rng(seed)
    if name in ZOO:
        zoo = importlib.import_module(nn.__name__.rsplit(".", 1)[0] + ".zoo")
        return nn.from_config(zoo.config(name), input_shape(name), rng=rng)
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

    if name in ZOO:
        return to_torch(like if like is not None else build_clearconv(name))
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


def to_torch(module):
    """The PyTorch twin of a clearconv module tree, with its parameters and buffers.

    Covers the layers of the zoo's image classics; anything else raises ValueError.
    """
    import torch

    tn = torch.nn
    kind = type(module).__name__
    children = [to_torch(c) for _, c in module.children()]
    if kind == "Sequential":
        return tn.Sequential(*children)
    if kind in ("Concat", "Add"):
        return _torch_merges()[kind](children, getattr(module, "dim", 1))
    simple = {"Identity": tn.Identity, "ReLU": tn.ReLU, "ReLU6": tn.ReLU6, "Flatten": tn.Flatten}
    if kind in simple:
        return simple[kind]()
    if kind == "Dropout":
        return tn.Dropout(module.p)
    if kind == "AdaptiveAvgPool2d":
        return tn.AdaptiveAvgPool2d(module.output_size)
    if kind in ("MaxPool2d", "AvgPool2d"):
        args = (module.kernel_size, module.stride, module.padding)
        return getattr(tn, kind)(*args, ceil_mode=module.ceil_mode)
    if kind == "Conv2d":
        if isinstance(module.padding, str):
            raise ValueError(f"to_torch: Conv2d padding {module.padding!r} is not converted")
        made = tn.Conv2d(module.in_channels, module.out_channels, module.kernel_size,
                         module.stride, module.padding, module.dilation, module.groups,
                         bias=module.bias is not None)  # fmt: skip
    elif kind == "BatchNorm2d":
        made = tn.BatchNorm2d(module.num_features, eps=module.eps, momentum=module.momentum)
    elif kind == "Linear":
        made = tn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
    else:
        raise ValueError(f"to_torch: no PyTorch twin for {kind}")
    state = {k: torch.from_numpy(np.array(v)) for k, v in module.state_dict().items()}
    made.load_state_dict(state)
    return made


@functools.cache
def _torch_merges() -> dict:
    """torch modules for Concat (``cat`` of the branches) and Add (their sum)."""
    import torch

    class Concat(torch.nn.Module):
        def __init__(self, branches, dim: int) -> None:
            super().__init__()
            self.branches, self.dim = torch.nn.ModuleList(branches), dim

        def forward(self, x):
            return torch.cat([b(x) for b in self.branches], self.dim)

    class Add(Concat):
        def forward(self, x):
            out = self.branches[0](x)
            for b in self.branches[1:]:
                out = out + b(x)
            return out

    return {"Concat": Concat, "Add": Add}
