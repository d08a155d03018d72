"""The model zoo: architectures by name, as configs, plus default training recipes.

Every zoo model is a plain config (see :mod:`clearconv.nn.config`) written to
match its PyTorch definition layer for layer, with sizes inferred from the
input shape, so the channels and the image size adapt to the data (a
``resnet`` on grey images, ``lenet5`` on 32x32) and the last Linear layer
to the number of classes.

========  ===============  ==========================================================
name      input, classes   what it is
========  ===============  ==========================================================
xo        (1, 9, 9), 2     the tutorials' X/O toy: 3x3 features, ReLU, 2x2 max pool
                           (ceil_mode pads the ragged border), a fully connected vote
lenet5    (1, 28, 28), 10  LeNet-5 with ReLU and max pooling (padding 2 on the first conv)
simple    (1, 28, 28), 10  conv(30, 5)-ReLU-pool, dense 100, dense 10
mnist     (1, 28, 28), 10  conv-BN-ReLU 32, 32, pool, 64, 64, pool, dense 256 + dropout
resnet    (3, 32, 32), 10  a small ResNet (16-32-64, two blocks per stage, global pool)
alexnet   (3, 224, 224)    torchvision's AlexNet (61.1 M parameters)
vgg11     (3, 224, 224)    torchvision's VGG-11 (132.9 M parameters)
resnet18  (3, 224, 224)    torchvision's ResNet-18 (11.7 M parameters)
googlenet (3, 224, 224)    torchvision's GoogLeNet, no auxiliary heads (6.6 M): Concat
squeezenet1_1              torchvision's SqueezeNet 1.1 (1.2 M): Fire modules (Concat)
densenet121                torchvision's DenseNet-121 (8.0 M): dense layers (Concat)
resnet50  (3, 224, 224)    torchvision's ResNet-50 (25.6 M): bottleneck blocks
mobilenet_v2               torchvision's MobileNetV2 (3.5 M): inverted residuals, depthwise
                           3x3 convolutions (groups = channels), Add(Identity(), block)
unet      (3, 64, 64), 4   a small U-Net for segmentation (one class per pixel): levels of
                           16-32-64-128 channels and a 256-channel bottom (two conv-BN-ReLU
                           each), 2x2 max pooling down, 2x2 stride-2 ConvTranspose2d up,
                           skips concatenated; any size divisible by 16
fcn       (3, 64, 64), 4   a fully convolutional net: three conv-pool stages to 1/8 size,
                           a 1x1 classifier, bilinear Upsample(8) back (sizes divisible by 8)
zfnet     (3, 224, 224)    Zeiler & Fergus 2013 (62,357,608 parameters, counted from the
                           paper's Fig. 3: AlexNet with a 7x7 stride-2 first layer, LRN)
========  ===============  ==========================================================

Architecture files (TOML or JSON) hold ``{"input_shape": [1, 28, 28],
"layers": [{type = "Conv2d", out_channels = 6, kernel_size = 5}, ...]}``;
sizes left out are inferred. TOML is read with :mod:`tomllib` (Python 3.11+)
or the ``tomli`` package on 3.10; JSON needs nothing.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from clearconv.nn.config import from_config
from clearconv.nn.module import Module

__all__ = [
    "DEFAULT_INPUT_SHAPES",
    "NAMES",
    "build",
    "config",
    "read_architecture",
    "recipe",
    "shape_only_rng",
]

NAMES = (
    "xo", "lenet5", "simple", "mnist", "resnet", "alexnet", "vgg11", "resnet18",
    "googlenet", "squeezenet1_1", "densenet121", "resnet50", "mobilenet_v2", "zfnet",
    "audio2d", "audio1d", "textcnn", "unet", "fcn",
)  # fmt: skip
#: Zoo models that label every pixel (output ``(N, classes, H, W)``), and the
#: factor their input sizes must be divisible by.
SEGMENTATION = {"unet": 16, "fcn": 8}

# (input shape, number of classes) each zoo model is defined for.
DEFAULT_INPUT_SHAPES: dict[str, tuple[int, ...]] = {
    "xo": (1, 9, 9),
    "lenet5": (1, 28, 28),
    "simple": (1, 28, 28),
    "mnist": (1, 28, 28),
    "resnet": (3, 32, 32),
    "alexnet": (3, 224, 224),
    "vgg11": (3, 224, 224),
    "resnet18": (3, 224, 224),
    "googlenet": (3, 224, 224),
    "squeezenet1_1": (3, 224, 224),
    "densenet121": (3, 224, 224),
    "resnet50": (3, 224, 224),
    "mobilenet_v2": (3, 224, 224),
    "zfnet": (3, 224, 224),
    "audio2d": (1, 40, 97),  # 40 mel bands x 97 frames of 10 ms: one second at 8 kHz
    "audio1d": (1, 8000),  # one second of samples at 8 kHz
    "textcnn": (56,),  # 56 token indices: a sentence of up to 56 words and marks
    "unet": (3, 64, 64),
    "fcn": (3, 64, 64),
}
_IMAGENET = ("alexnet", "vgg11", "resnet18", "googlenet", "squeezenet1_1", "densenet121",
             "resnet50", "mobilenet_v2", "zfnet")  # fmt: skip
_DEFAULT_CLASSES = {"xo": 2, "textcnn": 2, "unet": 4, "fcn": 4, **dict.fromkeys(_IMAGENET, 1000)}


class _ShapeOnlyGenerator(np.random.Generator):
    """A Generator whose ``uniform`` returns read-only zeros without memory.

    Layers initialise weights with ``rng.uniform``; with this generator they
    get broadcast views of one zero, so building VGG-11 (133 M weights) for a
    summary or before loading saved weights takes milliseconds and no memory.
    Other draws (Dropout masks) are ordinary random numbers.
    """

    def uniform(self, low=0.0, high=1.0, size=None):  # type: ignore[override]
        return np.broadcast_to(np.float32(0.0), () if size is None else size)


def shape_only_rng() -> np.random.Generator:
    """A generator that makes layers with zero, read-only weights (for shapes only)."""
    return _ShapeOnlyGenerator(np.random.PCG64())


# -- layer shorthands (configs) -------------------------------------------------
def _conv(out: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True) -> dict:
    cfg: dict[str, Any] = {"type": "Conv2d", "out_channels": out, "kernel_size": k}
    if stride != 1:
        cfg["stride"] = stride
    if padding:
        cfg["padding"] = padding
    if not bias:
        cfg["bias"] = False
    return cfg


def _pool(k: int, stride: int | None = None, padding: int = 0, ceil_mode: bool = False) -> dict:
    cfg: dict[str, Any] = {"type": "MaxPool2d", "kernel_size": k}
    if stride is not None:
        cfg["stride"] = stride
    if padding:
        cfg["padding"] = padding
    if ceil_mode:
        cfg["ceil_mode"] = True
    return cfg


def _linear(out: int) -> dict:
    return {"type": "Linear", "out_features": out}


RELU = {"type": "ReLU"}
FLATTEN = {"type": "Flatten"}
BN = {"type": "BatchNorm2d"}


def _seq(*layers: dict) -> dict:
    return {"type": "Sequential", "layers": [dict(layer) for layer in layers]}


def _basic_block(channels: int) -> dict:
    """ResNet's BasicBlock at constant width: ``relu(x + bn(conv(relu(bn(conv(x))))))``."""
    block = _seq(
        _conv(channels, 3, padding=1, bias=False),
        BN,
        RELU,
        _conv(channels, 3, padding=1, bias=False),
        BN,
    )
    return {"type": "Residual", "block": block}


def _down_block(channels: int) -> list[dict]:
    """A stage's first block when it halves the size and changes the width.

    torchvision adds ``conv1x1(stride 2) + BN`` on the skip path: the
    :class:`~clearconv.nn.Residual`'s ``shortcut`` (the published shapes and
    parameter counts).
    """
    main = _seq(
        _conv(channels, 3, stride=2, padding=1, bias=False),
        BN,
        RELU,
        _conv(channels, 3, padding=1, bias=False),
        BN,
    )
    skip = _seq(_conv(channels, 1, stride=2, bias=False), BN)
    return [{"type": "Residual", "block": main, "shortcut": skip}, RELU]


def _xo(k: int) -> list[dict]:
    # The tutorial: 3x3 feature detectors, ReLU, 2x2 max pooling (ceil_mode pads
    # the ragged border: 9 -> 7 -> 4 -> 2 -> 1), stacked twice as in its "deep
    # stacking" step, then every pooled feature votes for X or O.
    p = _pool(2, ceil_mode=True)
    return [_conv(8, 3), RELU, p, _conv(16, 3), RELU, p, FLATTEN, _linear(k)]


def _lenet5(k: int) -> list[dict]:
    return [
        _conv(6, 5, padding=2), RELU, _pool(2),
        _conv(16, 5), RELU, _pool(2),
        FLATTEN, _linear(120), RELU, _linear(84), RELU, _linear(k),
    ]  # fmt: skip


def _simple(k: int) -> list[dict]:
    return [_conv(30, 5), RELU, _pool(2), FLATTEN, _linear(100), RELU, _linear(k)]


def _mnist(k: int) -> list[dict]:
    # The well-known 99.5%+ Kaggle/Keras MNIST net (valid 3x3 convs keep it cheap:
    # 28 -> 26 -> 24 -> 12 -> 10 -> 8 -> 4).
    def cbr(c: int) -> list[dict]:
        return [_conv(c, 3, bias=False), BN, RELU]

    return [
        *cbr(32), *cbr(32), _pool(2),
        *cbr(64), *cbr(64), _pool(2),
        FLATTEN, _linear(256), {"type": "BatchNorm1d"}, RELU, {"type": "Dropout", "p": 0.4},
        _linear(k),
    ]  # fmt: skip


def _resnet(k: int) -> list[dict]:
    layers = [_conv(16, 3, padding=1, bias=False), BN, RELU]
    for i, width in enumerate((16, 32, 64)):
        if i > 0:
            layers += _down_block(width)
        else:
            layers += [_basic_block(width), RELU]
        layers += [_basic_block(width), RELU]
    return [*layers, {"type": "AdaptiveAvgPool2d", "output_size": 1}, FLATTEN, _linear(k)]


def _alexnet(k: int) -> list[dict]:
    return [
        _conv(64, 11, stride=4, padding=2), RELU, _pool(3, 2),
        _conv(192, 5, padding=2), RELU, _pool(3, 2),
        _conv(384, 3, padding=1), RELU,
        _conv(256, 3, padding=1), RELU,
        _conv(256, 3, padding=1), RELU, _pool(3, 2),
        {"type": "AdaptiveAvgPool2d", "output_size": 6}, FLATTEN,
        {"type": "Dropout", "p": 0.5}, _linear(4096), RELU,
        {"type": "Dropout", "p": 0.5}, _linear(4096), RELU,
        _linear(k),
    ]  # fmt: skip


def _vgg11(k: int) -> list[dict]:
    layers: list[dict] = []
    for v in (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"):
        layers += [_pool(2, 2)] if v == "M" else [_conv(int(v), 3, padding=1), RELU]
    return [
        *layers,
        {"type": "AdaptiveAvgPool2d", "output_size": 7}, FLATTEN,
        _linear(4096), RELU, {"type": "Dropout", "p": 0.5},
        _linear(4096), RELU, {"type": "Dropout", "p": 0.5},
        _linear(k),
    ]  # fmt: skip


def _resnet18(k: int) -> list[dict]:
    layers = [_conv(64, 7, stride=2, padding=3, bias=False), BN, RELU, _pool(3, 2, padding=1)]
    for i, width in enumerate((64, 128, 256, 512)):
        layers += [_basic_block(width), RELU] if i == 0 else _down_block(width)
        layers += [_basic_block(width), RELU]
    return [*layers, {"type": "AdaptiveAvgPool2d", "output_size": 1}, FLATTEN, _linear(k)]


# -- branched classics (Concat / Add containers) ---------------------------------
def _avgpool(k: int, stride: int | None = None) -> dict:
    cfg: dict[str, Any] = {"type": "AvgPool2d", "kernel_size": k}
    if stride is not None:
        cfg["stride"] = stride
    return cfg


GLOBAL_POOL = {"type": "AdaptiveAvgPool2d", "output_size": 1}


def _bconv(out: int, k: int, stride: int = 1, padding: int = 0) -> list[dict]:
    """GoogLeNet's BasicConv2d: conv without bias, BN (eps 1e-3), ReLU."""
    return [_conv(out, k, stride, padding, bias=False), {"type": "BatchNorm2d", "eps": 1e-3}, RELU]


def _inception(c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int) -> dict:
    # torchvision's Inception: its "5x5" branch uses a 3x3 kernel (kept for the same weights)
    return {"type": "Concat", "branches": [
        _seq(*_bconv(c1, 1)),
        _seq(*_bconv(c3r, 1), *_bconv(c3, 3, padding=1)),
        _seq(*_bconv(c5r, 1), *_bconv(c5, 3, padding=1)),
        _seq(_pool(3, 1, padding=1, ceil_mode=True), *_bconv(pool, 1)),
    ]}  # fmt: skip


def _googlenet(k: int) -> list[dict]:
    # torchvision's GoogLeNet in inference form (no auxiliary heads)
    p = _pool(3, 2, ceil_mode=True)
    return [
        *_bconv(64, 7, stride=2, padding=3), p, *_bconv(64, 1), *_bconv(192, 3, padding=1), p,
        _inception(64, 96, 128, 16, 32, 32), _inception(128, 128, 192, 32, 96, 64), p,
        _inception(192, 96, 208, 16, 48, 64), _inception(160, 112, 224, 24, 64, 64),
        _inception(128, 128, 256, 24, 64, 64), _inception(112, 144, 288, 32, 64, 64),
        _inception(256, 160, 320, 32, 128, 128), _pool(2, 2, ceil_mode=True),
        _inception(256, 160, 320, 32, 128, 128), _inception(384, 192, 384, 48, 128, 128),
        GLOBAL_POOL, FLATTEN, {"type": "Dropout", "p": 0.2}, _linear(k),
    ]  # fmt: skip


def _fire(squeeze: int, e1: int, e3: int) -> list[dict]:
    """SqueezeNet's Fire module: a 1x1 squeeze, then 1x1 and 3x3 expands side by side."""
    expand = {"type": "Concat", "branches": [_seq(_conv(e1, 1), RELU),
                                             _seq(_conv(e3, 3, padding=1), RELU)]}  # fmt: skip
    return [_conv(squeeze, 1), RELU, expand]


def _squeezenet1_1(k: int) -> list[dict]:
    p = _pool(3, 2, ceil_mode=True)
    return [
        _conv(64, 3, stride=2), RELU, p, *_fire(16, 64, 64), *_fire(16, 64, 64), p,
        *_fire(32, 128, 128), *_fire(32, 128, 128), p,
        *_fire(48, 192, 192), *_fire(48, 192, 192), *_fire(64, 256, 256), *_fire(64, 256, 256),
        {"type": "Dropout", "p": 0.5}, _conv(k, 1), RELU, GLOBAL_POOL, FLATTEN,
    ]  # fmt: skip


def _densenet121(k: int, growth: int = 32, blocks=(6, 12, 24, 16), width: int = 64) -> list[dict]:
    # Each dense layer's maps join all the maps before it: Concat(Identity, layer).
    layers = [_conv(width, 7, stride=2, padding=3, bias=False), BN, RELU, _pool(3, 2, padding=1)]
    c = width
    for i, n in enumerate(blocks):
        for _ in range(n):
            layer = _seq(BN, RELU, _conv(4 * growth, 1, bias=False),
                         BN, RELU, _conv(growth, 3, padding=1, bias=False))  # fmt: skip
            layers.append({"type": "Concat", "branches": [{"type": "Identity"}, layer]})
            c += growth
        if i < len(blocks) - 1:  # transition: halve the channels and the size
            c //= 2
            layers += [BN, RELU, _conv(c, 1, bias=False), _avgpool(2, 2)]
    return [*layers, BN, RELU, GLOBAL_POOL, FLATTEN, _linear(k)]


def _bottleneck(width: int, stride: int, project: bool) -> list[dict]:
    """ResNet-50's block: 1x1 down, 3x3 (strided), 1x1 up to 4x width, plus the skip."""
    block = _seq(
        _conv(width, 1, bias=False), BN, RELU,
        _conv(width, 3, stride=stride, padding=1, bias=False), BN, RELU,
        _conv(4 * width, 1, bias=False), BN,
    )  # fmt: skip
    res: dict[str, Any] = {"type": "Residual", "block": block}
    if project:
        res["shortcut"] = _seq(_conv(4 * width, 1, stride=stride, bias=False), BN)
    return [res, RELU]


def _resnet50(k: int) -> list[dict]:
    layers = [_conv(64, 7, stride=2, padding=3, bias=False), BN, RELU, _pool(3, 2, padding=1)]
    for i, (width, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
        layers += _bottleneck(width, 1 if i == 0 else 2, project=True)
        for _ in range(n - 1):
            layers += _bottleneck(width, 1, project=False)
    return [*layers, GLOBAL_POOL, FLATTEN, _linear(k)]


RELU6 = {"type": "ReLU6"}


def _cbr6(out: int, k: int, stride: int = 1, groups: int = 1) -> list[dict]:
    """MobileNetV2's Conv2dNormActivation: conv without bias ("same" padding), BN, ReLU6."""
    conv = _conv(out, k, stride, (k - 1) // 2, bias=False)
    if groups != 1:
        conv["groups"] = groups
    return [conv, BN, RELU6]


def _inverted_residual(c_in: int, c_out: int, stride: int, expand: int) -> dict:
    """MobileNetV2's block: 1x1 expand, 3x3 depthwise, 1x1 linear projection.

    The skip (``Add(Identity(), block)``) is there only when the block keeps the
    size and the width, as in torchvision; with ``expand == 1`` there is no expansion.
    """
    hidden = c_in * expand
    layers = _cbr6(hidden, 1) if expand != 1 else []
    layers += [*_cbr6(hidden, 3, stride, groups=hidden), _conv(c_out, 1, bias=False), BN]
    block = _seq(*layers)
    if stride == 1 and c_in == c_out:
        return {"type": "Add", "branches": [{"type": "Identity"}, block]}
    return block


#: MobileNetV2's stages: (expansion t, width c, blocks n, first stride s), Table 2 of the paper.
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip


def _mobilenet_v2(k: int, stages=MOBILENET_V2_STAGES, width: int = 32, last: int = 1280,
                  stride: int = 2) -> list[dict]:  # fmt: skip
    layers, c = _cbr6(width, 3, stride), width
    for t, c_out, n, s in stages:
        for i in range(n):
            layers.append(_inverted_residual(c, c_out, s if i == 0 else 1, t))
            c = c_out
    return [*layers, *_cbr6(last, 1), GLOBAL_POOL, FLATTEN, {"type": "Dropout", "p": 0.2},
            _linear(k)]  # fmt: skip


def _zfnet(k: int) -> list[dict]:
    # Zeiler & Fergus 2013, Fig. 3: AlexNet with a 7x7 stride-2 first layer and a
    # stride-2 second layer (224 -> 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6), local
    # contrast normalisation after the first two layers, no grouped convolutions.
    lrn = {"type": "LocalResponseNorm", "size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}
    p = _pool(3, 2, ceil_mode=True)
    return [
        _conv(96, 7, stride=2, padding=1), RELU, p, lrn,
        _conv(256, 5, stride=2), RELU, p, lrn,
        _conv(384, 3, padding=1), RELU, _conv(384, 3, padding=1), RELU,
        _conv(256, 3, padding=1), RELU, p, FLATTEN,
        _linear(4096), RELU, {"type": "Dropout", "p": 0.5},
        _linear(4096), RELU, {"type": "Dropout", "p": 0.5}, _linear(k),
    ]  # fmt: skip


# -- sound ---------------------------------------------------------------------------
def _audio2d(k: int) -> list[dict]:
    # A log-mel spectrogram read as an image: three conv-BN-ReLU-pool blocks
    # (40x97 -> 20x48 -> 10x24 -> 5x12), then one linear layer over all of it.
    # Flattening keeps *when* each sound came: with global average pooling
    # instead, FSDD's test accuracy after the same 10 epochs was 96.7%, not 97+%.
    def block(c: int) -> list[dict]:
        return [_conv(c, 3, padding=1, bias=False), BN, RELU, _pool(2)]

    return [*block(32), *block(64), *block(128), FLATTEN,
            {"type": "Dropout", "p": 0.3}, _linear(k)]  # fmt: skip


def _audio1d(k: int) -> list[dict]:
    # The raw waveform (Dai et al. 2017's M5): a wide first filter with stride 4
    # (10 ms at 8 kHz), then small filters, each block pooling time by 4.
    def block(c: int, kernel: int, stride: int = 1) -> list[dict]:
        conv = {"type": "Conv1d", "out_channels": c, "kernel_size": kernel, "bias": False}
        if stride != 1:
            conv["stride"] = stride
        return [conv, {"type": "BatchNorm1d"}, RELU, {"type": "MaxPool1d", "kernel_size": 4}]

    return [*block(32, 80, 4), *block(32, 3), *block(64, 3), *block(64, 3), FLATTEN,
            {"type": "Dropout", "p": 0.3}, _linear(k)]  # fmt: skip


# -- text ----------------------------------------------------------------------------
#: Rows of textcnn's embedding table unless the data's vocabulary says otherwise.
DEFAULT_VOCAB_SIZE = 20_000


def _textcnn(k: int, widths: tuple[int, ...] = (3, 4, 5), filters: int = 100,
             dim: int = 128) -> list[dict]:  # fmt: skip
    # Kim (2014): word vectors (N, L, D) as D channels over L positions; filters of
    # widths 3, 4 and 5 side by side, each kept at its strongest position (max over
    # time), concatenated, dropout, one linear layer.
    def branch(w: int) -> dict:
        conv = {"type": "Conv1d", "out_channels": filters, "kernel_size": w}
        return _seq(conv, RELU, {"type": "AdaptiveMaxPool1d", "output_size": 1})

    embed = {"type": "Embedding", "num_embeddings": DEFAULT_VOCAB_SIZE, "embedding_dim": dim,
             "padding_idx": 0}  # fmt: skip
    return [embed, {"type": "Permute", "dims": [0, 2, 1]},
            {"type": "Concat", "branches": [branch(w) for w in widths]},
            FLATTEN, {"type": "Dropout", "p": 0.5}, _linear(k)]  # fmt: skip


# -- segmentation --------------------------------------------------------------------
def _cbr(c: int) -> list[dict]:
    """Two 3x3 conv-BN-ReLU at width ``c`` (size kept): one U-Net level."""
    return [_conv(c, 3, padding=1, bias=False), BN, RELU] * 2


def _unet(k: int, widths: tuple[int, ...] = (16, 32, 64, 128), bottom: int = 256) -> list[dict]:
    """U-Net: each level is ``cbr, Concat(Identity, pool-deeper-up), cbr``; the bottom,
    below the last pool, is ``cbr`` at ``bottom`` channels. A skip is a Concat of the
    level's maps with what came back up, nested once per level (see :mod:`clearconv.nn.merge`)."""
    # The bottom doubles the last level's width, as in the U-Net paper. It runs at
    # 1/16 of the input size, so it costs little time: 128 channels there ended the
    # recipe at test mean IoU 0.78 on the generated shapes, 256 at 0.82-0.85.

    def level(i: int) -> list[dict]:
        if i == len(widths):  # the bottom, at 1/16 of the input size
            return _cbr(bottom)
        c = widths[i]
        up = {"type": "ConvTranspose2d", "out_channels": c, "kernel_size": 2, "stride": 2}
        down_up = _seq(_pool(2), *level(i + 1), up)
        return [*_cbr(c), {"type": "Concat", "branches": [{"type": "Identity"}, down_up]}, *_cbr(c)]

    return [*level(0), _conv(k, 1)]


def _fcn(k: int) -> list[dict]:
    stages = [layer for c in (32, 64, 128) for layer in (*_cbr(c)[:3], _pool(2))]
    return [
        *stages, *_cbr(128)[:3], _conv(k, 1),
        {"type": "Upsample", "scale_factor": 8, "mode": "bilinear"},
    ]  # fmt: skip


_ZOO = {
    "xo": _xo,
    "lenet5": _lenet5,
    "simple": _simple,
    "mnist": _mnist,
    "resnet": _resnet,
    "alexnet": _alexnet,
    "vgg11": _vgg11,
    "resnet18": _resnet18,
    "googlenet": _googlenet,
    "squeezenet1_1": _squeezenet1_1,
    "densenet121": _densenet121,
    "resnet50": _resnet50,
    "mobilenet_v2": _mobilenet_v2,
    "zfnet": _zfnet,
    "audio2d": _audio2d,
    "audio1d": _audio1d,
    "textcnn": _textcnn,
    "unet": _unet,
    "fcn": _fcn,
}


def _check_shape(owner: str, input_shape: Any) -> tuple[int, ...]:
    if isinstance(input_shape, (str, bytes)):
        raise TypeError(f"{owner}: input_shape must be a tuple of ints, got {input_shape!r}")
    try:
        shape = tuple(input_shape)
    except TypeError:
        raise TypeError(
            f"{owner}: input_shape must be a tuple of ints, got {input_shape!r}"
        ) from None
    if len(shape) not in (1, 2, 3) or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape
    ):
        raise ValueError(
            f"{owner}: input_shape must be (C, H, W), (C, L) or (L,) of positive ints, "
            f"got {shape!r}"
        )
    return tuple(int(s) for s in shape)


def config(
    name: str,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    *,
    vocab_size: int | None = None,
) -> dict[str, Any]:
    """The config of zoo model ``name`` (a ``Sequential``) for ``num_classes`` outputs.

    ``input_shape`` is not needed to write the config (sizes are inferred when
    it is built); it is accepted for symmetry with :func:`build`. ``vocab_size``
    sets the rows of a text model's embedding (default :data:`DEFAULT_VOCAB_SIZE`).

    Raises
    ------
    ValueError
        For an unknown name.
    """
    if name not in _ZOO:
        raise ValueError(f"unknown model {name!r}; the zoo has {', '.join(NAMES)}")
    k = _DEFAULT_CLASSES.get(name, 10) if num_classes is None else num_classes
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    layers = _ZOO[name](int(k))
    if vocab_size is not None:
        if layers[0].get("type") != "Embedding":
            raise ValueError(f"vocab_size is for text models; {name} does not read tokens")
        layers[0]["num_embeddings"] = int(vocab_size)
    return _seq(*layers)


def read_architecture(path: str | os.PathLike) -> dict[str, Any]:
    """Read an architecture file (``.toml`` or ``.json``).

    Returns
    -------
    dict
        ``{"input_shape": [...] (optional), "layers": [...]}``.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    ValueError
        For another suffix, a parse error, or a file without a ``layers`` list.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such architecture file")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            import tomllib  # Python 3.11+
        except ModuleNotFoundError:  # pragma: no cover - Python 3.10
            try:
                import tomli as tomllib  # type: ignore[no-redef]
            except ModuleNotFoundError:
                raise ValueError(
                    f"{path}: reading TOML on Python 3.10 needs the 'tomli' package "
                    "(pip install tomli), or write the architecture as JSON"
                ) from None
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML ({exc})") from exc
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    else:
        raise ValueError(f"{path}: an architecture file must end in .toml or .json")
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        raise ValueError(f"{path}: expected a 'layers' list (and optionally 'input_shape')")
    unknown = sorted(set(data) - {"input_shape", "layers", "name"})
    if unknown:
        raise ValueError(
            f"{path}: unknown top-level keys {unknown}; expected input_shape, layers, name"
        )
    return data


# Layers that pass the class scores through unchanged in number (after a classifier).
_AFTER_CLASSIFIER = frozenset((
    "ReLU", "ReLU6", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Dropout", "Identity",
    "Flatten", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d", "AvgPool2d", "MaxPool2d",
))  # fmt: skip


def classifier(layers: list[Any]) -> tuple[dict[str, Any], str] | None:
    """The layer that sets the number of classes, and its size key: the last Linear
    (``out_features``), or a last convolution (``out_channels``) followed only by
    pooling, flattening or activations (SqueezeNet's fully convolutional head).

    Example
    -------
    >>> classifier([_conv(8, 3), _conv(10, 1), RELU, GLOBAL_POOL, FLATTEN])[1]
    'out_channels'
    """
    for layer in reversed(layers):
        kind = layer.get("type") if isinstance(layer, dict) else None
        if kind == "Linear":
            return layer, "out_features"
        if kind in ("Conv2d", "Conv1d"):
            return layer, "out_channels"
        if kind not in _AFTER_CLASSIFIER:
            return None
    return None


def _set_num_classes(cfg: dict[str, Any], num_classes: int | None, where: str) -> None:
    """Give the classifier layer (:func:`classifier`) ``num_classes`` outputs (or check
    it has some)."""
    found = classifier(cfg.get("layers") or [])
    if found is None:
        if num_classes is None:
            return
        raise ValueError(
            f"{where}: the net must end in a Linear layer (or a convolution followed only by "
            f"pooling and Flatten) to set {num_classes} classes"
        )
    last, key = found
    if num_classes is not None:
        last[key] = int(num_classes)
    elif key not in last:
        raise ValueError(f"{where}: the last {last['type']} needs {key} (or give num_classes)")


def build(
    name_or_path: str | os.PathLike,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    rng: np.random.Generator | None = None,
    *,
    init: bool = True,
    vocab_size: int | None = None,
) -> tuple[Module, tuple[int, ...]]:
    """Build a zoo model by name, or the model an architecture file describes.

    Parameters
    ----------
    name_or_path : str or os.PathLike
        One of :data:`NAMES`, or a path to a ``.toml``/``.json`` architecture file.
    input_shape : tuple of int, optional
        One sample's shape ``(C, H, W)``; default: the model's own (the file's
        ``input_shape``). Channels and image size adapt the layer sizes.
    num_classes : int, optional
        Outputs of the last Linear layer; default: the model's own.
    rng : numpy.random.Generator, optional
        Initial weights (a seed fixes them).
    init : bool, default True
        ``False`` gives zero, read-only weights at no cost: for summaries of
        large nets and for loading saved weights into.
    vocab_size : int, optional
        Rows of a text model's embedding table (the data's vocabulary).

    Returns
    -------
    (net, input_shape)

    Raises
    ------
    TypeError, ValueError
        For an unknown name, a bad file, or an input shape the net cannot take.
    FileNotFoundError
        For a path that does not exist.

    Examples
    --------
    >>> net, shape = build("lenet5", rng=np.random.default_rng(0))
    >>> shape, net.output_shape((2, *shape)), net[7]
    ((1, 28, 28), (2, 10), Linear(in_features=400, out_features=120))
    >>> build("resnet", (1, 32, 32), num_classes=6, init=False)[0].output_shape((1, 1, 32, 32))
    (1, 6)
    """
    name = os.fspath(name_or_path) if isinstance(name_or_path, os.PathLike) else name_or_path
    if not isinstance(name, str):
        raise TypeError(f"build: expected a model name or a file path, got {name_or_path!r}")
    if name in _ZOO:
        cfg = config(name, num_classes=num_classes, vocab_size=vocab_size)
        default_shape: tuple[int, ...] | None = DEFAULT_INPUT_SHAPES[name]
        where = name
    elif name.lower().endswith((".toml", ".json")) or os.path.sep in name:
        data = read_architecture(name)
        cfg = {"type": "Sequential", "layers": copy.deepcopy(data["layers"])}
        where = name
        default_shape = _check_shape(where, data["input_shape"]) if "input_shape" in data else None
        if num_classes is not None:
            check_k = num_classes
            if isinstance(check_k, bool) or not isinstance(check_k, (int, np.integer)):
                raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        _set_num_classes(cfg, num_classes, where)
    else:
        raise ValueError(
            f"unknown model {name!r}; choose one of {', '.join(NAMES)} or a .toml/.json file"
        )
    shape = _check_shape(where, input_shape) if input_shape is not None else default_shape
    if shape is None:
        raise ValueError(f"{where}: no input_shape in the file; pass one, e.g. (1, 28, 28)")
    _check_segmentation_size(name, shape)
    gen = shape_only_rng() if not init else (rng if rng is not None else np.random.default_rng())
    try:
        net = from_config(cfg, shape, rng=gen)
        out = net.output_shape((1, *shape))
    except ValueError as exc:
        raise ValueError(f"{where} cannot take inputs of shape {shape}: {exc}") from exc
    _check_output(where, out, shape)
    return net, shape


def _check_segmentation_size(name: str, shape: tuple[int, ...]) -> None:
    if name in SEGMENTATION and any(s % SEGMENTATION[name] for s in shape[1:]):
        raise ValueError(
            f"{name} needs image sizes divisible by {SEGMENTATION[name]}, got "
            f"{'x'.join(map(str, shape[1:]))}; resize the images (--input-shape)"
        )


def _check_output(where: str, out: tuple[int, ...], shape: tuple[int, ...]) -> None:
    if len(out) != 2 and not (len(out) == 4 and out[2:] == tuple(shape[1:])):
        raise ValueError(
            f"{where}: the net must end in (N, classes) or, for one class per pixel, "
            f"(N, classes, H, W) at the input's size; got output shape {out}"
        )


# -- default training settings --------------------------------------------------
_RECIPES: dict[str, dict[str, Any]] = {
    "xo": dict(epochs=20, batch_size=32, optimizer="adam", lr=0.01, schedule="onecycle"),
    "lenet5": dict(epochs=1, batch_size=32, optimizer="adamw", lr=3e-3, schedule="onecycle"),
    "simple": dict(epochs=1, batch_size=64, optimizer="adamw", lr=3e-3, schedule="onecycle"),
    "mnist": dict(
        epochs=12,
        batch_size=128,
        optimizer="adamw",
        lr=5e-3,
        schedule="onecycle",
        weight_decay=1e-4,
        label_smoothing=0.05,
        augment={"shift": 2, "rotate": 10.0, "scale": 0.1},
    ),
    "resnet": dict(
        epochs=30,
        batch_size=32,
        optimizer="adamw",
        lr=2e-3,
        schedule="onecycle",
        weight_decay=5e-4,
        augment={"shift": 3, "rotate": 15.0, "scale": 0.15, "flip": True},
    ),
    "alexnet": dict(epochs=90, batch_size=128, optimizer="sgd", lr=0.01, schedule="step"),
    "vgg11": dict(epochs=90, batch_size=128, optimizer="sgd", lr=0.01, schedule="step"),
    "resnet18": dict(epochs=90, batch_size=128, optimizer="sgd", lr=0.1, schedule="step"),
    # sound and text: measured on FSDD and rt-polarity (BENCHMARKS.md)
    "audio2d": dict(
        epochs=10, batch_size=32, optimizer="adamw", lr=3e-3, schedule="onecycle", weight_decay=1e-2
    ),
    "audio1d": dict(
        epochs=12, batch_size=32, optimizer="adamw", lr=3e-3, schedule="onecycle", weight_decay=1e-2
    ),
    "textcnn": dict(epochs=4, batch_size=50, optimizer="adamw", lr=1e-3, schedule="onecycle"),
    # Segmentation: many small steps and the eight mirror/quarter-turn symmetries
    # (clearconv.data.segment.PairedAugment's arguments), masks moved alike.
    "unet": dict(
        epochs=30,
        batch_size=4,
        optimizer="adamw",
        lr=3e-3,
        schedule="onecycle",
        augment={"flip": True, "rot90": True, "shift": 4},
    ),
    "fcn": dict(
        epochs=30,
        batch_size=8,
        optimizer="adamw",
        lr=3e-3,
        schedule="onecycle",
        augment={"flip": True, "rot90": True, "shift": 4},
    ),
}
_RECIPE_DEFAULTS: dict[str, Any] = dict(
    epochs=5,
    batch_size=64,
    optimizer="adamw",
    lr=1e-3,
    schedule="onecycle",
    weight_decay=0.0,
    label_smoothing=0.0,
    augment=None,
)


def recipe(name: str | None) -> dict[str, Any]:
    """Default training settings for a zoo model (keyword arguments of ``train.fit``).

    Keys: ``epochs, batch_size, optimizer, lr, schedule, weight_decay,
    label_smoothing, augment`` (``augment``: ``None`` or the keyword arguments
    of :class:`clearconv.data.Augment`). Unknown names (architecture files) get
    general defaults.

    Example
    -------
    >>> r = recipe("lenet5")
    >>> r["epochs"], r["schedule"]
    (1, 'onecycle')
    """
    out = dict(_RECIPE_DEFAULTS)
    out.update(copy.deepcopy(_RECIPES.get(name or "", {})))
    return out
