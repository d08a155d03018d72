"""The textbook switch: run layers on :mod:`clearconv.functional` instead of the engine.

Every layer has a ``textbook`` attribute, False by default: its forward and
backward then call :mod:`clearconv.engine` (blocked, threaded, reusing
memory). Set to True, they call the plain functions of
:mod:`clearconv.functional` instead, the ones to step through in a debugger
or read beside ``torch.nn.functional``. The numbers are the same to float32
rounding (the tests train LeNet-5 both ways); only the speed differs.

The switch is an attribute of each layer, nothing global: :func:`use_textbook`
sets it on a network and every layer inside it, and setting
``layer.textbook`` on one layer switches that layer alone.
"""

from __future__ import annotations

from typing import Any, TypeVar

from clearconv._validate import check_bool

_T = TypeVar("_T")


def use_textbook(net: _T, on: bool = True) -> _T:
    """Run ``net`` (a module and every module in it, or a loss) on the textbook.

    Parameters
    ----------
    net : Module or loss
        A layer, a container (every layer inside is switched) or a loss
        (:class:`~clearconv.nn.CrossEntropyLoss`, :class:`~clearconv.nn.MSELoss`).
    on : bool, default True
        True for :mod:`clearconv.functional`, False for the engine again.

    Returns
    -------
    The same ``net``, switched (so that ``use_textbook(zoo.build(...))`` reads in one line).

    Raises
    ------
    TypeError
        If ``on`` is not a bool or ``net`` has no ``textbook`` switch.

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv import nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0)), nn.ReLU())
    >>> x = np.random.default_rng(1).standard_normal((1, 1, 5, 5)).astype(np.float32)
    >>> fast = net(x)
    >>> [layer.textbook for layer in use_textbook(net)]  # each layer's own switch
    [True, True]
    >>> bool(np.allclose(net(x), fast, atol=1e-6))
    True
    """
    on = check_bool("use_textbook", "on", on)
    modules = getattr(net, "modules", None)  # a Module's walk over itself and its children
    if not callable(modules) and not hasattr(net, "textbook"):
        raise TypeError(
            f"use_textbook expected a clearconv layer, network or loss, got {type(net).__name__}"
        )
    targets: list[Any] = list(modules()) if callable(modules) else [net]
    for t in targets:
        t.textbook = on
    return net
