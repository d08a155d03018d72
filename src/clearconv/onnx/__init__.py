"""ONNX interchange: :func:`export` a clearconv model, :func:`load` one written elsewhere.

Both directions use the ``onnx`` package (the ``onnx`` extra), imported only
when called. Export writes opset :data:`OPSET` (17) by default;
import reads any series-parallel graph of the operators export writes, what
``torch.onnx.export`` emits for common CNNs and what the ONNX model zoo's
classic CNNs use (opsets 9 to 17), and refuses anything else with one message
that lists every unsupported node, grouped by operator.
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
