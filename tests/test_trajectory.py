"""End to end: 6 training steps of LeNet-5 with each optimizer follow PyTorch's.

Same initial weights (copied from torch), same batches: the losses and the
final weights must agree, which checks every layer's forward and backward,
the loss and the optimizer's update rule together.
"""

from __future__ import annotations

import numpy as np
import pytest

from clearconv import nn, optim

torch = pytest.importorskip("torch")

STEPS = 6
BATCH = 8

CASES = [
    ("SGD", {"lr": 0.05, "momentum": 0.9}, None),
    ("Adam", {"lr": 1e-3}, None),
    ("AdamW", {"lr": 1e-3, "weight_decay": 0.05}, None),
    # A schedule and every SGD option at once.
    (
        "SGD",
        {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
        {"max_lr": 0.1, "total_steps": STEPS},
    ),
]
# float32: both sides round differently (summation order in the GEMMs), and
# six steps let that grow a little (seen: 3e-8 on weights); float64 shows the
# formulas are the same (seen: 1e-15).
TOL = {
    np.float32: {"loss": 2e-6, "rtol": 1e-5, "atol": 5e-6},
    np.float64: {"loss": 1e-12, "rtol": 1e-10, "atol": 1e-12},
}
# Adam divides by sqrt(v): a gradient that is only float32 rounding noise (a
# sum that cancels) still moves its weight by up to lr per step, so in float32
# a few such weights (seen: 1 in 48000, off by 7e-6) may differ by up to
# 2 * lr * STEPS. All others must meet TOL.
ADAM_FLOAT32_OUTLIERS = 1e-3


def lenet(dtype, rng):
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2, rng=rng, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, rng=rng, dtype=dtype),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120, rng=rng, dtype=dtype),
        nn.ReLU(),
        nn.Linear(120, 84, rng=rng, dtype=dtype),
        nn.ReLU(),
        nn.Linear(84, 10, rng=rng, dtype=dtype),
    )


def torch_lenet(dtype):
    tnn = torch.nn
    model = tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5),
        tnn.ReLU(),
        tnn.MaxPool2d(2),
        tnn.Flatten(),
        tnn.Linear(400, 120),
        tnn.ReLU(),
        tnn.Linear(120, 84),
        tnn.ReLU(),
        tnn.Linear(84, 10),
    )
    return model.double() if dtype == np.float64 else model


def _weighted(model, tmodel):
    """Pairs (ours, torch's) of the layers that have weights, in order."""
    pairs = [(m, t) for m, t in zip(model, tmodel, strict=True) if hasattr(t, "weight")]
    assert len(pairs) == 5
    return pairs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("name", "kwargs", "one_cycle"), CASES)
def test_lenet_trajectory_matches_torch(name, kwargs, one_cycle, dtype):
    torch.manual_seed(0)
    tmodel = torch_lenet(dtype)
    model = lenet(dtype, np.random.default_rng(0))
    for layer, t in _weighted(model, tmodel):
        layer.weight.data = t.weight.detach().numpy()
        layer.bias.data = t.bias.detach().numpy()

    opt = getattr(optim, name)(model.parameters(), **kwargs)
    topt = getattr(torch.optim, name)(tmodel.parameters(), foreach=False, **kwargs)
    sched = tsched = None
    if one_cycle is not None:
        sched = optim.OneCycleLR(opt, **one_cycle)
        tsched = torch.optim.lr_scheduler.OneCycleLR(topt, **one_cycle)
    loss_fn, tloss_fn = nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()

    rng = np.random.default_rng(1)
    losses, tlosses = [], []
    for _ in range(STEPS):
        x = rng.standard_normal((BATCH, 1, 28, 28)).astype(dtype)
        y = rng.integers(0, 10, size=BATCH)

        opt.zero_grad()
        loss = loss_fn.forward(model(x, training=True), y)
        model.backward(loss_fn.backward())
        opt.step()
        losses.append(float(loss))

        topt.zero_grad()
        tloss = tloss_fn(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        tloss.backward()
        topt.step()
        tlosses.append(tloss.item())

        if sched is not None:
            sched.step()
            tsched.step()
            assert opt.lr == topt.param_groups[0]["lr"]

    tol = TOL[dtype]
    np.testing.assert_allclose(losses, tlosses, rtol=tol["loss"])
    assert losses[-1] != losses[0]  # the weights did move
    adaptive = name.startswith("Adam") and dtype == np.float32
    for layer, t in _weighted(model, tmodel):
        for ours, theirs in ((layer.weight, t.weight), (layer.bias, t.bias)):
            assert ours.dtype == dtype
            a, b = ours.data, theirs.detach().numpy()
            if not adaptive:
                np.testing.assert_allclose(a, b, rtol=tol["rtol"], atol=tol["atol"])
                continue
            off = ~np.isclose(a, b, rtol=tol["rtol"], atol=tol["atol"])
            assert off.mean() <= ADAM_FLOAT32_OUTLIERS, f"{off.sum()} of {off.size} differ"
            np.testing.assert_allclose(a, b, rtol=0, atol=2 * kwargs["lr"] * STEPS)
