"""Learning-rate schedules: the lr and momentum sequences equal torch's over the full run."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from clearconv import nn, optim
from clearconv.optim import lr_scheduler


def _ours(name, **kwargs):
    p = nn.Parameter(np.zeros(3, dtype=np.float32))
    return getattr(optim, name)([p], **kwargs)


def _torch_opt(torch, name, **kwargs):
    return getattr(torch.optim, name)([torch.zeros(3, requires_grad=True)], **kwargs)


def _momentum(opt):
    return opt.betas[0] if hasattr(opt, "betas") else opt.momentum


def _torch_momentum(group):
    return group["betas"][0] if "betas" in group else group["momentum"]


def _sequences(torch, opt_name, opt_kwargs, sched_name, sched_kwargs, steps):
    """lr and momentum before each of ``steps`` optimizer steps and after, ours and torch's."""
    opt = _ours(opt_name, **opt_kwargs)
    sched = getattr(optim, sched_name)(opt, **sched_kwargs)
    topt = _torch_opt(torch, opt_name, **opt_kwargs)
    tsched = getattr(torch.optim.lr_scheduler, sched_name)(topt, **sched_kwargs)
    ours, theirs = [], []
    for _ in range(steps):
        ours.append((opt.lr, _momentum(opt), sched.get_last_lr()[0]))
        g = topt.param_groups[0]
        theirs.append((g["lr"], _torch_momentum(g), tsched.get_last_lr()[0]))
        topt.step()  # torch warns if its schedule steps before the optimizer
        sched.step()
        tsched.step()
    ours.append((opt.lr, _momentum(opt), sched.get_last_lr()[0]))
    g = topt.param_groups[0]
    theirs.append((g["lr"], _torch_momentum(g), tsched.get_last_lr()[0]))
    return ours, theirs


SCHEDULES = [
    ("SGD", {"lr": 0.1}, "StepLR", {"step_size": 3}, 12),
    ("Adam", {"lr": 0.01}, "StepLR", {"step_size": 2, "gamma": 0.5}, 9),
    ("SGD", {"lr": 0.1}, "ExponentialLR", {"gamma": 0.9}, 10),
    ("SGD", {"lr": 0.1}, "LinearLR", {}, 10),
    (
        "SGD",
        {"lr": 0.1},
        "LinearLR",
        {"start_factor": 0.25, "end_factor": 0.5, "total_iters": 4},
        8,
    ),
    ("SGD", {"lr": 0.1, "momentum": 0.9}, "OneCycleLR", {"max_lr": 1.0, "total_steps": 20}, 20),
    ("Adam", {}, "OneCycleLR", {"max_lr": 0.01, "total_steps": 17}, 17),
    ("AdamW", {}, "OneCycleLR", {"max_lr": 0.01, "total_steps": 15, "three_phase": True}, 15),
    (
        "SGD",
        {"lr": 0.1},
        "OneCycleLR",
        {
            "max_lr": 0.5,
            "total_steps": 12,
            "pct_start": 0.25,
            "anneal_strategy": "linear",
            "div_factor": 10.0,
            "final_div_factor": 100.0,
            "base_momentum": 0.8,
            "max_momentum": 0.9,
        },
        12,
    ),
    (
        "Adam",
        {"lr": 0.1},
        "OneCycleLR",
        {"max_lr": 0.3, "total_steps": 9, "cycle_momentum": False},
        9,
    ),
    (
        "SGD",
        {"lr": 0.1, "momentum": 0.9, "nesterov": True},
        "OneCycleLR",
        {"max_lr": 0.4, "total_steps": 30, "pct_start": 0.4, "three_phase": True},
        30,
    ),
]


@pytest.mark.parametrize(
    ("opt_name", "opt_kwargs", "sched_name", "sched_kwargs", "steps"), SCHEDULES
)
def test_sequence_equals_torch(opt_name, opt_kwargs, sched_name, sched_kwargs, steps):
    torch = pytest.importorskip("torch")
    ours, theirs = _sequences(torch, opt_name, opt_kwargs, sched_name, sched_kwargs, steps)
    # Same formulas evaluated in the same order: equal to the last bit.
    assert ours == theirs


@pytest.mark.parametrize(
    ("T_max", "eta_min", "steps"), [(10, 0.0, 11), (7, 0.001, 20), (1, 0.0, 3)]
)
def test_cosine_equals_torch(T_max, eta_min, steps):
    torch = pytest.importorskip("torch")
    kwargs = {"T_max": T_max, "eta_min": eta_min}
    ours, theirs = _sequences(torch, "SGD", {"lr": 0.1}, "CosineAnnealingLR", kwargs, steps)
    # Closed form here, a recursion in torch: equal to rounding.
    np.testing.assert_allclose(np.array(ours), np.array(theirs), rtol=1e-12, atol=1e-16)
    assert ours[T_max][0] == pytest.approx(eta_min, abs=1e-15)


def test_one_cycle_runs_out_of_steps_like_torch():
    torch = pytest.importorskip("torch")
    opt = _ours("SGD", lr=0.1, momentum=0.9)
    sched = optim.OneCycleLR(opt, max_lr=1.0, total_steps=4)
    topt = _torch_opt(torch, "SGD", lr=0.1, momentum=0.9)
    tsched = torch.optim.lr_scheduler.OneCycleLR(topt, max_lr=1.0, total_steps=4)
    for _ in range(4):
        sched.step()
        topt.step()
        tsched.step()
    assert opt.lr == topt.param_groups[0]["lr"]
    with pytest.raises(ValueError, match="tried to step 5 times, but total_steps is 4"):
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 5 times"):
        tsched.step()
    assert sched.last_epoch == 4  # the failed step changed nothing


def test_one_cycle_zero_length_warmup_starts_at_peak():
    # pct_start * total_steps == 1 gives a warm-up phase of length 0; torch
    # divides by zero there, we take that phase as already done.
    opt = _ours("SGD", lr=0.1, momentum=0.9)
    optim.OneCycleLR(opt, max_lr=1.0, total_steps=10, pct_start=0.1)
    assert opt.lr == 1.0 and opt.momentum == 0.85


def test_one_cycle_sets_initial_lr_and_momentum_at_construction():
    opt = _ours("Adam", lr=0.5, betas=(0.5, 0.99))
    sched = optim.OneCycleLR(opt, max_lr=0.25, total_steps=10)
    assert opt.lr == pytest.approx(0.01) and sched.get_last_lr() == [opt.lr]
    assert opt.betas == (0.95, 0.99)
    assert sched.initial_lr == 0.25 / 25 and sched.min_lr == sched.initial_lr / 1e4


@pytest.mark.parametrize(
    ("sched_name", "kwargs"),
    [
        ("StepLR", {"step_size": 2, "gamma": 0.5}),
        ("ExponentialLR", {"gamma": 0.8}),
        ("LinearLR", {"start_factor": 0.1, "total_iters": 6}),
        ("CosineAnnealingLR", {"T_max": 8, "eta_min": 1e-4}),
        ("OneCycleLR", {"max_lr": 0.2, "total_steps": 12}),
        ("OneCycleLR", {"max_lr": 0.2, "total_steps": 12, "three_phase": True}),
    ],
)
def test_state_dict_round_trip_mid_run(sched_name, kwargs):
    cls = getattr(optim, sched_name)
    opt = _ours("SGD", lr=0.1, momentum=0.9)
    sched = cls(opt, **kwargs)
    for _ in range(5):
        sched.step()
    # Resume as a checkpoint would: new optimizer and schedule, then load both
    # (schedule first, as its constructor sets the lr), through JSON.
    osd = opt.state_dict()
    ssd = json.loads(json.dumps(sched.state_dict()))
    opt2 = _ours("SGD", lr=0.7, momentum=0.5)
    sched2 = cls(opt2, **kwargs)
    sched2.load_state_dict(ssd)
    opt2.load_state_dict(osd)
    assert sched2.last_epoch == 5
    for _ in range(6):
        sched.step()
        sched2.step()
        assert (opt2.lr, opt2.momentum) == (opt.lr, opt.momentum)


def test_step_lr_chains_with_manual_changes_like_torch():
    # The recursive form multiplies the current lr, so a manual change persists.
    opt = _ours("SGD", lr=1.0)
    sched = optim.StepLR(opt, step_size=2, gamma=0.5)
    sched.step()
    opt.lr = 0.3
    sched.step()
    assert opt.lr == 0.15


def test_exports():
    assert lr_scheduler.StepLR is optim.StepLR
    assert issubclass(optim.OneCycleLR, optim.LRScheduler)
    assert repr(optim.StepLR(_ours("SGD", lr=0.1), 3)) == "StepLR(last_epoch=0, lr=0.1)"


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (lambda o: optim.StepLR("sgd", 3), TypeError, "StepLR: optimizer must be a clearconv"),
        (lambda o: optim.StepLR(o, 0), ValueError, "StepLR: step_size must be >= 1, got 0"),
        (lambda o: optim.StepLR(o, 2.0), TypeError, "step_size must be an int"),
        (lambda o: optim.StepLR(o, 2, gamma=-1), ValueError, "gamma must be >= 0"),
        (lambda o: optim.ExponentialLR(o, gamma="x"), TypeError, "gamma must be a number"),
        (lambda o: optim.LinearLR(o, start_factor=0), ValueError, "start_factor must be > 0"),
        (lambda o: optim.LinearLR(o, end_factor=1.5), ValueError, "end_factor must be <= 1"),
        (lambda o: optim.CosineAnnealingLR(o, T_max=0), ValueError, "T_max must be >= 1"),
        (lambda o: optim.CosineAnnealingLR(o, 5, eta_min=-1), ValueError, "eta_min must be >= 0"),
        (lambda o: optim.OneCycleLR(None, 1.0, 10), TypeError, "OneCycleLR: optimizer must be"),
        (lambda o: optim.OneCycleLR(o, 1.0, 0), ValueError, "total_steps must be >= 1"),
        (
            lambda o: optim.OneCycleLR(o, 1.0, 10, pct_start=1.5),
            ValueError,
            "pct_start must be <= 1",
        ),
        (
            lambda o: optim.OneCycleLR(o, 1.0, 10, anneal_strategy="exp"),
            ValueError,
            "anneal_strategy must be 'cos' or 'linear', got 'exp'",
        ),
        (
            lambda o: optim.OneCycleLR(o, 1.0, 10, div_factor=0),
            ValueError,
            "div_factor must be > 0",
        ),
        (lambda o: optim.OneCycleLR(o, -1.0, 10), ValueError, "max_lr must be >= 0"),
        (
            lambda o: optim.OneCycleLR(o, 1.0, 10, three_phase=1),
            TypeError,
            "three_phase must be True",
        ),
    ],
)
def test_errors(make, exc, match):
    with pytest.raises(exc, match=match):
        make(_ours("SGD", lr=0.1))


def test_one_cycle_needs_momentum():
    class Plain(optim.Optimizer):
        defaults = {"lr": 0.1}  # noqa: RUF012

        def _check_hyperparameters(self, h):
            return {"lr": h["lr"]}

    opt = Plain([nn.Parameter(np.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="cycle_momentum=True needs an optimizer with momentum"):
        optim.OneCycleLR(opt, 1.0, 10)
    optim.OneCycleLR(opt, 1.0, 10, cycle_momentum=False)
    assert math.isclose(opt.lr, 0.04)


def test_load_state_dict_errors():
    sched = optim.StepLR(_ours("SGD", lr=0.1), 3)
    with pytest.raises(TypeError, match="expected a dict, got list"):
        sched.load_state_dict([])
    with pytest.raises(KeyError, match="expected keys"):
        sched.load_state_dict({"last_epoch": 2})
    with pytest.raises(ValueError, match="last_epoch must be >= 0"):
        sched.load_state_dict({**sched.state_dict(), "last_epoch": -3})
