"""Containers: Sequential (layers in order) and Residual (``x + block(x)``)."""

from __future__ import annotations

from collections.abc import Iterator

from clearconv.backend import Array, engine
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


def run_order(layers: list[Module]) -> list[Module]:
    """The order a :class:`Sequential` runs ``layers`` in: a ReLU followed by
    max pooling runs after it instead, on the pooled array.

    ``maxpool(relu(x)) == relu(maxpool(x))``, and so are the gradients, bit for
    bit: where a window's maximum is positive both orders pick the same
    first maximum, and elsewhere the output and the gradient are 0 either
    way. The ReLU then works on an array a quarter of the size (2x2 pooling)
    and its backward mask is applied before the gradient is spread back out.
    """
    order: list[Module] = []
    i = 0
    while i < len(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if nxt is not None and layers[i].commutes_with_max_pool and nxt.max_pool:
            order += [nxt, layers[i]]
            i += 2
        else:
            order.append(layers[i])
            i += 1
    return order


def _backward(layer: Module, grad_out: Array, owned: bool) -> Array:
    """``layer.backward(grad_out)``, in place when ``grad_out`` is ``owned`` and it can."""
    if owned and layer.works_in_place:
        return layer.backward(grad_out, inplace=True)  # type: ignore[call-arg]
    return layer.backward(grad_out)


class Sequential(Module):
    """Layers applied in order: ``y = layers[-1](... layers[0](x))``.

    Backward runs the layers' backward in reverse order. Children are named
    ``"0"``, ``"1"``, ... so ``state_dict()`` keys match ``torch.nn.Sequential``
    (``"0.weight"``, ``"3.running_mean"``).

    Parameters
    ----------
    *layers : Module
        The layers, in order.

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

    skips_input_grad = True

    def __init__(self, *layers: Module) -> None:
        self._layers: list[Module] = [_check_module("Sequential", m) for m in layers]

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

    def forward(self, x: Array, training: bool = False) -> Array:
        """The layers in order (a ReLU before max pooling after it: :func:`run_order`).

        An array a layer made and dropped (``fresh_output``) is overwritten by
        the next layer when that one ``works_in_place`` (a ReLU after a
        convolution). ``x`` itself, the caller's, is never written.
        """
        owned = False  # whether x is an array only this loop refers to
        with engine():  # the layers' products share the threads (clearconv.backend.engine)
            for layer in run_order(self._layers):
                if owned and layer.works_in_place:
                    x = layer.forward(x, training=training, inplace=True)  # type: ignore[call-arg]
                else:
                    x = layer(x, training=training)
                owned = layer.fresh_output
        return x

    def backward(self, grad_out: Array, input_grad: bool = True) -> Array | None:
        """Backpropagate through the layers in the reverse of forward's order.

        ``input_grad=False`` (what training uses: the data is not learned)
        skips the first layer's input gradient, the costliest product of a
        first convolution, and returns None; parameter gradients are unchanged.
        As in forward, a gradient a layer made and dropped (``fresh_input_grad``)
        is overwritten by the layer before it when that one ``works_in_place``;
        ``grad_out``, the caller's, is never written.
        """
        layers = run_order(self._layers)  # as forward ran them
        owned = False  # whether grad_out is an array only this loop refers to
        with engine():  # as in forward
            for layer in reversed(layers[1:]):
                grad_out = _backward(layer, grad_out, owned)
                owned = layer.fresh_input_grad
            if not layers:
                return grad_out
            first = layers[0]
            if input_grad:
                return _backward(first, grad_out, owned)
            if first.skips_input_grad:
                first.backward(grad_out, input_grad=False)  # type: ignore[call-arg]
            elif first.parameters():
                first.backward(grad_out)
        return None

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

    fresh_output = fresh_input_grad = True  # new arrays, not kept (Module)

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
