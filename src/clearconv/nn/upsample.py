"""Layers that grow maps: ConvTranspose2d and Upsample (PyTorch's arguments and layouts)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from clearconv import _validate as v
from clearconv import functional as T
from clearconv.backend import Array
from clearconv.engine import upsample as F
from clearconv.engine.plan import Traits
from clearconv.nn.conv import WeightedBackward
from clearconv.nn.init import default_weight_bias, uniform
from clearconv.nn.module import Module
from clearconv.nn.parameter import Parameter


def _fmt(t: tuple) -> str:
    return str(t[0]) if len(set(t)) == 1 else str(t)


class ConvTranspose2d(WeightedBackward):
    """Transposed 2-D convolution ("deconvolution"): the decoder's learned upsampling.

    Each input value spreads its kernel, scaled, over the output, ``stride``
    pixels apart; it is the input gradient of a :class:`Conv2d` with the same
    settings::

        y[n, o, sH*h + dH*i - pH, sW*w + dW*j - pW] += sum_c x[n, c, h, w] * W[c, o, i, j]
        y[n, o] += b[o]

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride : int or (int, int), default 1
    padding : int or (int, int), default 0
        Rows and columns cut from each border of the full result.
    output_padding : int or (int, int), default 0
        Extra rows/columns at the bottom/right (smaller than the stride or the
        dilation): picks one of the sizes a strided Conv2d maps to the same size.
    groups : int, default 1
        ``in_channels`` and ``out_channels`` split into this many independent groups.
    bias : bool, default True
    dilation : int or (int, int), default 1
    rng, dtype : keyword only, as :class:`Conv2d`.

    Shape
    -----
    Input ``(N, C_in, H, W)``, output ``(N, C_out, OH, OW)`` with
    ``OH = (H - 1)*sH - 2*pH + dH*(kH - 1) + opH + 1`` (likewise ``OW``).

    Attributes
    ----------
    weight : Parameter
        ``(C_in, C_out/groups, kH, kW)`` (PyTorch's layout), U(-1/sqrt(f), 1/sqrt(f))
        with ``f = C_out/groups * kH * kW``, as PyTorch.
    bias : Parameter or None
        ``(C_out,)``, same distribution.

    Raises
    ------
    TypeError, ValueError
        For bad arguments at construction and bad input shapes at forward.

    Examples
    --------
    >>> up = ConvTranspose2d(8, 4, 2, stride=2, rng=np.random.default_rng(0))
    >>> up(np.zeros((1, 8, 5, 5), np.float32)).shape
    (1, 4, 10, 10)
    >>> up
    ConvTranspose2d(8, 4, kernel_size=2, stride=2)
    """

    traits = Traits(fresh=True, params_only=True)  # new arrays, not kept
    textbook = False  # True: run on clearconv.functional (clearconv.nn.use_textbook)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        output_padding: int | tuple[int, int] = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: int | tuple[int, int] = 1,
        *,
        rng: np.random.Generator | None = None,
        dtype: Any = np.float32,
    ) -> None:
        name = "ConvTranspose2d"
        self.in_channels = v.check_int(name, "in_channels", in_channels, 1)
        self.out_channels = v.check_int(name, "out_channels", out_channels, 1)
        self.kernel_size = v.check_tuple(name, "kernel_size", kernel_size, 2, 1)
        self.stride = v.check_tuple(name, "stride", stride, 2, 1)
        self.padding = v.check_tuple(name, "padding", padding, 2, 0)
        self.output_padding = v.check_tuple(name, "output_padding", output_padding, 2, 0)
        self.groups = v.check_int(name, "groups", groups, 1)
        self.dilation = v.check_tuple(name, "dilation", dilation, 2, 1)
        v.check_bool(name, "bias", bias)
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"{name}: in_channels ({in_channels}) and out_channels ({out_channels}) must "
                f"both be divisible by groups ({groups})"
            )
        for op, s, d in zip(self.output_padding, self.stride, self.dilation, strict=True):
            if op >= max(s, d):
                raise ValueError(
                    f"{name}: output_padding must be smaller than the stride or the dilation, "
                    f"got output_padding={_fmt(self.output_padding)}, stride={_fmt(self.stride)}, "
                    f"dilation={_fmt(self.dilation)}"
                )
        dt = v.check_dtype(name, dtype)
        gen = v.check_rng(name, rng)
        shape = (self.in_channels, self.out_channels // groups, *self.kernel_size)
        fan_in = shape[1] * int(np.prod(self.kernel_size))  # PyTorch's fan of this layout
        w, _ = default_weight_bias(gen, shape, fan_in, dt, False)
        b = uniform(gen, (self.out_channels,), 1 / np.sqrt(fan_in), dt) if bias else None
        self.weight = Parameter(w)
        self.bias = Parameter(b) if b is not None else None
        self._cache: tuple[Array, bool] | None = None

    def _expected(self) -> str:
        return f"(N, {self.in_channels}, H, W)"

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 4 or input_shape[1] != self.in_channels:
            raise ValueError(
                f"{self!r} expected input of shape {self._expected()}, got {tuple(input_shape)}"
            )
        size = [
            F.conv_transpose_out_size(n, k, s, p, op, d)
            for n, k, s, p, op, d in zip(
                input_shape[2:],
                self.kernel_size,
                self.stride,
                self.padding,
                self.output_padding,
                self.dilation,
                strict=True,
            )
        ]
        if min(size) < 1:
            raise ValueError(
                f"{self!r}: input of spatial size {tuple(input_shape[2:])} gives an empty "
                f"output {tuple(size)}; use less padding"
            )
        return (input_shape[0], self.out_channels, *size)

    def forward(self, x: Array, training: bool = False) -> Array:
        v.check_input(self, x, self._expected(), 4, self.in_channels)
        self.output_shape(x.shape)
        w = self.weight.data.astype(x.dtype, copy=False)
        b = None if self.bias is None else self.bias.data.astype(x.dtype, copy=False)
        args = (self.stride, self.padding, self.output_padding, self.groups, self.dilation)
        self._cache = (x, self.textbook)
        if self.textbook:
            return T.conv_transpose2d(x, w, b, *args)
        return F.conv_transpose2d_forward(x, w, b, *args)

    def _backward(self, grad_out: Array, input_grad: bool) -> Array | None:
        x, textbook = self._cached(self._cache)
        w = self.weight.data.astype(x.dtype, copy=False)
        if textbook:
            dx, dw, db = T.conv_transpose2d_backward(
                grad_out, x, w, self.stride, self.padding, self.output_padding, self.groups,
                self.dilation,
            )  # fmt: skip
            return self._accumulate(dx if input_grad else None, dw, db)
        dx, dw, db = F.conv_transpose2d_backward(
            grad_out,
            x,
            w,
            self.stride,
            self.padding,
            self.groups,
            self.dilation,
            self.bias is not None,
            input_grad,
        )
        return self._accumulate(dx, dw, db)

    def _accumulate(self, dx: Array | None, dw: Array, db: Array | None) -> Array | None:
        """Add ``dw`` and ``db`` into the parameters' gradients; hand ``dx`` on."""
        self.weight.accumulate(dw)
        if self.bias is not None and db is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={_fmt(self.kernel_size)}"
        for key, default in (("stride", 1), ("padding", 0), ("output_padding", 0)):
            val = getattr(self, key)
            if any(x != default for x in val):
                s += f", {key}={_fmt(val)}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if any(x != 1 for x in self.dilation):
            s += f", dilation={_fmt(self.dilation)}"
        return s


def _check_scale(value: Any) -> tuple[float, float]:
    items = value if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(
        isinstance(s, numbers.Real) and not isinstance(s, bool) for s in items
    ):
        raise TypeError(f"Upsample: scale_factor must be a number or a pair, got {value!r}")
    if not all(np.isfinite(s) and s > 0 for s in items):
        raise ValueError(f"Upsample: scale_factor must be > 0, got {value!r}")
    return float(items[0]), float(items[1])


class Upsample(Module):
    """Upsampling by a scale factor, as ``torch.nn.Upsample`` (no weights).

    ``y[n, c] = A_h @ x[n, c] @ A_w.T``: ``nearest`` copies the pixel each
    output position falls in (``src = floor(dst / s)``); ``bilinear`` mixes the
    two nearest pixels along each axis, source position
    ``(dst + 0.5)/s - 0.5`` (``align_corners=False``, pixel areas aligned) or
    ``dst * (in - 1)/(out - 1)`` (``True``, corner centres aligned).

    Parameters
    ----------
    scale_factor : number or (number, number)
    mode : {'nearest', 'bilinear'}, default 'nearest'
    align_corners : bool, default False
        Bilinear only (``None`` is taken as False, as PyTorch).

    Shape
    -----
    Input ``(N, C, H, W)``, output ``(N, C, floor(H*sH), floor(W*sW))``.

    Raises
    ------
    TypeError, ValueError
        For bad arguments (``align_corners=True`` with nearest) and non-4-D input.

    Examples
    --------
    >>> Upsample(2)(np.zeros((1, 3, 4, 5), np.float32)).shape
    (1, 3, 8, 10)
    >>> Upsample(2, mode="bilinear")
    Upsample(scale_factor=2.0, mode='bilinear')
    """

    traits = Traits(fresh=True)  # new arrays, not kept
    textbook = False  # True: run on clearconv.functional (clearconv.nn.use_textbook)

    def __init__(
        self,
        scale_factor: float | tuple[float, float] = 2.0,
        mode: str = "nearest",
        align_corners: bool | None = None,
    ) -> None:
        self._scale = _check_scale(scale_factor)
        self.scale_factor: float | tuple[float, float] = (
            self._scale[0] if self._scale[0] == self._scale[1] else self._scale
        )
        if mode not in ("nearest", "bilinear"):
            raise ValueError(f"Upsample: mode must be 'nearest' or 'bilinear', got {mode!r}")
        self.mode = mode
        align = (
            False
            if align_corners is None
            else v.check_bool("Upsample", "align_corners", align_corners)
        )
        if align and mode == "nearest":
            raise ValueError("Upsample: align_corners=True works only with mode='bilinear'")
        self.align_corners = align
        self._cache: tuple[tuple[int, ...], Any, bool] | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 4:
            raise ValueError(
                f"{self!r} expected input of shape (N, C, H, W), got {tuple(input_shape)}"
            )
        n, c, h, w = input_shape
        return (
            n,
            c,
            F.upsample_out_size(h, self._scale[0]),
            F.upsample_out_size(w, self._scale[1]),
        )

    def forward(self, x: Array, training: bool = False) -> Array:
        v.check_input(self, x, "(N, C, H, W)", 4)
        if min(self.output_shape(x.shape)[2:]) < 1:
            raise ValueError(f"{self!r}: input {tuple(x.shape)} gives an empty output")
        if self.textbook:
            self._cache = (x.shape, None, True)
            return T.upsample(x, self._scale, self.mode, self.align_corners)
        y, mats = F.upsample_forward(x, self._scale, self.mode, self.align_corners)
        self._cache = (x.shape, mats, False)
        return y

    def backward(self, grad_out: Array) -> Array:
        shape, mats, textbook = self._cached(self._cache)
        if textbook:
            return T.upsample_backward(grad_out, shape, self._scale, self.mode, self.align_corners)
        return F.upsample_backward(grad_out, self._scale, mats)

    def extra_repr(self) -> str:
        s = f"scale_factor={self.scale_factor}"
        if self.mode != "nearest":
            s += f", mode={self.mode!r}"
        if self.align_corners:
            s += ", align_corners=True"
        return s
