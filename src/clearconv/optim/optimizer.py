"""The optimizer base: parameter validation, ``zero_grad``, ``step`` and state.

An optimizer owns a list of :class:`~clearconv.nn.Parameter` and, per parameter,
the arrays its update rule carries from step to step (momentum buffers, Adam
moments). That state lives for the whole run: nothing resets it between steps.

State dict layout (what :meth:`Optimizer.state_dict` returns and
:meth:`Optimizer.load_state_dict` accepts)::

    {
        "type": "Adam",                      # the optimizer's class name
        "hyperparameters": {                 # JSON-able: floats, bools, lists
            "lr": 0.001, "betas": [0.9, 0.999], "eps": 1e-08, ...
        },
        "state": {                           # only parameters that have state
            0: {"step": 3, "exp_avg": array, "exp_avg_sq": array},
            2: {...},                        # key: index into the params list
        },
    }

Every key is a plain string or int and every leaf is a number, a bool, a list
of numbers or an array, so a checkpoint writer can flatten it to
``state.0.exp_avg``-style names in an ``.npz``. Arrays are copies, so a dict
taken mid-run is a snapshot. ``load_state_dict`` also accepts parameter indices
written as strings (``"0"``) and counts stored as 0-d arrays, which is what
such a round trip gives back.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from clearconv.backend import Array, xp_of
from clearconv.nn.module import Module
from clearconv.nn.parameter import Parameter


def check_params(owner: str, params: Any) -> list[Parameter]:
    """Turn ``params`` into a non-empty list of distinct Parameters."""
    if isinstance(params, (Module, Parameter)) or not isinstance(params, Iterable):
        raise TypeError(
            f"{owner}: params must be an iterable of Parameters (e.g. model.parameters()), "
            f"got {type(params).__name__}"
        )
    out = list(params)
    if not out:
        raise ValueError(
            f"{owner}: params is empty; pass model.parameters() of a model with weights"
        )
    seen: dict[int, int] = {}
    for i, p in enumerate(out):
        if not isinstance(p, Parameter):
            raise TypeError(
                f"{owner}: params must contain only Parameters, got {type(p).__name__} at index {i}"
            )
        if id(p) in seen:
            raise ValueError(
                f"{owner}: params contains the same Parameter twice (index {seen[id(p)]} and {i})"
            )
        seen[id(p)] = i
    return out


def _as_count(where: str, value: Any) -> int:
    """A step count stored as an int, a numpy integer or a 0-d/1-element array."""
    arr = np.asarray(value)
    if arr.size != 1 or arr.dtype.kind not in "iuf" or isinstance(value, bool):
        raise TypeError(f"{where} must be a non-negative int, got {value!r}")
    v = arr.reshape(()).item()
    if v != int(v) or v < 0:
        raise ValueError(f"{where} must be a non-negative int, got {value!r}")
    return int(v)


def _plain(v: Any) -> Any:
    """Numbers and sequences as Python values (undo an ``.npz`` or JSON round trip)."""
    if isinstance(v, (list, tuple)) or (isinstance(v, np.ndarray) and v.ndim > 0):
        return tuple(_plain(x) for x in v)
    if isinstance(v, (np.generic, np.ndarray)):
        return v.item()
    return v


class Optimizer:
    """Base class of optimizers: holds the parameters and their per-parameter state.

    Subclasses set :attr:`defaults` (their hyperparameters with default values,
    in constructor order), validate them in ``_check_hyperparameters`` and
    implement ``_update(p, grad, state)``, which changes ``p.data`` in place.

    Parameters
    ----------
    params : iterable of Parameter
        The parameters to update, e.g. ``model.parameters()``. Must be
        non-empty and without duplicates.

    Attributes
    ----------
    params : list of Parameter
        The parameters in the order given; state is keyed by this index.
    state : dict of int to dict
        Per-parameter state arrays (empty until the first ``step``).
    lr : float
        The learning rate; learning-rate schedules change it between steps.

    Raises
    ------
    TypeError
        If ``params`` is not an iterable of Parameters.
    ValueError
        If ``params`` is empty or holds a Parameter twice.
    """

    lr: float
    defaults: ClassVar[dict[str, Any]] = {}
    # Keys of the per-parameter state; "step" is a count, the rest are arrays.
    _state_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Iterable[Parameter], **hyperparameters: Any) -> None:
        self.params = check_params(type(self).__name__, params)
        self.state: dict[int, dict[str, Any]] = {}
        for name, value in self._check_hyperparameters(hyperparameters).items():
            setattr(self, name, value)

    # -- subclass hooks -----------------------------------------------------
    def _check_hyperparameters(self, h: dict[str, Any]) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} does not validate hyperparameters")

    def _update(self, p: Parameter, grad: Array, state: dict[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError(f"{type(self).__name__} does not implement _update")

    def _expected_state_keys(self, hyperparameters: dict[str, Any]) -> set[str]:
        return set(self._state_keys)

    # -- the training loop ----------------------------------------------------
    def zero_grad(self) -> None:
        """Clear every parameter's gradient (``p.grad = None``)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient, in place.

        Parameters whose ``grad`` is None are skipped (their state is untouched),
        as in PyTorch.
        """
        for i, p in enumerate(self.params):
            if p.grad is None:
                continue
            if tuple(p.grad.shape) != p.shape:
                raise ValueError(
                    f"{type(self).__name__}.step: parameter {i} has shape {p.shape} "
                    f"but its grad has shape {tuple(p.grad.shape)}"
                )
            grad = p.grad.astype(p.dtype, copy=False)
            self._update(p, grad, self.state.setdefault(i, {}))

    # -- state ----------------------------------------------------------------
    def hyperparameters(self) -> dict[str, Any]:
        """Current hyperparameters by name (tuples as lists, so JSON-able)."""
        out = {}
        for name in self.defaults:
            v = getattr(self, name)
            out[name] = list(v) if isinstance(v, tuple) else v
        return out

    def state_dict(self) -> dict[str, Any]:
        """A snapshot of hyperparameters and per-parameter state (see module docs)."""
        state = {}
        for i, s in sorted(self.state.items()):
            if s:
                state[i] = {k: (v.copy() if hasattr(v, "shape") else v) for k, v in s.items()}
        return {
            "type": type(self).__name__,
            "hyperparameters": self.hyperparameters(),
            "state": state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state from :meth:`state_dict`'s output.

        Raises
        ------
        TypeError
            If ``state_dict`` is not a dict of the documented layout or was
            written by another optimizer class.
        KeyError
            If keys are missing or unexpected.
        ValueError
            If a hyperparameter is invalid, a parameter index is out of range
            or an array's shape differs from its parameter's.
        """
        owner = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict):
            raise TypeError(f"{owner}: expected a dict, got {type(state_dict).__name__}")
        top = {"type", "hyperparameters", "state"}
        if set(state_dict) != top:
            raise KeyError(
                f"{owner}: expected keys {sorted(top)}, got {sorted(map(str, state_dict))}"
            )
        if state_dict["type"] != type(self).__name__:
            raise TypeError(
                f"{owner}: state was written by {state_dict['type']!r}, not {type(self).__name__!r}"
            )
        hyper = state_dict["hyperparameters"]
        if not isinstance(hyper, dict) or set(hyper) != set(self.defaults):
            got = sorted(hyper) if isinstance(hyper, dict) else type(hyper).__name__
            raise KeyError(f"{owner}: expected hyperparameters {sorted(self.defaults)}, got {got}")
        hyper = {k: _plain(v) for k, v in hyper.items()}
        checked = self._check_hyperparameters(hyper)
        new_state = self._load_param_state(owner, state_dict["state"], checked)
        # Only change anything once everything has been validated.
        for name, value in checked.items():
            setattr(self, name, value)
        self.state = new_state

    def _load_param_state(
        self, owner: str, raw: Any, hyperparameters: dict[str, Any]
    ) -> dict[int, dict[str, Any]]:
        if not isinstance(raw, dict):
            raise TypeError(f"{owner}: state must be a dict, got {type(raw).__name__}")
        out: dict[int, dict[str, Any]] = {}
        for key, entry in raw.items():
            if isinstance(key, str) and key.isdigit():
                key = int(key)
            i = int(key) if isinstance(key, numbers.Integral) else -1
            if not 0 <= i < len(self.params):
                raise ValueError(
                    f"{owner}: state key {key!r} is not a parameter index in "
                    f"[0, {len(self.params)})"
                )
            if not isinstance(entry, dict):
                raise TypeError(f"{owner}: state[{i}] must be a dict, got {type(entry).__name__}")
            expected = self._expected_state_keys(hyperparameters)
            if set(entry) != expected:
                raise KeyError(
                    f"{owner}: state[{i}] expected keys {sorted(expected)}, got {sorted(entry)}"
                )
            p = self.params[i]
            xp = xp_of(p.data)
            s: dict[str, Any] = {}
            for k, v in entry.items():
                if k == "step":
                    s[k] = _as_count(f"{owner}: state[{i}]['step']", v)
                    continue
                arr = xp.asarray(v)
                if tuple(arr.shape) != p.shape:
                    raise ValueError(
                        f"{owner}: state[{i}][{k!r}] has shape {tuple(arr.shape)}, "
                        f"expected {p.shape} (the parameter's shape)"
                    )
                s[k] = arr.astype(p.dtype, copy=True)
            out[i] = s
        return out

    # -- display --------------------------------------------------------------
    def __repr__(self) -> str:
        parts = [f"lr={self.lr!r}"]
        for name, default in self.defaults.items():
            if name == "lr":
                continue
            v = getattr(self, name)
            if v != default:
                parts.append(f"{name}={v!r}")
        return f"{type(self).__name__}({', '.join(parts)})"
