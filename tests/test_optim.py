"""Optimizers: multi-step trajectories against torch.optim, state round trips, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clearconv import nn, optim

SHAPES = [(3, 4), (5,), (2, 3, 2, 2)]
STEPS = 8

SGD_CASES = [
    {"lr": 0.1},
    {"lr": 0.1, "momentum": 0.9},
    {"lr": 0.05, "momentum": 0.8, "dampening": 0.3},
    {"lr": 0.1, "momentum": 0.9, "nesterov": True},
    {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.05},
    {"lr": 0.1, "momentum": 0.7, "weight_decay": 0.01, "nesterov": True},
    {"lr": 0.1, "weight_decay": 0.1},
]
ADAM_CASES = [
    {},
    {"lr": 0.01, "weight_decay": 0.1},
    {"lr": 0.01, "amsgrad": True},
    {"lr": 0.01, "amsgrad": True, "weight_decay": 0.05},
    # beta1 < 0.5 takes the other branch of torch's lerp.
    {"lr": 0.02, "betas": (0.3, 0.5), "eps": 1e-6},
]
ADAMW_CASES = [
    {},
    {"lr": 0.01, "weight_decay": 0.3},
    {"lr": 0.01, "amsgrad": True, "weight_decay": 0.1},
    {"lr": 0.01, "weight_decay": 0.0},
]
CASES = (
    [("SGD", kw) for kw in SGD_CASES]
    + [("Adam", kw) for kw in ADAM_CASES]
    + [("AdamW", kw) for kw in ADAMW_CASES]
)
TOL = {np.float32: {"rtol": 2e-6, "atol": 2e-7}, np.float64: {"rtol": 1e-13, "atol": 1e-15}}


def _params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [nn.Parameter(rng.standard_normal(s).astype(dtype)) for s in SHAPES]


def _grads(dtype, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(s).astype(dtype) for s in SHAPES] for _ in range(steps)]


def _run(opt, params, grads):
    for gs in grads:
        for p, g in zip(params, gs, strict=True):
            p.grad = g.copy()
        opt.step()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_trajectory_matches_torch(name, kwargs, dtype):
    torch = pytest.importorskip("torch")
    params = _params(dtype)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = getattr(optim, name)(params, **kwargs)
    topt = getattr(torch.optim, name)(tparams, foreach=False, **kwargs)
    grads = _grads(dtype, STEPS)
    for step, gs in enumerate(grads):
        # Parameter 1 gets no gradient on step 2: both must skip it.
        for i, (p, tp, g) in enumerate(zip(params, tparams, gs, strict=True)):
            skip = i == 1 and step == 2
            p.grad = None if skip else g.copy()
            tp.grad = None if skip else torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams, strict=True):
            assert p.dtype == dtype
            np.testing.assert_allclose(p.data, tp.detach().numpy(), **TOL[dtype])
    # The state carried between steps is torch's state too.
    for i, tp in enumerate(tparams):
        tstate = topt.state[tp]
        for key, value in opt.state.get(i, {}).items():
            if key == "step":
                assert value == int(tstate["step"]) == (STEPS - 1 if i == 1 else STEPS)
            else:
                np.testing.assert_allclose(value, tstate[key].numpy(), **TOL[dtype])
        assert set(opt.state.get(i, {})) == set(tstate)


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_state_dict_round_trip_continues_identically(name, kwargs):
    cls = getattr(optim, name)
    grads = _grads(np.float32, 6)
    params = _params(np.float32)
    opt = cls(params, **kwargs)
    _run(opt, params, grads[:3])
    sd = opt.state_dict()
    json.dumps({k: v for k, v in sd.items() if k != "state"})  # everything but arrays is JSON-able
    frozen = {i: {k: np.copy(v) for k, v in s.items()} for i, s in sd["state"].items()}

    clone = _params(np.float32, seed=9)
    for c, p in zip(clone, params, strict=True):
        c.data = p.data
    opt2 = cls(clone, lr=0.5)
    opt2.load_state_dict(sd)
    assert opt2.hyperparameters() == opt.hyperparameters()
    _run(opt, params, grads[3:])
    _run(opt2, clone, grads[3:])
    for p, c in zip(params, clone, strict=True):
        np.testing.assert_array_equal(p.data, c.data)
    # The dict was a snapshot: later steps did not write into it.
    for i, s in frozen.items():
        for k, v in s.items():
            np.testing.assert_array_equal(sd["state"][i][k], v)


def test_load_state_dict_accepts_npz_style_round_trip(tmp_path):
    params = _params(np.float32)
    opt = optim.Adam(params, lr=0.01, amsgrad=True)
    _run(opt, params, _grads(np.float32, 2))
    sd = opt.state_dict()
    # Flatten as a checkpoint writer would, then rebuild with string keys and 0-d arrays.
    flat = {f"state.{i}.{k}": np.asarray(v) for i, s in sd["state"].items() for k, v in s.items()}
    flat.update({f"hyperparameters.{k}": np.asarray(v) for k, v in sd["hyperparameters"].items()})
    np.savez(tmp_path / "opt.npz", **flat)
    loaded = np.load(tmp_path / "opt.npz")
    back = {"type": "Adam", "hyperparameters": {}, "state": {}}
    for key in loaded.files:
        parts = key.split(".")
        if parts[0] == "state":
            back["state"].setdefault(parts[1], {})[parts[2]] = loaded[key]
        else:
            back["hyperparameters"][parts[1]] = loaded[key]
    opt2 = optim.Adam(_params(np.float32), lr=0.5)
    opt2.load_state_dict(back)
    assert opt2.hyperparameters() == opt.hyperparameters()
    assert opt2.betas == (0.9, 0.999) and opt2.amsgrad is True
    assert opt2.state[0]["step"] == 2 and isinstance(opt2.state[0]["step"], int)
    np.testing.assert_array_equal(opt2.state[2]["exp_avg"], opt.state[2]["exp_avg"])


def test_state_is_kept_between_steps_and_zero_grad_clears():
    p = nn.Parameter(np.zeros(2, dtype=np.float32))
    opt = optim.SGD([p], lr=1.0, momentum=0.5)
    for _ in range(3):
        p.grad = np.ones(2, dtype=np.float32)
        opt.step()
        opt.zero_grad()
        assert p.grad is None
    # Momentum accumulates: 1 + 1.5 + 1.75.
    np.testing.assert_allclose(p.data, [-4.25, -4.25])


def test_step_leaves_grad_untouched_and_keeps_dtype():
    p = nn.Parameter(np.ones(3, dtype=np.float32))
    g = np.full(3, 0.5, dtype=np.float64)  # a float64 grad is cast, not the weights
    p.grad = g
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.1)
    opt.step()
    assert p.dtype == np.float32 and p.data.dtype == np.float32
    np.testing.assert_array_equal(p.grad, np.full(3, 0.5))
    assert opt.state[0]["momentum_buffer"].dtype == np.float32


def test_params_from_a_generator_and_module_parameters():
    class Two(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(np.ones((2, 2), dtype=np.float32))
            self.bias = nn.Parameter(np.zeros(2, dtype=np.float32))

    m = Two()
    opt = optim.Adam(p for p in m.parameters())
    assert len(opt.params) == 2 and opt.params[0] is m.weight


def test_repr_shows_non_defaults():
    p = _params(np.float32)
    assert repr(optim.SGD(p, lr=0.1, momentum=0.9)) == "SGD(lr=0.1, momentum=0.9)"
    assert repr(optim.Adam(p)) == "Adam(lr=0.001)"
    assert repr(optim.AdamW(p, amsgrad=True)) == "AdamW(lr=0.001, amsgrad=True)"


@pytest.mark.parametrize(
    ("params", "exc", "match"),
    [
        ([], ValueError, "SGD: params is empty"),
        ([np.zeros(2)], TypeError, "only Parameters, got ndarray at index 0"),
        (nn.Parameter(np.zeros(2)), TypeError, "iterable of Parameters"),
        (3, TypeError, "iterable of Parameters"),
    ],
)
def test_params_errors(params, exc, match):
    with pytest.raises(exc, match=match):
        optim.SGD(params, lr=0.1)


def test_duplicate_params_and_module_errors():
    p = nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match=r"same Parameter twice \(index 0 and 1\)"):
        optim.Adam([p, p])
    with pytest.raises(TypeError, match=r"model.parameters\(\)"):
        optim.Adam(nn.Module())


@pytest.mark.parametrize(
    ("cls", "kwargs", "exc", "match"),
    [
        (optim.SGD, {"lr": -0.1}, ValueError, "SGD: lr must be >= 0"),
        (optim.SGD, {"lr": "0.1"}, TypeError, "SGD: lr must be a number"),
        (optim.SGD, {"momentum": -0.5}, ValueError, "momentum must be >= 0"),
        (optim.SGD, {"weight_decay": -1}, ValueError, "weight_decay must be >= 0"),
        (optim.SGD, {"nesterov": True}, ValueError, "nesterov=True requires momentum > 0"),
        (
            optim.SGD,
            {"momentum": 0.9, "dampening": 0.1, "nesterov": True},
            ValueError,
            "dampening = 0, got momentum=0.9, dampening=0.1",
        ),
        (optim.SGD, {"nesterov": 1}, TypeError, "nesterov must be True or False"),
        (optim.Adam, {"lr": float("nan")}, ValueError, "lr must be finite"),
        (optim.Adam, {"betas": (1.0, 0.999)}, ValueError, r"betas\[0\] must be < 1"),
        (optim.Adam, {"betas": (0.9, -0.1)}, ValueError, r"betas\[1\] must be >= 0"),
        (optim.Adam, {"betas": 0.9}, TypeError, r"betas must be a pair"),
        (optim.Adam, {"eps": -1e-8}, ValueError, "eps must be >= 0"),
        (optim.AdamW, {"weight_decay": -0.01}, ValueError, "AdamW: weight_decay must be >= 0"),
        (optim.AdamW, {"amsgrad": "yes"}, TypeError, "AdamW: amsgrad must be True or False"),
    ],
)
def test_hyperparameter_errors(cls, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        cls(_params(np.float32), **kwargs)


def test_step_with_wrong_grad_shape():
    p = nn.Parameter(np.zeros((2, 3), dtype=np.float32))
    p.grad = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"parameter 0 has shape \(2, 3\) but its grad"):
        optim.SGD([p], lr=0.1).step()


def _trained_adam():
    params = _params(np.float32)
    opt = optim.Adam(params, lr=0.01)
    _run(opt, params, _grads(np.float32, 2))
    return opt, opt.state_dict()


def test_load_state_dict_errors():
    opt, sd = _trained_adam()
    with pytest.raises(TypeError, match="expected a dict, got list"):
        opt.load_state_dict([])
    with pytest.raises(TypeError, match="written by 'Adam', not 'AdamW'"):
        optim.AdamW(_params(np.float32)).load_state_dict(sd)
    with pytest.raises(KeyError, match="expected keys"):
        opt.load_state_dict({"state": {}})
    bad = {**sd, "hyperparameters": {**sd["hyperparameters"], "lr": -1.0}}
    with pytest.raises(ValueError, match="lr must be >= 0"):
        opt.load_state_dict(bad)
    bad = {**sd, "hyperparameters": {"lr": 0.1}}
    with pytest.raises(KeyError, match="expected hyperparameters"):
        opt.load_state_dict(bad)
    bad = {**sd, "state": {7: sd["state"][0]}}
    with pytest.raises(ValueError, match=r"state key 7 is not a parameter index in \[0, 3\)"):
        opt.load_state_dict(bad)
    bad = {**sd, "state": {0: {**sd["state"][0], "exp_avg": np.zeros((4, 3))}}}
    with pytest.raises(ValueError, match=r"state\[0\]\['exp_avg'\] has shape \(4, 3\), expected"):
        opt.load_state_dict(bad)
    bad = {**sd, "state": {0: {"step": 1}}}
    with pytest.raises(KeyError, match=r"state\[0\] expected keys"):
        opt.load_state_dict(bad)
    bad = {**sd, "state": {0: {**sd["state"][0], "step": -2}}}
    with pytest.raises(ValueError, match="non-negative int"):
        opt.load_state_dict(bad)
    # A failed load changes nothing.
    assert opt.lr == 0.01 and opt.state[0]["step"] == 2
