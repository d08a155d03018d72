"""Layers with PyTorch's names, arguments and layouts.

Each layer is a thin class over the pure functions in :mod:`clearconv.engine`;
:func:`use_textbook` runs layers on :mod:`clearconv.functional` instead.
"""

from clearconv.nn.activation import LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from clearconv.nn.classic import ChannelShuffle, LocalResponseNorm, ReLU6
from clearconv.nn.config import LAYER_TYPES, from_config, to_config
from clearconv.nn.container import Residual, Sequential
from clearconv.nn.conv import Conv1d, Conv2d
from clearconv.nn.dropout import Dropout
from clearconv.nn.flatten import Flatten
from clearconv.nn.linear import Linear
from clearconv.nn.loss import CrossEntropyLoss, MSELoss
from clearconv.nn.merge import Add, Concat, Identity
from clearconv.nn.module import Module
from clearconv.nn.norm import BatchNorm1d, BatchNorm2d
from clearconv.nn.parameter import Parameter
from clearconv.nn.pool import (
    AdaptiveAvgPool2d,
    AvgPool1d,
    AvgPool2d,
    MaxPool1d,
    MaxPool2d,
)
from clearconv.nn.sequence import AdaptiveMaxPool1d, Embedding, Permute
from clearconv.nn.textbook import use_textbook
from clearconv.nn.upsample import ConvTranspose2d, Upsample

__all__ = [
    "LAYER_TYPES",
    "AdaptiveAvgPool2d",
    "AdaptiveMaxPool1d",
    "Add",
    "AvgPool1d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "ChannelShuffle",
    "Concat",
    "Conv1d",
    "Conv2d",
    "ConvTranspose2d",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "Flatten",
    "Identity",
    "LeakyReLU",
    "Linear",
    "LocalResponseNorm",
    "MSELoss",
    "MaxPool1d",
    "MaxPool2d",
    "Module",
    "Parameter",
    "Permute",
    "ReLU",
    "ReLU6",
    "Residual",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "Upsample",
    "from_config",
    "to_config",
    "use_textbook",
]
