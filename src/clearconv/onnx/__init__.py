"""ONNX interchange: :func:`export` a clearconv model, :func:`load` one written elsewhere.

Both directions use the ``onnx`` package (the ``onnx`` extra), imported only
when called. Export writes opset :data:`OPSET` (17) by default;
import reads the operator set export writes plus what ``torch.onnx.export``
emits for common CNNs, and refuses anything else with one message that lists
every unsupported node.
"""

from clearconv.onnx._common import MIN_OPSET, OPSET
from clearconv.onnx.export import export, to_onnx
from clearconv.onnx.load import UnsupportedModelError, from_onnx, load, read_proto

__all__ = [
    "MIN_OPSET",
    "OPSET",
    "UnsupportedModelError",
    "export",
    "from_onnx",
    "load",
    "read_proto",
    "to_onnx",
]
