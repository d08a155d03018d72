"""The layer contract every layer and container follows.

- ``forward(x, training=False)`` computes the output and caches only what
  ``backward`` needs;
- ``backward(grad_out)`` returns the gradient for the input and adds parameter
  gradients into ``Parameter.grad``;
- ``parameters()`` lists the learnable Parameters (found by walking attributes);
- ``output_shape(input_shape)`` is a pure shape function (batch included);
- ``state_dict()`` / ``load_state_dict()`` use PyTorch's names
  (``"0.weight"``, ``"3.running_mean"``) so weights copy across 1:1;
- ``traits`` (a class attribute) tells a container's planner what it may do
  with the layer for speed (:mod:`clearconv.engine.plan`); a layer that
  declares ``in_place`` or ``params_only`` has the methods they name. Nothing
  else about speed is the layer's business.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import numpy as np

from clearconv.backend import Array, xp_of
from clearconv.engine.plan import Traits
from clearconv.nn.parameter import Parameter

_T = TypeVar("_T")

# Buffers: non-learned arrays that belong to the state (BatchNorm statistics).
_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def before_forward(owner: object) -> RuntimeError:
    """The error of a backward called before its forward: one message for every layer."""
    return RuntimeError(f"{owner!r}.backward called before forward")


def cached(owner: object, cache: _T | None) -> _T:
    """``cache``, what ``owner``'s forward left for its backward.

    Raises
    ------
    RuntimeError
        "Conv2d(...).backward called before forward" when ``cache`` is None.
    """
    if cache is None:
        raise before_forward(owner)
    return cache


class Module:
    """Base class of layers. Subclasses implement ``forward`` and ``backward``."""

    #: What the planner of a container may do with this layer (run it in
    #: place, move it, skip its input gradient): nothing, unless a subclass
    #: declares more (:class:`clearconv.engine.plan.Traits`).
    traits = Traits()
    #: Whether ``backward`` must return the gradient for the input. False
    #: when the input is data that is not learned (what training sets on
    #: the network): a container then returns None and skips its first
    #: layer's input gradient where that layer allows it.
    needs_input_grad = True

    def __call__(self, x: Array, training: bool = False) -> Array:
        return self.forward(x, training=training)

    def forward(self, x: Array, training: bool = False) -> Array:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_out: Array) -> Array:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def _cached(self, cache: _T | None) -> _T:
        """What ``forward`` cached for ``backward``; an error if forward has not run.

        :func:`cached` written out again: one call less on every backward.
        """
        if cache is None:
            raise before_forward(self)
        return cache

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of the output for an input of ``input_shape`` (elementwise layers)."""
        return tuple(input_shape)

    # -- walking the tree -------------------------------------------------
    def children(self) -> Iterator[tuple[str, Module]]:
        """Direct sub-modules with their names, in attribute order."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """``(name, Parameter)`` pairs, depth first, PyTorch's dotted names."""
        seen: set[int] = set()
        for name, p in self._named_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _named_parameters(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.children():
            yield from child._named_parameters(prefix + name + ".")

    def parameters(self) -> list[Parameter]:
        """The learnable Parameters of this module and its children."""
        return [p for _, p in self.named_parameters()]

    def modules(self) -> Iterator[Module]:
        """This module and every sub-module, depth first."""
        yield self
        for _, child in self.children():
            yield from child.modules()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix.rstrip("."), self
        for name, child in self.children():
            yield from child.named_modules(prefix + name + ".")

    # -- state ------------------------------------------------------------
    def state_dict(self) -> dict[str, Array]:
        """Parameters and buffers by PyTorch name (the arrays themselves, not copies)."""
        out: dict[str, Array] = {}
        for mname, m in self.named_modules():
            pre = mname + "." if mname else ""
            for key, value in vars(m).items():
                if isinstance(value, Parameter):
                    out[pre + key] = value.data
                elif key in _BUFFERS and value is not None:
                    out[pre + key] = value
        return out

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copy arrays into this module's parameters and buffers.

        Raises
        ------
        KeyError
            When ``strict`` and a key is missing or unexpected.
        ValueError
            When an array has the wrong shape.
        """
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for mname, m in self.named_modules():
            pre = mname + "." if mname else ""
            for key, value in list(vars(m).items()):
                full = pre + key
                if full not in state:
                    continue
                new = state[full]
                xp = xp_of(value if not isinstance(value, Parameter) else value.data)
                arr = xp.asarray(new)
                old_shape = value.shape if isinstance(value, Parameter) else np.shape(value)
                if tuple(arr.shape) != tuple(old_shape):
                    raise ValueError(
                        f"load_state_dict: {full} has shape {tuple(arr.shape)}, "
                        f"expected {tuple(old_shape)}"
                    )
                if isinstance(value, Parameter):
                    value.data = arr.astype(value.dtype, copy=False)
                else:
                    setattr(m, key, arr.astype(np.asarray(value).dtype, copy=True))

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # -- display ----------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"
