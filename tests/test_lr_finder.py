"""find_lr leaves the model as it found it: weights, Dropout streams, gradients, even on errors."""

import numpy as np
import pytest

from clearconv import data, nn
from clearconv.lr_finder import find_lr
from clearconv.model import Model


def _model(rng):
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, rng=rng),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.3, rng=np.random.default_rng(7)),
        nn.Linear(4 * 7 * 7, 2, rng=rng),
    )
    return Model(net, (1, 9, 9), ["X", "O"])


def _dropout(model):
    return next(m for m in model.modules() if isinstance(m, nn.Dropout))


def test_the_sweep_restores_weights_dropout_stream_and_zeroes_gradients(rng):
    model = _model(rng)
    ds = data.make_xo(128, np.random.default_rng(1))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    stream = _dropout(model).rng.bit_generator.state
    for p in model.parameters():
        p.grad = np.ones_like(p.data)  # left over from some earlier backward
    r = find_lr(model, ds, batch_size=16, steps=30)
    assert len(r.lrs) >= 2
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
    assert _dropout(model).rng.bit_generator.state == stream
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())


def test_the_same_seed_draws_the_same_curve(rng):
    model = _model(rng)
    ds = data.make_xo(128, np.random.default_rng(1))
    a = find_lr(model, ds, batch_size=16, steps=20, seed=3)
    b = find_lr(model, ds, batch_size=16, steps=20, seed=3)
    np.testing.assert_array_equal(a.losses, b.losses)
    np.testing.assert_array_equal(a.lrs, b.lrs)


def test_an_error_mid_sweep_still_restores_the_model(rng, monkeypatch):
    model = _model(rng)
    ds = data.make_xo(64, np.random.default_rng(1))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    calls = []
    real_backward = model.backward

    def failing_backward(grad_out):
        calls.append(1)
        if len(calls) == 4:  # after three optimizer steps have moved the weights
            raise RuntimeError("boom")
        return real_backward(grad_out)

    monkeypatch.setattr(model, "backward", failing_backward)
    with pytest.raises(RuntimeError, match="boom"):
        find_lr(model, ds, batch_size=16, steps=20)
    assert len(calls) == 4
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_a_bad_optimizer_is_refused_before_the_model_is_touched(rng):
    model = _model(rng)
    for p in model.parameters():
        p.grad = np.ones_like(p.data)
    with pytest.raises(ValueError, match="'adam', 'adamw' or 'sgd', got 'rmsprop'"):
        find_lr(model, data.make_xo(32, np.random.default_rng(1)), optimizer="rmsprop")
    assert all(np.all(p.grad == 1.0) for p in model.parameters())
