"""Training: learning X/O, reproducibility, bit-exact resume, divergence, history, evaluation."""

from __future__ import annotations

import csv
import json
import signal
from dataclasses import dataclass

import numpy as np
import pytest

from clearconv import Model, data, nn, zoo
from clearconv.io import load_arrays
from clearconv.train import History, TrainingDiverged, evaluate, fit

CFG = {"type": "Sequential", "layers": [
    {"type": "Conv2d", "out_channels": 4, "kernel_size": 3, "bias": False},
    {"type": "BatchNorm2d"}, {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2,
                                                 "ceil_mode": True},
    {"type": "Flatten"}, {"type": "Dropout", "p": 0.3}, {"type": "Linear", "out_features": 2},
]}  # fmt: skip
XO = data.make_xo(96, np.random.default_rng(5))
SETTINGS = dict(epochs=3, batch_size=16, optimizer="adamw", lr=0.01, schedule="onecycle",
                weight_decay=1e-3, label_smoothing=0.1, val_fraction=0.25, seed=7,
                augment={"shift": 1, "rotate": 5.0, "scale": 0.0}, progress=False)  # fmt: skip


def tiny(seed: int = 0) -> Model:
    """BatchNorm, Dropout (its own generator) and a Linear layer: every kind of state."""
    net = nn.from_config(CFG, (1, 9, 9), rng=np.random.default_rng(seed))
    return Model(net, (1, 9, 9), ["X", "O"])


def weights(m: Model) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in m.state_dict().items()}


def test_xo_learns_to_100_percent_on_fresh_data():
    net, shape = zoo.build("xo", rng=np.random.default_rng(0))
    m = Model(net, shape, data.XO_CLASSES)
    h = fit(m, data.make_xo(2000, np.random.default_rng(1)), **zoo.recipe("xo"),
            progress=False)  # fmt: skip
    assert h.last["train_acc"] > 0.99
    assert evaluate(m, data.make_xo(500, np.random.default_rng(2)))["accuracy"] == 1.0


def test_same_seed_same_losses_other_seed_differs():
    runs = [fit(tiny(), XO, **{**SETTINGS, "seed": s}) for s in (7, 7, 8)]
    assert runs[0]["train_loss"] == runs[1]["train_loss"]
    assert runs[0]["val_loss"] == runs[1]["val_loss"]
    assert runs[0]["train_loss"] != runs[2]["train_loss"]


class Stop(Exception):
    pass


def test_resume_after_an_epoch_equals_uninterrupted(tmp_path):
    ref = tiny()
    h_ref = fit(ref, XO, **SETTINGS)
    ck = tmp_path / "ck.npz"

    def crash(record):
        if record["epoch"] == 1:
            raise Stop

    with pytest.raises(Stop):
        fit(tiny(), XO, **SETTINGS, checkpoint=ck, on_epoch_end=crash)
    m = tiny(seed=123)  # other initial weights: everything must come from the checkpoint
    h = fit(m, XO, **SETTINGS, checkpoint=ck, resume=True)
    for k, v in weights(ref).items():
        assert np.array_equal(weights(m)[k], v), k
    assert h["train_loss"] == h_ref["train_loss"] and h["val_acc"] == h_ref["val_acc"]


@dataclass(frozen=True)
class SigintAugment(data.Augment):
    """An augmentation that presses Ctrl-C in the middle of the 7th batch."""

    calls: int = 0

    def __call__(self, x, rng):
        object.__setattr__(self, "calls", self.calls + 1)
        if self.calls == 7:
            signal.raise_signal(signal.SIGINT)
        return super().__call__(x, rng)


def test_ctrl_c_saves_mid_epoch_and_resume_is_bit_exact(tmp_path):
    aug = dict(shift=1, rotate=5.0, scale=0.0)
    ref = tiny()
    fit(ref, XO, **{**SETTINGS, "augment": data.Augment(**aug)})
    ck = tmp_path / "ck.npz"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny(), XO, **{**SETTINGS, "augment": SigintAugment(**aug)}, checkpoint=ck)
    header, arrays = load_arrays(ck)
    assert (header["epoch"], header["batch"]) == (1, 2)  # 7th batch = epoch 2, batch 2 of 5
    assert "order" in arrays
    m = tiny(seed=9)
    fit(m, XO, **{**SETTINGS, "augment": data.Augment(**aug)}, checkpoint=ck, resume=True)
    for k, v in weights(ref).items():
        assert np.array_equal(weights(m)[k], v), k
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    ck = tmp_path / "ck.npz"
    m = tiny()

    def poison(record):
        m[-1].weight.data[0, 0] = np.nan

    with pytest.raises(TrainingDiverged, match=r"epoch 2, batch 1/\d+.*ck\.npz is kept"):
        fit(m, XO, **SETTINGS, checkpoint=ck, on_epoch_end=poison)
    header, arrays = load_arrays(ck)
    assert header["epoch"] == 1 and len(header["history"]["records"]) == 1
    assert all(np.isfinite(v).all() for v in arrays.values())


def test_history_csv_and_json(tmp_path):
    h = fit(tiny(), XO, **{**SETTINGS, "epochs": 2}, history_path=tmp_path / "h.csv")
    with open(tmp_path / "h.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["train_loss"]) == pytest.approx(h["train_loss"][1])
    h.save(tmp_path / "h.json")
    saved = json.loads((tmp_path / "h.json").read_text())
    assert saved["records"] == h.records
    with pytest.raises(ValueError, match=r"\.csv or \.json"):
        h.save(tmp_path / "h.txt")
    assert isinstance(h, History) and len(h) == 2


def test_early_stopping_restores_the_best_epoch():
    seen = {}
    m = tiny()

    def keep(record):
        seen[record["epoch"]] = weights(m)

    h = fit(m, XO, **{**SETTINGS, "epochs": 5, "schedule": "none"},
            early_stopping={"patience": 2, "min_delta": 1e9}, on_epoch_end=keep)  # fmt: skip
    assert h.stopped_early and h.best_epoch == 1 and len(h) == 3
    for k, v in seen[1].items():
        assert np.array_equal(weights(m)[k], v), k


@pytest.mark.parametrize("opt, sched", [("sgd", "step"), ("adam", "cosine"), ("adamw", "none")])
def test_optimizers_and_schedules_reduce_the_loss(opt, sched):
    h = fit(tiny(), XO, **{**SETTINGS, "epochs": 4, "optimizer": opt, "schedule": sched,
                           "augment": None})  # fmt: skip
    assert h["train_loss"][-1] < h["train_loss"][0]


def test_evaluate_confusion_precision_recall():
    lin = nn.Linear(2, 3, rng=np.random.default_rng(0))
    lin.weight.data = np.eye(3, 2, dtype=np.float32)
    lin.bias.data = np.array([0, 0, 0.5], np.float32)
    m = Model(nn.Sequential(nn.Flatten(), lin), (1, 1, 2), ["a", "b", "c"])
    # predictions: [1, 0] -> a, [0, 1] -> b, [0, 0] -> c
    x = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [0, 0]], np.float32).reshape(5, 1, 1, 2)
    y = np.array([0, 1, 1, 2, 0])
    r = evaluate(m, x, y, batch_size=2)
    assert r["confusion"].tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 1]]
    assert r["accuracy"] == pytest.approx(3 / 5) and r["n"] == 5
    np.testing.assert_allclose(r["precision"], [1 / 2, 1, 1 / 2])
    np.testing.assert_allclose(r["recall"], [1 / 2, 1 / 2, 1])
    assert np.isfinite(r["loss"])


def test_bad_arguments(tmp_path):
    m = tiny()
    with pytest.raises(ValueError, match="optimizer must be one of"):
        fit(m, XO, optimizer="rmsprop")
    with pytest.raises(ValueError, match="schedule must be one of"):
        fit(m, XO, schedule="warm")
    with pytest.raises(ValueError, match="needs a checkpoint"):
        fit(m, XO, resume=True)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        fit(m, XO, resume=True, checkpoint=tmp_path / "none.npz")
    with pytest.raises(ValueError, match="early_stopping needs validation"):
        fit(m, XO, early_stopping=2)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 1\]"):
        fit(m, (XO.images, XO.labels + 1))
    with pytest.raises(TypeError, match=r"clearconv\.Model"):
        fit(m.net, XO)
    ck = tmp_path / "ck.npz"
    fit(m, XO, epochs=1, checkpoint=ck, progress=False)
    with pytest.raises(ValueError, match=r"different settings.*lr"):
        fit(tiny(), XO, epochs=1, lr=0.5, checkpoint=ck, resume=True)
