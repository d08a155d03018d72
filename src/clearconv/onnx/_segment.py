"""ONNX mappings of the segmentation layers, kept apart from the classifier's tables.

========================  ==============================================
clearconv                 ONNX
========================  ==============================================
ConvTranspose2d           ConvTranspose (pads, output_padding, group, dilations)
Upsample                  Resize with ``scales``: nearest as ``asymmetric`` /
                          ``floor``, bilinear as ``linear`` with ``align_corners``
                          or ``pytorch_half_pixel`` (what PyTorch exports)
========================  ==============================================

:mod:`clearconv.onnx.export` lists the two emitters in its ``EMITTERS`` and
:mod:`clearconv.onnx.ops` the two handlers in its ``OPS``; a U-Net's skips
(Concat of branches) go through the common Concat mappings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from clearconv import nn
from clearconv.onnx.shapes import Refuse

if TYPE_CHECKING:
    from clearconv.onnx.load import Importer

#: Attributes the importer accepts for these operators (None: any value, checked later).
ATTRS: dict[str, dict[str, Any]] = {
    "ConvTranspose": {
        "kernel_shape": None,
        "strides": None,
        "pads": None,
        "dilations": None,
        "output_padding": None,
        "group": None,
        "auto_pad": lambda v: v in ("NOTSET", b"NOTSET"),
    },
    "Resize": {
        "mode": lambda v: v in ("nearest", "linear"),
        "coordinate_transformation_mode": lambda v: (
            v in ("asymmetric", "align_corners", "pytorch_half_pixel", "half_pixel")
        ),
        "nearest_mode": lambda v: v in ("floor",),
        "cubic_coeff_a": None,
        "exclude_outside": lambda v: v == 0,
        "extrapolation_value": None,
        "antialias": lambda v: v == 0,
    },
}


def emit_conv_transpose(g: Any, m: nn.ConvTranspose2d, at: Any) -> str:
    """ConvTranspose on ``at.x`` (``at``: the exporter's place, with x, path and name)."""
    inputs = [at.x, g.const(at.path + "weight", np.asarray(m.weight.data))]
    if m.bias is not None:
        inputs.append(g.const(at.path + "bias", np.asarray(m.bias.data)))
    ph, pw = m.padding
    return g.node(
        "ConvTranspose",
        inputs,
        at.name,
        kernel_shape=list(m.kernel_size),
        strides=list(m.stride),
        dilations=list(m.dilation),
        pads=[ph, pw, ph, pw],
        output_padding=list(m.output_padding),
        group=m.groups,
    )


def emit_upsample(g: Any, m: nn.Upsample, at: Any) -> str:
    """Resize with constant scales on ``at.x``."""
    sh, sw = m._scale
    scales = g.const(at.path + "scales", np.array([1, 1, sh, sw], np.float32))
    roi = g.const(at.path + "roi", np.zeros(0, np.float32))
    if m.mode == "nearest":
        attrs = {"mode": "nearest", "coordinate_transformation_mode": "asymmetric"}
        attrs["nearest_mode"] = "floor"
    else:
        ctm = "align_corners" if m.align_corners else "pytorch_half_pixel"
        attrs = {"mode": "linear", "coordinate_transformation_mode": ctm}
    return g.node("Resize", [at.x, roi, scales], at.name, **attrs)


def conv_transpose(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    """The importer's handler of ConvTranspose: one ConvTranspose2d layer."""
    x = imp.data(node)
    w = imp.const(node, 1, "the weight W")
    b = imp.const(node, 2, "the bias B", required=False)
    try:
        cfg = conv_transpose_config(w, b, a, x.shape)
    except ValueError as exc:
        raise Refuse(str(exc)) from None
    state = {"weight": w} if b is None else {"weight": w, "bias": b}
    return [imp.append(x, imp.layer(cfg, state))]


def resize(imp: Importer, node: Any, a: dict[str, Any]) -> list[Any]:
    """The importer's handler of Resize by constant scales: one Upsample layer."""
    x = imp.data(node)
    if len(node.input) > 3 and node.input[3]:
        raise Refuse("Resize by sizes is not supported; give scales")
    try:
        cfg = resize_config(imp.const(node, 2, "the scales", required=False), a)
    except ValueError as exc:
        raise Refuse(str(exc)) from None
    return [imp.append(x, imp.layer(cfg))]


def conv_transpose_config(w: np.ndarray, b: np.ndarray | None, a: dict[str, Any], in_shape):
    """The ConvTranspose2d config of an ONNX ConvTranspose node; ValueError when it has none."""
    if w.ndim != 4 or len(in_shape) != 4:
        raise ValueError(f"a ConvTranspose of weight {w.shape} on input {in_shape}; only 2-D")
    group = int(a.get("group", 1))
    if w.shape[0] != in_shape[1]:
        raise ValueError(f"weight {w.shape} does not match {in_shape[1]} input channels")
    pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
    if pads[:2] != pads[2:]:
        raise ValueError(f"asymmetric pads {pads}")
    if "output_shape" in a:
        raise ValueError("output_shape is not supported; give pads and output_padding")
    k = [int(v) for v in a.get("kernel_shape", w.shape[2:])]
    if k != list(w.shape[2:]):
        raise ValueError(f"kernel_shape={k} but the weight is {w.shape}")
    return {
        "type": "ConvTranspose2d",
        "in_channels": int(w.shape[0]),
        "out_channels": int(w.shape[1]) * group,
        "kernel_size": k,
        "stride": [int(v) for v in a.get("strides", [1, 1])],
        "padding": pads[:2],
        "output_padding": [int(v) for v in a.get("output_padding", [0, 0])],
        "groups": group,
        "dilation": [int(v) for v in a.get("dilations", [1, 1])],
        "bias": b is not None,
    }


def resize_config(scales: np.ndarray | None, a: dict[str, Any]) -> dict[str, Any]:
    """The Upsample config of an ONNX Resize node with constant ``scales``."""
    if scales is None or scales.shape != (4,) or list(scales[:2]) != [1, 1]:
        raise ValueError(f"Resize needs constant scales (1, 1, sH, sW), got {scales}")
    mode = a.get("mode", "nearest")
    ctm = a.get("coordinate_transformation_mode", "half_pixel")
    if mode == "nearest":
        if ctm != "asymmetric" or a.get("nearest_mode", "round_prefer_floor") != "floor":
            raise ValueError(
                "nearest Resize is read only as asymmetric/floor (PyTorch's nearest); "
                f"got {ctm}/{a.get('nearest_mode', 'round_prefer_floor')}"
            )
        align = False
    elif ctm in ("align_corners", "pytorch_half_pixel", "half_pixel"):
        align = ctm == "align_corners"
    else:
        raise ValueError(f"linear Resize with coordinate_transformation_mode {ctm!r}")
    return {
        "type": "Upsample",
        "scale_factor": [float(scales[2]), float(scales[3])],
        "mode": "nearest" if mode == "nearest" else "bilinear",
        "align_corners": align,
    }
