"""Layers with PyTorch's names, arguments and layouts.

Each layer is a thin class over the pure functions in :mod:`convnet.functional`.
"""

from convnet.nn.module import Module
from convnet.nn.parameter import Parameter

__all__ = ["Module", "Parameter"]

from convnet.nn.activation import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh  # noqa: E402
from convnet.nn.container import Residual, Sequential  # noqa: E402
from convnet.nn.dropout import Dropout  # noqa: E402
from convnet.nn.linear import Flatten, Linear  # noqa: E402
from convnet.nn.loss import CrossEntropyLoss, MSELoss  # noqa: E402
from convnet.nn.norm import BatchNorm1d, BatchNorm2d  # noqa: E402

__all__ += [
    "BatchNorm1d",
    "BatchNorm2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "LeakyReLU",
    "Linear",
    "MSELoss",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
]
