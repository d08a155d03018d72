"""Branches and merges: one tensor into several paths, and their outputs joined again.

A chain (:class:`~clearconv.nn.Sequential`) cannot hold GoogLeNet's Inception
block (four paths side by side, concatenated), SqueezeNet's Fire module,
DenseNet's dense layers (each adds its maps to all earlier ones) or U-Net's
skips across levels. Two containers can, nested inside chains and each other:

- :class:`Concat` runs each branch on the same input and concatenates the
  outputs along the channels: ``y = cat([b(x) for b in branches], dim=1)``;
- :class:`Add` runs each branch on the same input and adds the outputs:
  ``y = sum(b(x) for b in branches)`` (a residual block is
  ``Add(Identity(), block)``).

Backward sends each branch its share of the gradient (its slice of the
channels for Concat, the whole gradient for Add) and sums what comes back:
where a tensor feeds several paths, its gradient is the sum of theirs.
A skip across three levels of a U-Net is a Concat nested in a Concat::

    Concat(Identity(), Sequential(pool, enc2, Concat(Identity(), deeper), up))
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from clearconv.backend import Array, xp_of
from clearconv.engine.plan import Traits
from clearconv.nn.module import Module


def _check_branches(owner: str, branches: tuple[object, ...]) -> list[Module]:
    if not branches:
        raise ValueError(f"{owner} expected at least one branch, got none")
    for b in branches:
        if not isinstance(b, Module):
            raise TypeError(f"{owner} expected Module branches, got {type(b).__name__}")
    return list(branches)  # type: ignore[arg-type]


def _sum(parts: list[Array]) -> Array:
    """A new array holding the sum of ``parts`` (never one of them)."""
    out = parts[0].copy()
    for p in parts[1:]:
        out += p
    return out


class Identity(Module):
    """``y = x``: the plain path of a skip connection, like ``torch.nn.Identity``.

    Shape: input ``(*)``, output ``(*)``.

    Examples
    --------
    >>> import numpy as np
    >>> Identity()(np.ones(3))
    array([1., 1., 1.])
    """

    def forward(self, x: Array, training: bool = False) -> Array:
        return x

    def backward(self, grad_out: Array) -> Array:
        return grad_out


class _Branches(Module):
    """Shared parts of :class:`Concat` and :class:`Add`: the branches, named ``"0"``, ``"1"``..."""

    traits = Traits(fresh=True)  # output and input gradient are new arrays nobody keeps

    def __init__(self, *branches: Module) -> None:
        self._branches = _check_branches(type(self).__name__, branches)

    def children(self) -> Iterator[tuple[str, Module]]:
        for i, b in enumerate(self._branches):
            yield str(i), b

    def __len__(self) -> int:
        return len(self._branches)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._branches)

    def __getitem__(self, index: int) -> Module:
        return self._branches[index]

    def _input_grad(self, grads: list[Array]) -> Array:
        # Every branch read the same x: its gradient is the sum of theirs.
        return _sum([self._branches[i].backward(g) for i, g in enumerate(grads)])

    def __repr__(self) -> str:
        from clearconv.nn.container import _multiline_repr

        text = _multiline_repr(self)
        extra = self.extra_repr()
        return text if not extra else text.replace("(\n", f"({extra},\n", 1)


class Concat(_Branches):
    """Branches side by side, outputs concatenated: ``y = cat([b(x) for b in branches], dim)``.

    GoogLeNet's Inception block, SqueezeNet's Fire expand, DenseNet's dense
    layer (``Concat(Identity(), layer)``).

    Parameters
    ----------
    *branches : Module
        Each is applied to the same input; their outputs must agree in every
        dim but ``dim``.
    dim : int, default 1
        The dim to concatenate along (1: channels of ``(N, C, H, W)``).

    Shape: input ``(N, C, H, W)``; output ``(N, C_1 + ... + C_k, H', W')``
    where branch ``i`` gives ``(N, C_i, H', W')``.

    Raises
    ------
    TypeError
        If a branch is not a Module, or ``dim`` not an int.
    ValueError
        With no branches, or when the branches' outputs disagree outside ``dim``.

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv.nn import ReLU
    >>> Concat(Identity(), ReLU())(np.array([[-1.0, 2.0]])).tolist()
    [[-1.0, 2.0, 0.0, 2.0]]
    """

    def __init__(self, *branches: Module, dim: int = 1) -> None:
        super().__init__(*branches)
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"Concat: dim must be an int, got {type(dim).__name__}")
        self.dim = int(dim)
        self._sizes: list[int] | None = None

    def _axis(self, ndim: int) -> int:
        if not -ndim <= self.dim < ndim:
            raise ValueError(f"{self.extra_repr()}: dim out of range for {ndim}-d outputs")
        return self.dim % ndim

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shapes = [tuple(b.output_shape(tuple(input_shape))) for b in self._branches]
        axis = self._axis(len(shapes[0]))
        _check_same(shapes, axis)
        first = list(shapes[0])
        first[axis] = sum(s[axis] for s in shapes)
        return tuple(first)

    def forward(self, x: Array, training: bool = False) -> Array:
        outs = [b(x, training=training) for b in self._branches]
        axis = self._axis(outs[0].ndim)
        _check_same([tuple(o.shape) for o in outs], axis)
        self._sizes = [int(o.shape[axis]) for o in outs]
        return xp_of(x).concatenate(outs, axis=axis)

    def backward(self, grad_out: Array) -> Array:
        sizes = self._cached(self._sizes)
        axis = self._axis(grad_out.ndim)
        cuts = np.cumsum(sizes)[:-1].tolist()
        return self._input_grad(xp_of(grad_out).split(grad_out, cuts, axis=axis))

    def extra_repr(self) -> str:
        return "" if self.dim == 1 else f"dim={self.dim}"


class Add(_Branches):
    """Branches side by side, outputs added: ``y = b_1(x) + ... + b_k(x)``.

    The ResNet block is ``Add(Identity(), block)``, or with a projection
    shortcut ``Add(Sequential(Conv2d(..., 1, stride=2), BatchNorm2d(...)), block)``.

    Parameters
    ----------
    *branches : Module
        Each is applied to the same input; their outputs must have one shape.

    Shape: input ``(*)``; output the branches' common shape.

    Raises
    ------
    TypeError
        If a branch is not a Module.
    ValueError
        With no branches, or when the branches' outputs differ in shape.

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv.nn import ReLU
    >>> Add(Identity(), ReLU())(np.array([-1.0, 2.0])).tolist()
    [-1.0, 4.0]
    """

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shapes = [tuple(b.output_shape(tuple(input_shape))) for b in self._branches]
        _check_same(shapes, None)
        return shapes[0]

    def forward(self, x: Array, training: bool = False) -> Array:
        outs = [b(x, training=training) for b in self._branches]
        _check_same([tuple(o.shape) for o in outs], None)
        return _sum(outs)

    def backward(self, grad_out: Array) -> Array:
        return self._input_grad([grad_out] * len(self._branches))


def _check_same(shapes: list[tuple[int, ...]], axis: int | None) -> None:
    """Raise unless the shapes agree (outside ``axis``, when given)."""

    def key(s: tuple[int, ...]) -> tuple[int, ...]:
        return s if axis is None else s[:axis] + s[axis + 1 :]

    if any(key(s) != key(shapes[0]) for s in shapes):
        what = "the same shape" if axis is None else f"the same sizes outside dim {axis}"
        raise ValueError(f"the branches' outputs must have {what}, got {shapes}")
