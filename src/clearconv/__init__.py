"""clearconv: convolutional neural networks from first principles, in NumPy."""

from clearconv import io, model, nn, optim, zoo
from clearconv.io import ModelFileError, load, save
from clearconv.model import Model
from clearconv.summary import summary

__version__ = "0.1.0"

__all__ = [
    "Model",
    "ModelFileError",
    "__version__",
    "io",
    "load",
    "model",
    "nn",
    "optim",
    "save",
    "summary",
    "zoo",
]
