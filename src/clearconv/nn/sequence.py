"""Layers for sequences (sentences, sounds): Embedding, Permute, AdaptiveMaxPool1d.

A sentence becomes an image when each word's vector (rows) is laid out over
its position (columns): ``Embedding`` turns word indices ``(N, L)`` into
vectors ``(N, L, D)``, ``Permute([0, 2, 1])`` makes the vectors the channels of
a 1-D signal ``(N, D, L)`` for ``Conv1d``, and ``AdaptiveMaxPool1d(1)`` keeps
each filter's strongest match anywhere in the sentence (max over time, Kim 2014).
"""

from __future__ import annotations

import numpy as np

from clearconv import _validate as v
from clearconv.backend import Array, xp_of
from clearconv.nn.module import Module
from clearconv.nn.parameter import Parameter


class Embedding(Module):
    """Learned vectors looked up by index: ``y[n, l] = weight[x[n, l]]`` (``torch.nn.Embedding``).

    Backward adds each output gradient to the row it was read from
    (``weight.grad[i] = sum of g[n, l] where x[n, l] = i``); the row of
    ``padding_idx`` gets no gradient and starts at zero.

    Parameters
    ----------
    num_embeddings : int
        Rows (the vocabulary size).
    embedding_dim : int
        Length of each vector.
    padding_idx : int, optional
        A row that stays zero (padding tokens); negative counts from the end.
    rng : numpy.random.Generator, optional
        Initial weights ``N(0, 1)`` as PyTorch.
    dtype : float32 (default) or float64

    Shape: input ``(*)`` integer indices in ``[0, num_embeddings)``, output ``(*, embedding_dim)``.

    Attributes
    ----------
    weight : Parameter ``(num_embeddings, embedding_dim)``

    Raises
    ------
    TypeError
        For a non-integer input.
    ValueError
        For an index outside the table, or a ``padding_idx`` outside it.

    Examples
    --------
    >>> import numpy as np
    >>> emb = Embedding(4, 2, padding_idx=0, rng=np.random.default_rng(0))
    >>> emb(np.array([[0, 3]])).shape, emb.weight.data[0].tolist()
    ((1, 2, 2), [0.0, 0.0])
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None,
                 *, rng: np.random.Generator | None = None, dtype=np.float32) -> None:  # fmt: skip
        self.num_embeddings = v.check_int("Embedding", "num_embeddings", num_embeddings, 1)
        self.embedding_dim = v.check_int("Embedding", "embedding_dim", embedding_dim, 1)
        if padding_idx is not None:
            p = v.check_int("Embedding", "padding_idx", padding_idx)
            if not -num_embeddings <= p < num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx must be within [-{num_embeddings}, "
                    f"{num_embeddings - 1}], got {padding_idx}"
                )
            padding_idx = p % num_embeddings
        self.padding_idx = padding_idx
        gen = v.check_rng("Embedding", rng) if rng is not None else np.random.default_rng()
        dt = v.check_dtype("Embedding", dtype)
        w = gen.standard_normal((num_embeddings, embedding_dim)).astype(dt)
        if padding_idx is not None:
            w[padding_idx] = 0
        self.weight = Parameter(w)
        self._idx: Array | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (*tuple(input_shape), self.embedding_dim)

    def forward(self, x: Array, training: bool = False) -> Array:
        xp = xp_of(x)
        if xp.asarray(x).dtype.kind not in "iu":
            raise TypeError(f"{self!r} expected integer indices, got {xp.asarray(x).dtype}")
        if x.size and (int(x.min()) < 0 or int(x.max()) >= self.num_embeddings):
            raise ValueError(
                f"{self!r} expected indices in [0, {self.num_embeddings}), "
                f"got values from {int(x.min())} to {int(x.max())}"
            )
        self._idx = x
        return self.weight.data[x]

    def backward(self, grad_out: Array) -> Array | None:
        g = grad_out.reshape(-1, self.embedding_dim)
        idx = self._cached(self._idx).reshape(-1)
        # Rows read more than once get the sum of their gradients: sort the tokens,
        # then one reduceat sums each run of equal indices (np.add.at does the same
        # one element at a time).
        order = np.argsort(idx, kind="stable")
        rows, starts = np.unique(idx[order], return_index=True)
        grad = np.zeros_like(self.weight.data)
        if len(rows):
            grad[rows] = np.add.reduceat(g[order], starts, axis=0)
        if self.padding_idx is not None:
            grad[self.padding_idx] = 0
        self.weight.accumulate(grad)
        return None  # indices have no gradient

    def extra_repr(self) -> str:
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class Permute(Module):
    """Reorder the dims: ``y = x.transpose(dims)`` (torchvision's ``ops.Permute``).

    Backward applies the inverse order. ``Permute([0, 2, 1])`` turns word
    vectors ``(N, L, D)`` into channels ``(N, D, L)`` for ``Conv1d``.

    Parameters
    ----------
    dims : sequence of int
        A permutation of ``0 .. ndim - 1`` (batch included).

    Examples
    --------
    >>> import numpy as np
    >>> Permute([0, 2, 1])(np.zeros((2, 5, 3))).shape
    (2, 3, 5)
    """

    def __init__(self, dims: tuple[int, ...] | list[int]) -> None:
        if isinstance(dims, (str, bytes)) or sorted(dims) != list(range(len(dims))):
            raise ValueError(
                f"Permute: dims must be a permutation of 0..{len(dims) - 1}, got {dims}"
            )
        self.dims = tuple(int(d) for d in dims)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != len(self.dims):
            raise ValueError(
                f"{self!r} expected a {len(self.dims)}-d input, got shape {tuple(input_shape)}"
            )
        return tuple(input_shape[d] for d in self.dims)

    def forward(self, x: Array, training: bool = False) -> Array:
        self.output_shape(tuple(x.shape))
        return xp_of(x).ascontiguousarray(x.transpose(self.dims))

    def backward(self, grad_out: Array) -> Array:
        return xp_of(grad_out).ascontiguousarray(grad_out.transpose(np.argsort(self.dims)))

    def extra_repr(self) -> str:
        return str(list(self.dims))


class AdaptiveMaxPool1d(Module):
    """Max over ``output_size`` windows tiling the sequence (``torch.nn.AdaptiveMaxPool1d``).

    Window ``i`` covers ``floor(i L / o) .. ceil((i + 1) L / o) - 1``; with
    ``output_size=1`` it is the max over all time. Backward sends each
    window's gradient to its (first) maximum.

    Parameters
    ----------
    output_size : int

    Shape: input ``(N, C, L)``, output ``(N, C, output_size)``.

    Examples
    --------
    >>> import numpy as np
    >>> AdaptiveMaxPool1d(1)(np.array([[[1.0, 5.0, 2.0]]])).tolist()
    [[[5.0]]]
    """

    def __init__(self, output_size: int) -> None:
        self.output_size = v.check_int("AdaptiveMaxPool1d", "output_size", output_size, 1)
        self._cache: tuple[tuple[int, ...], Array] | None = None

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise ValueError(f"{self!r} expected input of shape (N, C, L), got {input_shape}")
        return (*tuple(input_shape)[:2], self.output_size)

    def _windows(self, length: int) -> Array:
        """``(o, w)`` input positions of each window, its last position repeated to pad."""
        o = self.output_size
        i = np.arange(o)
        start, end = (i * length) // o, -((-(i + 1) * length) // o)
        width = int((end - start).max())
        return np.minimum(start[:, None] + np.arange(width)[None, :], end[:, None] - 1)

    def forward(self, x: Array, training: bool = False) -> Array:
        v.check_float_array(self, x)
        self.output_shape(tuple(x.shape))
        idx = self._windows(x.shape[2])
        win = x[:, :, idx]  # (N, C, o, w)
        arg = win.argmax(axis=3)  # first maximum of each window
        self._cache = (tuple(x.shape), np.take_along_axis(np.broadcast_to(idx, win.shape),
                                                          arg[..., None], 3)[..., 0])  # fmt: skip
        return np.take_along_axis(win, arg[..., None], 3)[..., 0]

    def backward(self, grad_out: Array) -> Array:
        shape, winners = self._cached(self._cache)
        n, c, length = shape
        dx = np.zeros((n * c, length), grad_out.dtype)
        rows = np.arange(n * c)[:, None] * length
        # windows may overlap (L not a multiple of o): add, do not assign
        np.add.at(dx.reshape(-1), (rows + winners.reshape(n * c, -1)).ravel(),
                  grad_out.reshape(-1))  # fmt: skip
        return dx.reshape(shape)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
