"""Layers with PyTorch's names, arguments and layouts.

Each layer is a thin class over the pure functions in :mod:`convnet.functional`.
"""

from convnet.nn.activation import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from convnet.nn.config import LAYER_TYPES, from_config, to_config
from convnet.nn.container import Residual, Sequential
from convnet.nn.conv import Conv1d, Conv2d
from convnet.nn.dropout import Dropout
from convnet.nn.linear import Flatten, Linear
from convnet.nn.loss import CrossEntropyLoss, MSELoss
from convnet.nn.module import Module
from convnet.nn.norm import BatchNorm1d, BatchNorm2d
from convnet.nn.parameter import Parameter
from convnet.nn.pool import (
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)

__all__ = [
    "LAYER_TYPES",
    "AdaptiveAvgPool2d",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv1d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Flatten",
    "LeakyReLU",
    "Linear",
    "MSELoss",
    "MaxPool1d",
    "MaxPool2d",
    "Module",
    "Parameter",
    "ReLU",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "from_config",
    "to_config",
]
