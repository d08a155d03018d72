"""convnet: convolutional neural networks from first principles, in NumPy."""

from convnet import io, model, models, nn, optim
from convnet.io import ModelFileError, load, save
from convnet.model import Model
from convnet.summary import summary

__version__ = "0.1.0"

__all__ = [
    "Model",
    "ModelFileError",
    "__version__",
    "io",
    "load",
    "model",
    "models",
    "nn",
    "optim",
    "save",
    "summary",
]
