"""A trained network with what it needs to be used: input shape, class names,
normalisation and training metadata.

``Model`` wraps a network (usually a :class:`~clearconv.nn.Sequential`) and
delegates the layer contract to it, so ``state_dict()`` keys are the net's own
(``"0.weight"``), exactly those of the same ``torch.nn.Sequential``.
:func:`clearconv.save` / :func:`clearconv.load` keep it in one ``.npz`` file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from clearconv.backend import Array
from clearconv.engine.activation import softmax
from clearconv.engine.plan import Traits
from clearconv.nn.activation import Softmax
from clearconv.nn.container import Sequential
from clearconv.nn.module import Module
from clearconv.nn.parameter import Parameter

__all__ = ["Model"]


def _check_stats(name: str, value: Any, channels: int) -> np.ndarray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size != channels or not np.all(np.isfinite(arr)):
        raise ValueError(
            f"Model: {name} must hold {channels} finite value(s), one per input channel, "
            f"got {np.asarray(value).tolist()}"
        )
    if name == "std" and not np.all(arr > 0):
        raise ValueError(f"Model: std must be positive, got {arr.tolist()}")
    return arr


class Model(Module):
    """A network plus its input shape, class names and normalisation.

    ``preprocess`` maps raw images to the network's input::

        x = images / 255            (uint8 only; float images are taken as [0, 1])
        x = (x - mean[c]) / std[c]  (per channel, when mean/std are set)

    and ``predict_proba`` is ``softmax(net(preprocess(images)))``.

    Parameters
    ----------
    net : Module
        The network; ``forward``, ``backward``, ``parameters``, ``state_dict``,
        ``load_state_dict``, indexing and ``len`` delegate to it.
    input_shape : tuple of int
        One sample's shape without the batch: ``(C, H, W)`` (or ``(C, L)``).
    class_names : sequence of str
        One name per output of the net.
    mean, std : sequence of float, optional
        Per-channel statistics in ``[0, 1]`` units (see
        :func:`clearconv.data.channel_stats`); ``None`` for no normalisation.
    meta : dict, optional
        JSON-able training metadata (model name, epochs, accuracy, ...).

    Shape: ``forward`` ``(N, *input_shape)`` -> ``(N, K)`` for ``K`` classes.

    Raises
    ------
    TypeError
        If ``net`` is not a Module or ``meta`` not a dict.
    ValueError
        For a bad input shape, class names that do not match the net's output,
        or mean/std of the wrong length or non-positive std.

    Examples
    --------
    >>> import numpy as np
    >>> from clearconv import nn
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, rng=np.random.default_rng(0)))
    >>> m = Model(net, (1, 2, 2), ["a", "b"], mean=[0.5], std=[0.25])
    >>> m.preprocess(np.full((1, 2, 2), 255, np.uint8)).tolist()
    [[[[2.0, 2.0], [2.0, 2.0]]]]
    >>> m.predict_proba(np.zeros((3, 1, 2, 2), np.float32)).shape, list(m.state_dict())
    ((3, 2), ['1.weight', '1.bias'])
    """

    def __init__(
        self,
        net: Module,
        input_shape: Sequence[int],
        class_names: Sequence[str],
        mean: Sequence[float] | np.ndarray | None = None,
        std: Sequence[float] | np.ndarray | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(net, Module):
            raise TypeError(f"Model: net must be a clearconv Module, got {type(net).__name__}")
        if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
            raise TypeError(f"Model: input_shape must be a tuple of ints, got {input_shape!r}")
        shape = tuple(input_shape)
        if len(shape) not in (1, 2, 3) or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape
        ):
            raise ValueError(
                f"Model: input_shape must be (C, H, W), (C, L) or (L,) of positive ints, "
                f"got {shape}"
            )
        self.net = net
        self.input_shape: tuple[int, ...] = tuple(int(s) for s in shape)
        if isinstance(class_names, (str, bytes)):
            raise TypeError(f"Model: class_names must be a list of str, got {class_names!r}")
        self.class_names: list[str] = [str(c) for c in class_names]
        out = net.output_shape((1, *self.input_shape))
        # (1, K) for a classifier; (1, K, H, W) for a net that labels every pixel.
        per_pixel = len(out) == 4 and tuple(out[2:]) == self.input_shape[1:]
        if (len(out) != 2 and not per_pixel) or out[1] != len(self.class_names):
            raise ValueError(
                f"Model: the net maps {(1, *self.input_shape)} to {tuple(out)}, which does not "
                f"match {len(self.class_names)} class names (expected (1, "
                f"{len(self.class_names)}), or (1, {len(self.class_names)}, H, W) per pixel)"
            )
        self.per_pixel = per_pixel
        c = self.input_shape[0]
        self.mean = _check_stats("mean", mean, c)
        self.std = _check_stats("std", std, c)
        if (self.mean is None) != (self.std is None):
            raise ValueError("Model: give both mean and std, or neither")
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"Model: meta must be a dict, got {type(meta).__name__}")
        self.meta: dict[str, Any] = dict(meta or {})

    # -- delegation to the net ------------------------------------------------
    def forward(self, x: Array, training: bool = False) -> Array:
        return self.net(x, training=training)

    @property
    def traits(self) -> Traits:  # type: ignore[override]
        return self.net.traits

    @property
    def needs_input_grad(self) -> bool:  # type: ignore[override]
        """The net's: False (training) skips the input gradient where the net can."""
        return bool(self.net.needs_input_grad)

    @needs_input_grad.setter
    def needs_input_grad(self, value: bool) -> None:
        self.net.needs_input_grad = value

    def backward(self, grad_out: Array) -> Array | None:
        """Backpropagate through the net (None when ``needs_input_grad`` is False)."""
        return self.net.backward(grad_out)

    def backward_params(self, grad_out: Array) -> None:
        """The net's parameter gradients only (the planner's call: ``Traits.params_only``)."""
        self.net.backward_params(grad_out)  # type: ignore[attr-defined]

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.net.output_shape(input_shape)

    def children(self) -> Iterator[tuple[str, Module]]:
        return self.net.children()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        return self.net.named_parameters(prefix)

    def modules(self) -> Iterator[Module]:
        return self.net.modules()

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        return self.net.named_modules(prefix)

    def state_dict(self) -> dict[str, Array]:
        return self.net.state_dict()

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        self.net.load_state_dict(state, strict=strict)

    def zero_grad(self) -> None:
        self.net.zero_grad()

    def __getitem__(self, index: Any) -> Module:
        return self.net[index]  # type: ignore[index]

    def __len__(self) -> int:
        return len(self.net)  # type: ignore[arg-type]

    def layers(self) -> list[tuple[str, Module]]:
        """``(name, layer)`` for every leaf layer, depth first (PyTorch's dotted names)."""
        return [(n, m) for n, m in self.net.named_modules() if not list(m.children())]

    # -- using it -------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def preprocess(self, images: Array) -> np.ndarray:
        """Raw images -> the float32 batch the net expects.

        Parameters
        ----------
        images : numpy.ndarray
            ``(N, *input_shape)``, or ``(N, H, W)`` for one-channel models;
            uint8 (scaled by 1/255) or float in ``[0, 1]``.

        Raises
        ------
        TypeError
            For images that are not uint8 or float.
        ValueError
            For a shape other than ``(N, *input_shape)``.
        """
        x = np.asarray(images)
        if len(self.input_shape) == 1:
            return self._tokens(x)
        if x.dtype != np.uint8 and x.dtype.kind != "f":
            raise TypeError(f"Model.preprocess expected uint8 or float images, got {x.dtype}")
        if self.input_shape[0] == 1 and x.ndim == len(self.input_shape):
            x = x[:, None]  # (N, H, W) -> (N, 1, H, W)
        if x.shape[1:] != self.input_shape:
            want = ", ".join(map(str, self.input_shape))
            raise ValueError(
                f"Model.preprocess expected images of shape (N, {want}), got {x.shape}"
            )
        x = x.astype(np.float32) * np.float32(1 / 255) if x.dtype == np.uint8 else x
        x = x.astype(np.float32, copy=False)
        if self.mean is None or self.std is None:
            return x
        bshape = (-1,) + (1,) * (len(self.input_shape) - 1)
        mean = self.mean.astype(np.float32).reshape(bshape)
        std = self.std.astype(np.float32).reshape(bshape)
        return (x - mean) / std

    def _tokens(self, x: np.ndarray) -> np.ndarray:
        """Token indices ``(N, L)`` (a text model's input) pass as int64, unscaled."""
        if x.dtype.kind not in "iu":
            raise TypeError(f"Model.preprocess expected integer token indices, got {x.dtype}")
        if x.shape[1:] != self.input_shape:
            raise ValueError(
                f"Model.preprocess expected token indices of shape (N, {self.input_shape[0]}), "
                f"got {x.shape}"
            )
        return x.astype(np.int64, copy=False)

    def predict_proba(self, images: Array, batch_size: int = 256) -> np.ndarray:
        """Class probabilities ``(N, K)`` (float32) of raw images, in eval mode."""
        x = self.preprocess(images)
        # A net that already ends in Softmax (e.g. imported from ONNX) gives
        # probabilities; applying softmax again would flatten them.
        last = self.net[-1] if isinstance(self.net, Sequential) and len(self.net) else self.net
        ends_in_softmax = isinstance(last, Softmax) and last.dim in (None, 1, -1)
        out = []
        for start in range(0, len(x), batch_size):  # batches, not samples
            scores = self.net(x[start : start + batch_size], training=False)
            out.append(scores if ends_in_softmax else softmax(scores, axis=1))
        if not out:
            return np.zeros((0, self.num_classes), np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def predict(self, images: Array, batch_size: int = 256) -> np.ndarray:
        """Predicted class indices ``(N,)`` (int64)."""
        return self.predict_proba(images, batch_size).argmax(axis=1).astype(np.int64)

    def __repr__(self) -> str:
        inner = "\n".join("  " + ln for ln in repr(self.net).split("\n"))
        return f"Model(input_shape={self.input_shape}, classes={len(self.class_names)},\n{inner}\n)"
