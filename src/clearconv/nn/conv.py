"""Convolution layers: Conv2d and Conv1d (PyTorch's arguments and layouts)."""

from __future__ import annotations

from typing import Any

import numpy as np

from clearconv import _validate as v
from clearconv import functional as T
from clearconv.backend import Array
from clearconv.engine import conv as F
from clearconv.engine import grouped
from clearconv.engine.plan import Traits
from clearconv.nn.init import default_weight_bias
from clearconv.nn.module import Module
from clearconv.nn.parameter import Parameter


def _fmt(t: tuple[int, ...]) -> str:
    """Show (3, 3) as 3 and (3, 5) as (3, 5): the way people write it."""
    return str(t[0]) if len(set(t)) == 1 else str(t)


def as_2d(a: Array, nd: int) -> Array:
    """A 1-D layer's array as the 2-D one the engine computes: (N, C, L) -> (N, C, 1, L).

    A view; 2-D arrays (``nd == 2``) are returned as they are. The same for
    weights, (O, C, k) -> (O, C, 1, k).
    """
    return a[:, :, None, :] if nd == 1 else a


def from_2d(a: Array, nd: int) -> Array:
    """The inverse of :func:`as_2d`: (N, C, 1, L) -> (N, C, L) for ``nd == 1``."""
    return a[:, :, 0, :] if nd == 1 else a


class WeightedBackward(Module):
    """A layer whose ``_backward(grad_out, input_grad)`` adds dW and db and can skip the
    input gradient: the planner calls :meth:`backward_params` for a network's first layer."""

    def backward(self, grad_out: Array) -> Array:
        """Input gradient; adds dW and db."""
        return self._backward(grad_out, True)  # with input_grad, never None

    def backward_params(self, grad_out: Array) -> None:
        """dW and db only, no input gradient (the planner's call for a first layer)."""
        self._backward(grad_out, False)

    def _backward(self, grad_out: Array, input_grad: bool) -> Array | None:
        raise NotImplementedError(f"{type(self).__name__} does not implement _backward")


class _ConvNd(WeightedBackward):
    """Shared code of Conv1d and Conv2d; ``nd`` spatial axes, computed as 2-D."""

    nd = 2
    traits = Traits(fresh=True, params_only=True)  # new arrays, not kept
    textbook = False  # True: run on clearconv.functional (clearconv.nn.use_textbook)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] = 1,
        padding: int | tuple[int, ...] | str = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool = True,
        *,
        rng: np.random.Generator | None = None,
        dtype: Any = np.float32,
    ) -> None:
        name = type(self).__name__
        nd = self.nd
        self.in_channels = v.check_int(name, "in_channels", in_channels, 1)
        self.out_channels = v.check_int(name, "out_channels", out_channels, 1)
        self.kernel_size = v.check_tuple(name, "kernel_size", kernel_size, nd, 1)
        self.stride = v.check_tuple(name, "stride", stride, nd, 1)
        self.dilation = v.check_tuple(name, "dilation", dilation, nd, 1)
        self.groups = v.check_int(name, "groups", groups, 1)
        for arg in ("in_channels", "out_channels"):
            if getattr(self, arg) % self.groups:
                raise ValueError(
                    f"{name}: {arg} must be divisible by groups, "
                    f"got {arg}={getattr(self, arg)} and groups={self.groups}"
                )
        v.check_bool(name, "bias", bias)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(
                    f"{name}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}"
                )
            if padding == "same" and any(s != 1 for s in self.stride):
                raise ValueError(
                    f"{name}: padding='same' is not supported for strided convolutions "
                    f"(stride={_fmt(self.stride)}); use an explicit padding"
                )
            self.padding: tuple[int, ...] | str = padding
        else:
            self.padding = v.check_tuple(name, "padding", padding, nd, 0)
        dt = v.check_dtype(name, dtype)
        gen = v.check_rng(name, rng)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        fan_in = shape[1] * int(np.prod(self.kernel_size))
        w, b = default_weight_bias(gen, shape, fan_in, dt, bool(bias))
        self.weight = Parameter(w)
        self.bias = Parameter(b) if b is not None else None
        self._cache: tuple[Any, ...] | None = None

    # -- geometry ---------------------------------------------------------
    def _pads2d(self) -> F.Pads:
        """Padding as ((top, bottom), (left, right)) of the 2-D computation."""
        if self.padding == "valid":
            per_axis = [(0, 0)] * self.nd
        elif self.padding == "same":
            # As PyTorch: total d*(k-1), the odd extra pixel goes to the end.
            per_axis = []
            for k, d in zip(self.kernel_size, self.dilation):
                total = d * (k - 1)
                per_axis.append((total // 2, total - total // 2))
        else:
            # An int tuple here: the strings were handled above.
            per_axis = [(int(p), int(p)) for p in self.padding]
        return ((0, 0), per_axis[0]) if self.nd == 1 else (per_axis[0], per_axis[1])

    def _to2d(self, t: tuple[int, ...], fill: int) -> tuple[int, int]:
        return (fill, t[0]) if self.nd == 1 else (t[0], t[1])

    def _expected(self) -> str:
        spatial = "L" if self.nd == 1 else "H, W"
        return f"(N, {self.in_channels}, {spatial})"

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != self.nd + 2 or input_shape[1] != self.in_channels:
            raise ValueError(
                f"{self!r} expected input of shape {self._expected()}, got {tuple(input_shape)}"
            )
        pads = self._pads2d()[2 - self.nd :]
        spatial = []
        for size, k, s, d, p in zip(
            input_shape[2:], self.kernel_size, self.stride, self.dilation, pads
        ):
            if size + sum(p) < d * (k - 1) + 1:
                raise ValueError(
                    f"{self!r}: input of spatial size {tuple(input_shape[2:])} padded by "
                    f"{tuple(sum(q) for q in pads)} is smaller than the dilated kernel "
                    f"{tuple(d_ * (k_ - 1) + 1 for k_, d_ in zip(self.kernel_size, self.dilation))}"
                )
            spatial.append(F.out_size(size, k, s, sum(p), d))
        return (input_shape[0], self.out_channels, *spatial)

    # -- computation ------------------------------------------------------
    def forward(self, x: Array, training: bool = False) -> Array:
        v.check_input(self, x, self._expected(), self.nd + 2, self.in_channels)
        self.output_shape(x.shape)  # validates the window against the padded input
        w = self.weight.data.astype(x.dtype, copy=False)
        b = None if self.bias is None else self.bias.data.astype(x.dtype, copy=False)
        if self.textbook:
            self._cache = (x, True)
            conv = T.conv1d if self.nd == 1 else T.conv2d
            return conv(x, w, b, *self._torch_args())
        x4, w4 = as_2d(x, self.nd), as_2d(w, self.nd)  # (N, C, L) -> (N, C, 1, L)
        stride, dil = self._to2d(self.stride, 1), self._to2d(self.dilation, 1)
        self._cache = (x4, False)  # backward rebuilds the columns block by block
        if self.groups > 1:
            y = grouped.conv2d_forward(x4, w4, b, stride, self._pads2d(), dil, self.groups)
        else:
            y = F.conv2d_forward(x4, w4, b, stride, self._pads2d(), dil)
        return from_2d(y, self.nd)

    def _backward(self, grad_out: Array, input_grad: bool) -> Array | None:
        x4, textbook = self._cached(self._cache)
        w = self.weight.data.astype(x4.dtype, copy=False)
        if textbook:  # x4 is the input as it came, (N, C, L) or (N, C, H, W)
            backward = T.conv1d_backward if self.nd == 1 else T.conv2d_backward
            dx, dw, db = backward(grad_out, x4, w, *self._torch_args())
            return self._accumulate(dx if input_grad else None, dw, db)
        stride, dil, pads = self._to2d(self.stride, 1), self._to2d(self.dilation, 1), self._pads2d()
        w4, g4 = as_2d(w, self.nd), as_2d(grad_out, self.nd)
        has_bias, g = self.bias is not None, self.groups
        if g > 1:
            dx, dw, db = grouped.conv2d_backward(
                g4, x4, w4, stride, pads, dil, g, has_bias, input_grad
            )
        else:
            dx, dw, db = F.conv2d_backward(g4, x4, w4, stride, pads, dil, has_bias, input_grad)
        return self._accumulate(None if dx is None else from_2d(dx, self.nd), dw, db)

    def _accumulate(self, dx: Array | None, dw: Array, db: Array | None) -> Array | None:
        """Add ``dw`` and ``db`` into the parameters' gradients; hand ``dx`` on."""
        self.weight.accumulate(dw.reshape(self.weight.shape))
        if self.bias is not None and db is not None:
            self.bias.accumulate(db)
        return dx

    def _torch_args(self) -> tuple[Any, ...]:
        """``(stride, padding, dilation, groups)`` as torch.nn.functional takes them."""
        one = self.nd == 1  # conv1d takes ints
        pad = self.padding if isinstance(self.padding, str) or not one else self.padding[0]
        return (
            self.stride[0] if one else self.stride,
            pad,
            self.dilation[0] if one else self.dilation,
            self.groups,
        )

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={_fmt(self.kernel_size)}"
        if any(x != 1 for x in self.stride):
            s += f", stride={_fmt(self.stride)}"
        if isinstance(self.padding, str):
            s += f", padding={self.padding!r}"
        elif any(self.padding):
            s += f", padding={_fmt(self.padding)}"
        if any(x != 1 for x in self.dilation):
            s += f", dilation={_fmt(self.dilation)}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation) over an NCHW batch.

    ``y[n, o, i, j] = b[o] + sum_{c, p, q} W[o, c, p, q] * x_pad[n, c, sH*i + dH*p, sW*j + dW*q]``

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output (number of filters).
    kernel_size : int or (int, int)
        Window ``(kH, kW)``.
    stride : int or (int, int), default 1
    padding : int, (int, int), 'same' or 'valid', default 0
        Zeros added on both sides. ``'same'`` keeps the size at stride 1 (an
        even kernel puts the extra pixel at the bottom/right, as PyTorch does).
    dilation : int or (int, int), default 1
        Spacing between kernel taps.
    groups : int, default 1
        Split the channels into this many groups, each group's outputs seeing
        only its own inputs (``groups=in_channels``: depthwise); must divide
        ``in_channels`` and ``out_channels``.
    bias : bool, default True
    rng : numpy.random.Generator, optional
        Source of the initial weights (keyword only).
    dtype : float32 or float64, default float32
        Dtype of the parameters (keyword only).

    Shape
    -----
    Input ``(N, C_in, H, W)``, output ``(N, C_out, OH, OW)`` with
    ``OH = floor((H + 2*padH - dH*(kH - 1) - 1) / sH) + 1`` (likewise ``OW``).

    Attributes
    ----------
    weight : Parameter
        ``(C_out, C_in/groups, kH, kW)``, U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
        ``fan_in = C_in/groups*kH*kW``, like PyTorch.
    bias : Parameter or None
        ``(C_out,)``, same distribution.

    Raises
    ------
    TypeError, ValueError
        For bad arguments at construction and bad input shapes at forward.

    Examples
    --------
    >>> import numpy as np
    >>> conv = Conv2d(1, 4, 3, padding=1, rng=np.random.default_rng(0))
    >>> conv(np.zeros((2, 1, 5, 5), dtype=np.float32)).shape
    (2, 4, 5, 5)
    >>> conv
    Conv2d(1, 4, kernel_size=3, padding=1)
    >>> Conv2d(4, 8, 3, groups=4).weight.shape
    (8, 1, 3, 3)
    """

    nd = 2


class Conv1d(_ConvNd):
    """1-D convolution over an NCL batch (sound, text); computed as a 2-D one with H = 1.

    Arguments as :class:`Conv2d` with ints (or 1-tuples) for the window settings.

    Shape
    -----
    Input ``(N, C_in, L)``, output ``(N, C_out, OL)``,
    ``OL = floor((L + 2*pad - d*(k - 1) - 1) / s) + 1``.

    Attributes
    ----------
    weight : Parameter
        ``(C_out, C_in/groups, k)``, PyTorch's default init.
    bias : Parameter or None
        ``(C_out,)``.

    Examples
    --------
    >>> import numpy as np
    >>> conv = Conv1d(2, 3, 5, stride=2, rng=np.random.default_rng(0))
    >>> conv(np.ones((1, 2, 20), np.float32)).shape
    (1, 3, 8)
    """

    nd = 1
