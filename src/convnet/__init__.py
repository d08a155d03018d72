"""convnet: convolutional neural networks from first principles, in NumPy."""

from convnet import nn, optim
from convnet.summary import summary

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "nn",
    "optim",
    "summary",
]
