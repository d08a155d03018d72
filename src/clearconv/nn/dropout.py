"""Dropout with an explicit random generator."""

from __future__ import annotations

import numpy as np

from clearconv import functional as T
from clearconv._validate import check_bool, check_float, check_float_array, check_rng
from clearconv.backend import Array
from clearconv.nn.activation import check_writable
from clearconv.nn.module import Module


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability ``p``
    and scale the rest by ``1 / (1 - p)``; identity in eval.

    ``y = x * m / (1 - p)`` with ``m ~ Bernoulli(1 - p)`` drawn from the layer's
    own generator, so a seed makes a run reproducible. Backward multiplies by
    the same scaled mask.

    Parameters
    ----------
    p : float, default 0.5
        Probability of zeroing an element, in ``[0, 1)``.
    inplace : bool, default False
        In training, write the output over the input array, as PyTorch's
        ``inplace=True``.
    rng : numpy.random.Generator, optional
        Source of the masks (a fresh unseeded one when None).

    Shape: input ``(*)``, output ``(*)``.

    Attributes
    ----------
    rng : numpy.random.Generator
        The generator the masks are drawn from.

    Raises
    ------
    TypeError
        If ``p`` is not a number, ``inplace`` not a bool or ``rng`` not a Generator.
    ValueError
        If ``p`` is outside ``[0, 1)``, or ``inplace`` and the input is read-only.

    Examples
    --------
    >>> import numpy as np
    >>> d = Dropout(0.5, rng=np.random.default_rng(0))
    >>> y = d(np.ones(8), training=True)
    >>> sorted(set(y.tolist())) , d(np.ones(2)).tolist()
    ([0.0, 2.0], [1.0, 1.0])
    """

    textbook = False  # True: run on clearconv.functional, never in place (use_textbook)

    def __init__(
        self, p: float = 0.5, inplace: bool = False, *, rng: np.random.Generator | None = None
    ) -> None:
        self.p = check_float("Dropout", "p", p, 0.0, 1.0, open_max=True)
        self.inplace = check_bool("Dropout", "inplace", inplace)
        self.rng = check_rng("Dropout", rng)
        self._mask: Array | None = None
        self._ran = False

    def forward(self, x: Array, training: bool = False) -> Array:
        check_float_array(self, x)
        self._ran = True
        if not training or self.p == 0.0:
            self._mask = None
            return x
        if self.textbook:  # the same draws from the same generator as below
            self._mask = T.dropout_mask(x.shape, self.p, self.rng, x.dtype)
            return x * self._mask
        keep = self.rng.random(x.shape, dtype=x.dtype) >= self.p  # P(keep) = 1 - p
        # The scaled mask: 0 or 1 / (1 - p) in the input's dtype.
        self._mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        if self.inplace:
            check_writable(self, x)
            x *= self._mask
            return x
        return x * self._mask

    def backward(self, grad_out: Array) -> Array:
        self._cached(self._ran or None)  # the mask may be None after a forward (eval, p=0)
        return grad_out if self._mask is None else grad_out * self._mask

    def extra_repr(self) -> str:
        parts = [] if self.p == 0.5 else [f"p={self.p}"]
        return ", ".join(parts + (["inplace=True"] if self.inplace else []))
