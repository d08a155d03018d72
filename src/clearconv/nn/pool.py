"""Pooling layers: max, average, their 1-D forms and global (adaptive) average."""

from __future__ import annotations

from typing import Any

from clearconv import _validate as v
from clearconv import functional as T
from clearconv.backend import Array, quiet_products, xp_of
from clearconv.engine import pool as F
from clearconv.engine.plan import Traits
from clearconv.nn.conv import _fmt, as_2d, from_2d
from clearconv.nn.module import Module

Pair = tuple[int, int]


class _PoolNd(Module):
    """Shared code of the max/avg pools; ``nd`` spatial axes, computed as 2-D."""

    nd = 2
    traits = Traits(fresh=True)  # new arrays, not kept
    textbook = False  # True: run on clearconv.functional (clearconv.nn.use_textbook)

    def __init__(
        self,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] | None = None,
        padding: int | tuple[int, ...] = 0,
        ceil_mode: bool = False,
        dilation: int | tuple[int, ...] = 1,
    ) -> None:
        name = type(self).__name__
        nd = self.nd
        self.kernel_size = v.check_tuple(name, "kernel_size", kernel_size, nd, 1)
        self.stride = (
            self.kernel_size if stride is None else v.check_tuple(name, "stride", stride, nd, 1)
        )
        self.padding = v.check_tuple(name, "padding", padding, nd, 0)
        self.dilation = v.check_tuple(name, "dilation", dilation, nd, 1)
        self.ceil_mode = v.check_bool(name, "ceil_mode", ceil_mode)
        for k, p, d in zip(self.kernel_size, self.padding, self.dilation):
            if 2 * p > d * (k - 1) + 1:
                raise ValueError(
                    f"{name}: padding must be at most half of the (dilated) kernel size, "
                    f"got padding={_fmt(self.padding)} for kernel_size={_fmt(self.kernel_size)}"
                )
        self._cache: tuple[Any, ...] | None = None

    def _2d(self, t: tuple[int, ...], fill: int) -> tuple[int, int]:
        return (fill, t[0]) if self.nd == 1 else (t[0], t[1])

    # Hooks of the max and average subclasses: the 2-D computation and its adjoint.
    def _forward2d(self, x4: Array, training: bool) -> tuple[Array, Any]:
        raise NotImplementedError

    def _backward2d(self, g4: Array, x_shape: tuple[int, ...], aux: Any) -> Array:
        raise NotImplementedError

    # ... and the textbook's functions, on the input as it came.
    def _textbook_forward(self, x: Array) -> Array:
        raise NotImplementedError

    def _textbook_backward(self, grad_out: Array, x: Array) -> Array:
        raise NotImplementedError

    def _torch_args(self) -> tuple[Any, Any, Any, Any]:
        """``(kernel_size, stride, padding, dilation)`` as torch.nn.functional takes them."""
        t = (self.kernel_size, self.stride, self.padding, self.dilation)
        return tuple(a[0] for a in t) if self.nd == 1 else t  # type: ignore[return-value]

    def _args(self) -> tuple[Pair, Pair, Pair, Pair]:
        return (
            self._2d(self.kernel_size, 1),
            self._2d(self.stride, 1),
            self._2d(self.padding, 0),
            self._2d(self.dilation, 1),
        )

    def _expected(self) -> str:
        return "(N, C, L)" if self.nd == 1 else "(N, C, H, W)"

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != self.nd + 2:
            raise ValueError(
                f"{self!r} expected input of shape {self._expected()}, got {tuple(input_shape)}"
            )
        out = []
        for size, k, s, p, d in zip(
            input_shape[2:], self.kernel_size, self.stride, self.padding, self.dilation
        ):
            if size + 2 * p < d * (k - 1) + 1:
                raise ValueError(
                    f"{self!r}: input of spatial size {tuple(input_shape[2:])} with padding "
                    f"{_fmt(self.padding)} is smaller than the window {_fmt(self.kernel_size)}"
                )
            out.append(F.pool_out_size(size, k, s, p, d, self.ceil_mode))
        return (*input_shape[:2], *out)

    def forward(self, x: Array, training: bool = False) -> Array:
        v.check_input(self, x, self._expected(), self.nd + 2)
        self.output_shape(x.shape)
        if self.textbook:
            self._cache = (x, None, True)
            return self._textbook_forward(x)
        x4 = as_2d(x, self.nd)
        y, aux = self._forward2d(x4, training)
        self._cache = (x4.shape, aux, False)
        return from_2d(y, self.nd)

    def backward(self, grad_out: Array) -> Array:
        x_shape, aux, textbook = self._cached(self._cache)
        if textbook:  # x_shape is the input itself
            return self._textbook_backward(grad_out, x_shape)
        dx = self._backward2d(as_2d(grad_out, self.nd), x_shape, aux)
        return from_2d(dx, self.nd)

    def extra_repr(self) -> str:
        s = f"kernel_size={_fmt(self.kernel_size)}"
        if self.stride != self.kernel_size:
            s += f", stride={_fmt(self.stride)}"
        if any(self.padding):
            s += f", padding={_fmt(self.padding)}"
        if any(d != 1 for d in self.dilation):
            s += f", dilation={_fmt(self.dilation)}"
        if self.ceil_mode:
            s += ", ceil_mode=True"
        return s


class _MaxPool(_PoolNd):
    traits = Traits(fresh=True, max_pool=True)

    def _forward2d(self, x4: Array, training: bool) -> tuple[Array, Any]:
        """``y`` and what backward needs: the winners, or in eval mode the input.

        Evaluation skips the winners (LeNet-5's first pooling at batch 64:
        236 -> 175 us; one image 23 -> 15 us); a backward after it (a
        saliency map) finds them from the input then.
        """
        k, s, p, d = self._args()
        if training:
            return F.max_pool2d_forward(x4, k, s, p, d, self.ceil_mode)
        return F.max_pool2d(x4, k, s, p, d, self.ceil_mode), _Input(x4)

    def _backward2d(self, g4: Array, x_shape: tuple[int, ...], winners: Any) -> Array:
        k, s, p, d = self._args()
        if isinstance(winners, _Input):
            winners = F.max_pool2d_forward(winners.x, k, s, p, d, self.ceil_mode)[1]
        return F.max_pool2d_backward(g4, winners, x_shape, k, s, p, d)

    def _textbook_forward(self, x: Array) -> Array:
        pool = T.max_pool1d if self.nd == 1 else T.max_pool2d
        return pool(x, *self._torch_args(), self.ceil_mode)

    def _textbook_backward(self, grad_out: Array, x: Array) -> Array:
        backward = T.max_pool1d_backward if self.nd == 1 else T.max_pool2d_backward
        return backward(grad_out, x, *self._torch_args(), self.ceil_mode)


class _Input:
    """The input an eval-mode max pooling kept in place of its winners."""

    __slots__ = ("x",)

    def __init__(self, x: Array) -> None:
        self.x = x


class _AvgPool(_PoolNd):
    def __init__(
        self,
        kernel_size: int | tuple[int, ...],
        stride: int | tuple[int, ...] | None = None,
        padding: int | tuple[int, ...] = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__(kernel_size, stride, padding, ceil_mode)
        self.count_include_pad = v.check_bool(
            type(self).__name__, "count_include_pad", count_include_pad
        )

    def _forward2d(self, x4: Array, training: bool) -> tuple[Array, None]:
        k, s, p, _ = self._args()
        return F.avg_pool2d_forward(x4, k, s, p, self.ceil_mode, self.count_include_pad), None

    def _backward2d(self, g4: Array, x_shape: tuple[int, ...], aux: Any) -> Array:
        k, s, p, _ = self._args()
        return F.avg_pool2d_backward(g4, x_shape, k, s, p, self.count_include_pad)

    def _textbook_forward(self, x: Array) -> Array:
        pool = T.avg_pool1d if self.nd == 1 else T.avg_pool2d
        k, s, p, _ = self._torch_args()
        return pool(x, k, s, p, self.ceil_mode, self.count_include_pad)

    def _textbook_backward(self, grad_out: Array, x: Array) -> Array:
        backward = T.avg_pool1d_backward if self.nd == 1 else T.avg_pool2d_backward
        k, s, p, _ = self._torch_args()
        return backward(grad_out, x.shape, k, s, p, self.ceil_mode, self.count_include_pad)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + ("" if self.count_include_pad else ", count_include_pad=False")


class MaxPool2d(_MaxPool):
    """2-D max pooling: the strongest response in each window.

    ``y[n, c, i, j] = max_{p, q} x_pad[n, c, sH*i + dH*p, sW*j + dW*q]`` (padding is -inf)

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), default kernel_size
    padding : int or (int, int), default 0
        At most half the window.
    ceil_mode : bool, default False
        Round the output size up (the last window may hang over the edge,
        but must start inside the input or its left padding).
    dilation : int or (int, int), default 1 (keyword)

    Shape
    -----
    Input ``(N, C, H, W)``, output ``(N, C, OH, OW)``,
    ``OH = floor((H + 2*padH - dH*(kH - 1) - 1) / sH) + 1`` (``ceil`` with ceil_mode).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> MaxPool2d(2)(x)[0, 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """


class AvgPool2d(_AvgPool):
    """2-D average pooling.

    ``y[n, c, i, j] = sum_{window} x_pad / count``; ``count`` includes the zero
    padding when ``count_include_pad`` (but not ceil_mode's overhang), as PyTorch.

    Parameters
    ----------
    kernel_size, stride, padding, ceil_mode
        As :class:`MaxPool2d`.
    count_include_pad : bool, default True

    Shape
    -----
    As :class:`MaxPool2d` with dilation 1.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    >>> AvgPool2d(2)(x)[0, 0]
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """


class MaxPool1d(_MaxPool):
    """1-D max pooling over ``(N, C, L)``; arguments as :class:`MaxPool2d` with ints.

    Shape: ``(N, C, L) -> (N, C, OL)``, ``OL = floor((L + 2p - d(k-1) - 1)/s) + 1``.

    Examples
    --------
    >>> import numpy as np
    >>> MaxPool1d(2)(np.array([[[1, 3, 2, 0, 5]]], dtype=np.float32))
    array([[[3., 2.]]], dtype=float32)
    """

    nd = 1


class AvgPool1d(_AvgPool):
    """1-D average pooling over ``(N, C, L)``; arguments as :class:`AvgPool2d` with ints.

    Shape: ``(N, C, L) -> (N, C, OL)``, ``OL = floor((L + 2p - k)/s) + 1``.

    Examples
    --------
    >>> import numpy as np
    >>> AvgPool1d(2)(np.array([[[1, 3, 2, 0]]], dtype=np.float32))
    array([[[2., 1.]]], dtype=float32)
    """

    nd = 1


class AdaptiveAvgPool2d(Module):
    """Average pooling to a fixed output size, whatever the input size.

    ``AdaptiveAvgPool2d(1)`` is global average pooling (ResNets). Output cell
    ``(i, j)`` averages rows ``[floor(i*H/OH), ceil((i+1)*H/OH))`` and likewise
    columns, PyTorch's bins, computed as ``A_h @ x @ A_w.T`` (two small products).

    Parameters
    ----------
    output_size : int, (int, int) or None entries (None keeps that input size)

    Shape
    -----
    Input ``(N, C, H, W)``, output ``(N, C, OH, OW)``.

    Examples
    --------
    >>> import numpy as np
    >>> AdaptiveAvgPool2d(1)(np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2))[:, :, 0, 0]
    array([[1.5, 5.5]], dtype=float32)
    """

    traits = Traits(fresh=True)  # new arrays, not kept
    textbook = False  # True: run on clearconv.functional (clearconv.nn.use_textbook)

    def __init__(self, output_size: int | tuple[int | None, int | None]) -> None:
        name = "AdaptiveAvgPool2d"
        if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
            self.output_size = tuple(
                None if o is None else v.check_int(name, "output_size", o, 1) for o in output_size
            )
        else:
            o = v.check_int(name, "output_size", output_size, 1)
            self.output_size = (o, o)
        self._cache: tuple[Any, ...] | None = None

    def _out_hw(self, h: int, w: int) -> tuple[int, int]:
        oh, ow = self.output_size
        return (h if oh is None else oh, w if ow is None else ow)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 4:
            raise ValueError(
                f"{self!r} expected input of shape (N, C, H, W), got {tuple(input_shape)}"
            )
        return (*input_shape[:2], *self._out_hw(*input_shape[2:]))

    def forward(self, x: Array, training: bool = False) -> Array:
        v.check_input(self, x, "(N, C, H, W)", 4)
        xp = xp_of(x)
        h, w = x.shape[2:]
        oh, ow = self._out_hw(h, w)
        self._cache = (x.shape, oh, ow, self.textbook)
        if self.textbook:
            return T.adaptive_avg_pool2d(x, (oh, ow))
        if (oh, ow) == (1, 1):
            return x.mean(axis=(2, 3), keepdims=True, dtype=x.dtype)
        ah = xp.asarray(F.adaptive_matrix(h, oh, x.dtype))  # (OH, H)
        aw = xp.asarray(F.adaptive_matrix(w, ow, x.dtype))  # (OW, W)
        with quiet_products():
            return ah @ x @ aw.T  # (N, C, OH, W) @ (W, OW)

    def backward(self, grad_out: Array) -> Array:
        xp = xp_of(grad_out)
        shape, oh, ow, textbook = self._cached(self._cache)
        if textbook:
            return T.adaptive_avg_pool2d_backward(grad_out, shape, (oh, ow))
        h, w = shape[2:]
        if (oh, ow) == (1, 1):
            return xp.broadcast_to(grad_out / (h * w), shape).copy()
        ah = xp.asarray(F.adaptive_matrix(h, oh, grad_out.dtype))
        aw = xp.asarray(F.adaptive_matrix(w, ow, grad_out.dtype))
        with quiet_products():
            return ah.T @ grad_out @ aw

    def extra_repr(self) -> str:
        oh, ow = self.output_size
        return f"output_size={oh if oh == ow else self.output_size}"
