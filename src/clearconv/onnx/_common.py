"""What export and import share: the lazy ``onnx`` import and the metadata keys."""

from __future__ import annotations

from types import ModuleType

#: The opset :func:`clearconv.onnx.export` writes unless told otherwise.
OPSET = 17
#: The oldest opset export can write: Softmax normalises one axis from opset 13 on.
MIN_OPSET = 13

# metadata_props keys; the values are JSON strings. Files exported before the
# rename carry the same keys under LEGACY_PREFIX, which import also reads.
META_PREFIX = "clearconv."
LEGACY_PREFIX = "convnet."
META_CLASS_NAMES = META_PREFIX + "class_names"
META_NORMALIZATION = META_PREFIX + "normalization"
META_INPUT_SHAPE = META_PREFIX + "input_shape"
META_MODEL = META_PREFIX + "meta"

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
BATCH_DIM = "N"


def require_onnx() -> ModuleType:
    """The ``onnx`` package, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - onnx is installed in the test env
        from clearconv._extras import install_hint

        raise ImportError(
            f"ONNX export and import need the onnx package: {install_hint('onnx')}"
        ) from exc
    return onnx
