"""The planner: how a container runs its layers, decided in one place.

A container (:class:`~clearconv.nn.Sequential`) asks :func:`plan` for the
steps of a pass and runs them; nothing about speed is decided in the
container itself. Three decisions, each bit for bit the same results as the
layers run plainly in order:

- **Reordering**: a ReLU followed by max pooling runs after it instead, on
  the pooled array (:func:`run_order`).
- **In place**: a layer that allows it (a ReLU) overwrites an array the
  layer before it made and dropped, instead of allocating another of the
  same size whose first writes fault its pages in; the same for the
  gradient on the way back.
- **Unused input gradient**: when the container's input is data
  (``needs_input_grad = False``, what training sets), its first layer makes
  only its parameter gradients: for a first convolution that skips the
  costliest product of its backward pass.

What the planner may do with a layer is declared by the layer's class, in
one :class:`Traits` value (``Module.traits``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple


@dataclass(frozen=True)
class Traits:
    """What the planner may do with a layer (a class attribute, ``traits``).

    Parameters
    ----------
    fresh : bool
        ``forward`` returns, and ``backward`` returns as the input gradient,
        new memory the layer keeps no reference to: whoever called it owns
        the result, and the planner may let the next layer overwrite it.
    in_place : bool
        The layer has ``forward_in_place(x, training)`` and
        ``backward_in_place(grad_out)``: ``forward`` and ``backward``
        writing their result over their argument, which the planner passes
        only when nothing else refers to it.
    commutes_with_max_pool : bool
        An elementwise map that max pooling right after it may run before it
        with the same results and gradients, bit for bit (ReLU).
    max_pool : bool
        Max pooling (the partner of ``commutes_with_max_pool``).
    params_only : bool
        The layer has ``backward_params(grad_out)``: its parameter gradients
        without the input gradient, for a first layer whose input is data.
    """

    fresh: bool = False
    in_place: bool = False
    commutes_with_max_pool: bool = False
    max_pool: bool = False
    params_only: bool = False


def run_order(layers: Sequence[Any]) -> list[Any]:
    """The order ``layers`` run in: a ReLU followed by max pooling runs after it instead.

    ``maxpool(relu(x)) == relu(maxpool(x))``, and so are the gradients, bit for
    bit: where a window's maximum is positive both orders pick the same
    first maximum, and elsewhere the output and the gradient are 0 either
    way. The ReLU then works on an array a quarter of the size (2x2 pooling)
    and its backward mask is applied before the gradient is spread back out.
    """
    order: list[Any] = []
    i = 0
    while i < len(layers):
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if nxt is not None and layers[i].traits.commutes_with_max_pool and nxt.traits.max_pool:
            order += [nxt, layers[i]]
            i += 2
        else:
            order.append(layers[i])
            i += 1
    return order


class Step(NamedTuple):
    """One layer of a plan: the names of the methods that run it.

    The container calls ``getattr(layer, forward)(x, training)`` and
    ``getattr(layer, backward)(grad)``; ``backward`` is None for a first
    layer with nothing to learn whose input gradient is not needed. Names,
    not bound methods, so a plan may be kept while the layers stay the same.
    """

    layer: Any
    forward: str
    backward: str | None


def plan(layers: Sequence[Any], needs_input_grad: bool = True) -> list[Step]:
    """The steps that run ``layers`` (a container's children, in order).

    Forward runs the steps in order and backward in reverse. The caller's
    input, and the gradient the caller passes to backward, are never
    written: only arrays a fresh layer made are handed to an in-place one.
    With ``needs_input_grad`` False the first step's backward makes only
    parameter gradients (``backward_params`` where the layer has it; else
    its ``backward``, whose result the container drops; else nothing), and
    the container returns None.

    Examples
    --------
    >>> from clearconv import nn
    >>> net = [nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.ReLU()]
    >>> [(type(s.layer).__name__, s.forward, s.backward) for s in plan(net, False)]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('Conv2d', 'forward', 'backward_params'), ('MaxPool2d', 'forward', 'backward'),
     ('ReLU', 'forward_in_place', 'backward'), ('ReLU', 'forward', 'backward')]
    """
    order = run_order(layers)
    steps = []
    for i, layer in enumerate(order):
        # x is the previous layer's fresh output; the gradient, the next one's.
        owned_x = i > 0 and order[i - 1].traits.fresh
        owned_grad = i + 1 < len(order) and order[i + 1].traits.fresh
        in_place = layer.traits.in_place
        forward = "forward_in_place" if in_place and owned_x else "forward"
        backward: str | None = "backward_in_place" if in_place and owned_grad else "backward"
        if i == 0 and not needs_input_grad:
            if layer.traits.params_only:
                backward = "backward_params"
            elif not layer.parameters():
                backward = None  # nothing to learn, nothing to return
        steps.append(Step(layer, forward, backward))
    return steps


@contextmanager
def no_input_grad(module: Any) -> Iterator[Any]:
    """Within the block, ``module.backward`` skips its input gradient and returns None.

    For a training step, whose input is data that is not learned: sets
    ``module.needs_input_grad`` to False and gives it its former value
    back on leaving, so the module computes input gradients again after
    training (a saliency map needs them).

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0)))
    >>> y = net(np.ones((1, 1, 5, 5), np.float32), training=True)
    >>> with no_input_grad(net):
    ...     print(net.backward(np.ones_like(y)))
    None
    >>> net.needs_input_grad
    True
    """
    saved = module.needs_input_grad
    module.needs_input_grad = False
    try:
        yield module
    finally:
        module.needs_input_grad = saved
