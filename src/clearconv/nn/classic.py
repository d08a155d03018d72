"""Layers of the classic architectures: LocalResponseNorm (AlexNet, ZFNet, GoogLeNet),
ChannelShuffle (ShuffleNet) and ReLU6 (MobileNet)."""

from __future__ import annotations

from clearconv import _validate as v
from clearconv.backend import Array, xp_of
from clearconv.nn.module import Module


def _window_sum(a: Array, front: int, back: int) -> Array:
    """``out[:, c] = a[:, c - front] + ... + a[:, c + back]`` (zeros beyond the edges).

    A loop over the window's offsets (a few), each one slice-add over all channels.
    """
    out = a.copy()
    c = a.shape[1]
    for d in range(1, front + 1):
        out[:, d:] += a[:, : c - d]
    for d in range(1, back + 1):
        out[:, : c - d] += a[:, d:]
    return out


class LocalResponseNorm(Module):
    """Normalize each value by the energy of its neighbours across channels (AlexNet).

    ``y_c = x_c / (k + alpha / size * sum_{c'} x_{c'}^2) ** beta`` where ``c'``
    runs over ``c - size // 2 .. c + (size - 1) // 2`` (channels past the edges
    count as zero), exactly as ``torch.nn.LocalResponseNorm``; for odd sizes
    this is also ONNX's ``LRN``.

    Backward, with ``d_c = k + alpha / size * S_c``:
    ``dx_j = g_j d_j^-beta - 2 alpha beta / size * x_j * sum_{c: j in W(c)} g_c x_c d_c^(-beta-1)``.

    Parameters
    ----------
    size : int
        Neighbouring channels summed over.
    alpha : float, default 1e-4
    beta : float, default 0.75
    k : float, default 1.0

    Shape: input ``(N, C, *)``, output the same.

    Raises
    ------
    TypeError, ValueError
        For a non-int or non-positive ``size`` or non-float settings; an input
        of fewer than two dims.

    Examples
    --------
    >>> import numpy as np
    >>> lrn = LocalResponseNorm(2, alpha=1.0, beta=1.0, k=0.0)
    >>> lrn(np.array([[1.0, 1.0]])).tolist()  # y_1 = 1 / (1/2 * (1 + 1)), y_0 = 1 / (1/2 * 1)
    [[2.0, 1.0]]
    """

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        self.size = v.check_int("LocalResponseNorm", "size", size, 1)
        self.alpha = v.check_float("LocalResponseNorm", "alpha", alpha)
        self.beta = v.check_float("LocalResponseNorm", "beta", beta)
        self.k = v.check_float("LocalResponseNorm", "k", k)
        self._cache: tuple[Array, Array, Array] | None = None

    def forward(self, x: Array, training: bool = False) -> Array:
        v.check_float_array(self, x)
        if x.ndim < 2:
            raise ValueError(f"{self!r} expected input of shape (N, C, *), got {tuple(x.shape)}")
        front, back = self.size // 2, (self.size - 1) // 2
        d = _window_sum(x * x, front, back)
        d *= x.dtype.type(self.alpha / self.size)
        d += x.dtype.type(self.k)
        scale = d ** x.dtype.type(-self.beta)  # d^-beta
        y = x * scale
        self._cache = (x, d, scale)
        return y

    def backward(self, grad_out: Array) -> Array:
        x, d, scale = self._cached(self._cache)
        # sum over the windows that contain j is the window sum with front and back swapped
        t = grad_out * x * scale / d
        s = _window_sum(t, (self.size - 1) // 2, self.size // 2)
        c = x.dtype.type(2.0 * self.alpha * self.beta / self.size)
        return grad_out * scale - c * x * s

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class ChannelShuffle(Module):
    """Interleave the channels of ``groups`` groups (ShuffleNet), like ``torch.nn.ChannelShuffle``.

    ``(N, C, *) -> (N, g, C/g, *) -> (N, C/g, g, *) -> (N, C, *)``: channel
    ``i * C/g + j`` moves to ``j * g + i``. Backward applies the inverse permutation.

    Parameters
    ----------
    groups : int
        Must divide the number of channels.

    Shape: input ``(N, C, *)``, output the same.

    Raises
    ------
    ValueError
        If ``groups`` does not divide ``C``.

    Examples
    --------
    >>> import numpy as np
    >>> ChannelShuffle(2)(np.arange(4.0).reshape(1, 4)).tolist()
    [[0.0, 2.0, 1.0, 3.0]]
    """

    def __init__(self, groups: int) -> None:
        self.groups = v.check_int("ChannelShuffle", "groups", groups, 1)

    def _check(self, shape: tuple[int, ...]) -> None:
        if len(shape) < 2 or shape[1] % self.groups:
            raise ValueError(
                f"{self!r} expected input of shape (N, C, *) with C divisible by "
                f"{self.groups}, got {tuple(shape)}"
            )

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self._check(tuple(input_shape))
        return tuple(input_shape)

    @staticmethod
    def _shuffle(a: Array, g: int) -> Array:
        n, c, *rest = a.shape
        # (N, C, *) -> (N, g, C/g, *) -> swap the two -> (N, C, *)
        b = a.reshape(n, g, c // g, *rest).swapaxes(1, 2)
        return xp_of(a).ascontiguousarray(b).reshape(a.shape)

    def forward(self, x: Array, training: bool = False) -> Array:
        v.check_float_array(self, x)
        self._check(tuple(x.shape))
        return self._shuffle(x, self.groups)

    def backward(self, grad_out: Array) -> Array:
        # the inverse of shuffling g groups of C/g is shuffling C/g groups of g
        return self._shuffle(grad_out, grad_out.shape[1] // self.groups)

    def extra_repr(self) -> str:
        return str(self.groups)


class ReLU6(Module):
    """``y = min(max(x, 0), 6)`` (MobileNet), like ``torch.nn.ReLU6``.

    Backward passes the gradient where ``0 < x < 6`` (PyTorch's choice at the kinks).

    Shape: input ``(*)``, output ``(*)``.

    Examples
    --------
    >>> import numpy as np
    >>> ReLU6()(np.array([-1.0, 3.0, 8.0])).tolist()
    [0.0, 3.0, 6.0]
    """

    def __init__(self) -> None:
        self._x: Array | None = None

    def forward(self, x: Array, training: bool = False) -> Array:
        v.check_float_array(self, x)
        self._x = x
        return xp_of(x).clip(x, 0, 6)

    def backward(self, grad_out: Array) -> Array:
        x = self._cached(self._x)
        return grad_out * ((x > 0) & (x < 6))
