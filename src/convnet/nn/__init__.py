"""Layers with PyTorch's names, arguments and layouts.

Each layer is a thin class over the pure functions in :mod:`convnet.functional`.
"""

from convnet.nn.module import Module
from convnet.nn.parameter import Parameter

__all__ = ["Module", "Parameter"]
