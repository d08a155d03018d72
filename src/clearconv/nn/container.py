"""Containers: Sequential (layers in order) and Residual (``x + block(x)``)."""

from __future__ import annotations

from collections.abc import Iterator

from clearconv.backend import Array
from clearconv.engine import DEFAULT as ENGINE
from clearconv.engine.plan import Step, Traits, plan
from clearconv.nn.module import Module


def _child_repr(name: str, child: Module) -> str:
    """``(name): repr`` with continuation lines indented by two spaces (torch's layout)."""
    lines = repr(child).split("\n")
    return "\n".join([f"  ({name}): {lines[0]}"] + ["  " + ln for ln in lines[1:]])


def _multiline_repr(owner: Module) -> str:
    children = list(owner.children())
    if not children:
        return f"{type(owner).__name__}()"
    body = "\n".join(_child_repr(n, c) for n, c in children)
    return f"{type(owner).__name__}(\n{body}\n)"


def _check_module(owner: str, layer: object) -> Module:
    if not isinstance(layer, Module):
        raise TypeError(f"{owner} expected Module layers, got {type(layer).__name__}")
    return layer


class Sequential(Module):
    """Layers applied in order: ``y = layers[-1](... layers[0](x))``.

    Backward runs the layers' backward in reverse order. How the layers run
    (in place, reordered, the first layer's input gradient skipped) is the
    engine's planner's choice (:func:`clearconv.engine.plan.plan`), with the
    same results as running them plainly. Children are named
    ``"0"``, ``"1"``, ... so ``state_dict()`` keys match ``torch.nn.Sequential``
    (``"0.weight"``, ``"3.running_mean"``).

    Parameters
    ----------
    *layers : Module
        The layers, in order.

    Attributes
    ----------
    needs_input_grad : bool
        True (the default): ``backward`` returns the gradient for the input.
        Set it False when the input is data that is not learned (a training
        loop does): ``backward`` then returns None, and the first layer
        makes only its parameter gradients (for a first convolution, its
        costliest product is skipped).

    Shape: input as the first layer's; output as the last layer's
    (``output_shape`` chains the layers' ``output_shape``).

    Raises
    ------
    TypeError
        If a layer is not a Module, or an index not an int or slice.
    IndexError
        For an index out of range.

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv.nn import Linear, ReLU
    >>> net = Sequential(Linear(4, 3, rng=np.random.default_rng(0)), ReLU())
    >>> len(net), net.output_shape((2, 4)), list(net.state_dict())
    (2, (2, 3), ['0.weight', '0.bias'])
    """

    traits = Traits(params_only=True)

    def __init__(self, *layers: Module) -> None:
        self._layers: list[Module] = [_check_module("Sequential", m) for m in layers]
        self.needs_input_grad = True
        self._plans: dict[bool, tuple[tuple[Module, ...], list[Step]]] = {}

    def children(self) -> Iterator[tuple[str, Module]]:
        for i, layer in enumerate(self._layers):
            yield str(i), layer

    def append(self, layer: Module) -> Sequential:
        """Add ``layer`` at the end; returns self (as torch does)."""
        self._layers.append(_check_module("Sequential", layer))
        return self

    def __len__(self) -> int:
        return len(self._layers)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._layers)

    def __getitem__(self, index: int | slice) -> Module:
        if isinstance(index, slice):
            return Sequential(*self._layers[index])
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(
                f"Sequential indices must be ints or slices, got {type(index).__name__}"
            )
        if not -len(self._layers) <= index < len(self._layers):
            raise IndexError(f"index {index} is out of range for Sequential of length {len(self)}")
        return self._layers[index]

    def _plan(self, needs_input_grad: bool) -> list[Step]:
        """The planner's steps for these layers, kept until the list of layers changes."""
        layers = tuple(self._layers)
        kept = self._plans.get(needs_input_grad)
        if kept is None or kept[0] != layers:  # tuples of modules: compared by identity
            kept = self._plans[needs_input_grad] = (layers, plan(layers, needs_input_grad))
        return kept[1]

    def forward(self, x: Array, training: bool = False) -> Array:
        """The layers in order, as the planner runs them; ``x`` itself is never written."""
        with ENGINE:  # the layers' products share the engine's threads
            for layer, forward, _ in self._plan(self.needs_input_grad):
                x = getattr(layer, forward)(x, training)
        return x

    def backward(self, grad_out: Array) -> Array | None:
        """Backpropagate through the layers in the reverse of forward's order.

        Returns the input gradient, or None when ``needs_input_grad`` is
        False. ``grad_out`` itself is never written.
        """
        return self._backward(grad_out, self.needs_input_grad)

    def backward_params(self, grad_out: Array) -> None:
        """The parameter gradients only (the planner's call for a first layer: ``Traits``)."""
        self._backward(grad_out, False)

    def _backward(self, grad: Array, needs_input_grad: bool) -> Array | None:
        with ENGINE:  # as in forward
            for layer, _, backward in reversed(self._plan(needs_input_grad)):
                grad = None if backward is None else getattr(layer, backward)(grad)
        return grad if needs_input_grad or not self._layers else None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(input_shape)
        for layer in self._layers:
            shape = tuple(layer.output_shape(shape))
        return shape

    def __repr__(self) -> str:
        return _multiline_repr(self)


class Residual(Module):
    """Skip connection: ``y = x + block(x)`` (the ResNet building block), or
    ``y = shortcut(x) + block(x)`` with a projection shortcut (torchvision's
    ``downsample``: a strided 1x1 conv + BN where a stage changes size).

    Backward: ``dx = g + block.backward(g)`` (``shortcut.backward(g)`` in place
    of ``g`` with a shortcut). The children are named ``"block"`` and
    ``"shortcut"`` (state_dict keys ``"block.0.weight"``, ``"shortcut.0.weight"``).

    Parameters
    ----------
    block : Module
        Must keep the shape of its input (of the shortcut's output, if given).
    shortcut : Module, optional
        Applied to the input on the skip path.

    Shape: input ``(*)``, output ``(*)``, the same.

    Raises
    ------
    TypeError
        If ``block`` is not a Module.
    ValueError
        If the block changes the shape of its input.

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv.nn import ReLU
    >>> Residual(ReLU())(np.array([-1.0, 2.0]))
    array([-1.,  4.])
    """

    traits = Traits(fresh=True)  # new arrays, not kept

    def __init__(self, block: Module, shortcut: Module | None = None) -> None:
        self.block = _check_module("Residual", block)
        self.shortcut = None if shortcut is None else _check_module("Residual", shortcut)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        shape = tuple(input_shape)
        out = tuple(self.block.output_shape(shape))
        skip = shape if self.shortcut is None else tuple(self.shortcut.output_shape(shape))
        if out != skip:
            what = "its input" if self.shortcut is None else "the shortcut's output"
            raise ValueError(
                f"Residual: the block must keep the shape of {what}, got {skip} -> {out}"
            )
        return skip

    def forward(self, x: Array, training: bool = False) -> Array:
        y = self.block(x, training=training)
        skip = x if self.shortcut is None else self.shortcut(x, training=training)
        if y.shape != skip.shape:
            what = "its input" if self.shortcut is None else "the shortcut's output"
            raise ValueError(
                f"Residual: the block must keep the shape of {what}, "
                f"got {tuple(skip.shape)} -> {tuple(y.shape)}"
            )
        return skip + y

    def backward(self, grad_out: Array) -> Array:
        skip = grad_out if self.shortcut is None else self.shortcut.backward(grad_out)
        return skip + self.block.backward(grad_out)

    def __repr__(self) -> str:
        return _multiline_repr(self)
