"""fit's parts: optimizer and schedule objects, the hooks a part gets, the lr each
epoch used, the progress bar, and file modes that follow the umask."""

from __future__ import annotations

import io
import os
import re
import sys
import time

import numpy as np
import pytest

import clearconv
from clearconv import Model, data, nn, optim
from clearconv.io import load_arrays, save_arrays
from clearconv.train import Callback, ProgressBar, TrainState, fit, make_optimizer, make_schedule

CFG = {"type": "Sequential", "layers": [
    {"type": "Conv2d", "out_channels": 4, "kernel_size": 3}, {"type": "ReLU"},
    {"type": "Flatten"}, {"type": "Dropout", "p": 0.2}, {"type": "Linear", "out_features": 2},
]}  # fmt: skip
XO = data.make_xo(96, np.random.default_rng(5))
BASE = dict(epochs=3, batch_size=16, val_fraction=0.25, seed=3, progress=False)


def tiny(seed: int = 0) -> Model:
    net = nn.from_config(CFG, (1, 9, 9), rng=np.random.default_rng(seed))
    return Model(net, (1, 9, 9), ["X", "O"])


def weights(m: Model) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in m.state_dict().items()}


def same(a: Model, b: Model) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(np.array_equal(wa[k], wb[k]) for k in wa)


# -- optimizer and schedule objects -------------------------------------------------
@pytest.mark.parametrize("opt, sched", [("adamw", "onecycle"), ("sgd", "step")])
def test_objects_train_exactly_as_the_names(opt, sched):
    by_name = tiny()
    h1 = fit(by_name, XO, optimizer=opt, lr=0.01, weight_decay=1e-3, schedule=sched, **BASE)
    by_object = tiny()
    o = make_optimizer(opt, by_object.parameters(), lr=0.01, weight_decay=1e-3)
    h2 = fit(by_object, XO, optimizer=o, scheduler=make_schedule(sched, 3), **BASE)
    assert same(by_name, by_object)
    assert h1.records == [{**r, "seconds": a["seconds"]} for r, a in zip(h2.records, h1.records)]


def test_resume_with_objects_is_bit_exact_and_checks_settings(tmp_path):
    ref = tiny()
    fit(ref, XO, optimizer=optim.Adam(ref.parameters(), lr=0.01), **BASE)
    ck = tmp_path / "ck.npz"

    class Stop(Exception):
        pass

    def crash(record):
        if record["epoch"] == 2:
            raise Stop

    m = tiny()
    with pytest.raises(Stop):
        fit(m, XO, optimizer=optim.Adam(m.parameters(), lr=0.01), checkpoint=ck,
            on_epoch_end=crash, **BASE)  # fmt: skip
    m = tiny(seed=1)
    fit(m, XO, optimizer=optim.Adam(m.parameters(), lr=0.01), checkpoint=ck, resume=True, **BASE)
    assert same(ref, m)
    with pytest.raises(ValueError, match=r"different settings.*lr"):
        fit(m, XO, optimizer=optim.Adam(m.parameters(), lr=0.02), checkpoint=ck, resume=True,
            **BASE)  # fmt: skip


def test_object_arguments_are_checked():
    m = tiny()
    opt = optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="lr and weight_decay belong to the optimizer"):
        fit(m, XO, optimizer=opt, lr=0.1)
    with pytest.raises(ValueError, match="either scheduler or schedule"):
        fit(m, XO, optimizer=opt, scheduler=make_schedule("step", 1), schedule="step")
    other = optim.SGD(tiny().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="over fit's optimizer"):
        fit(m, XO, optimizer=opt, scheduler=optim.StepLR(other, 1))
    with pytest.raises(TypeError, match="scheduler must be an LRScheduler or a factory"):
        fit(m, XO, optimizer=opt, scheduler=3)


# -- the lr an epoch used (issue 24, item 6) -------------------------------------------
def test_lr_column_is_the_rate_used_during_the_epoch():
    # StepLR halves the rate at every step; per epoch: 0.1, 0.05, 0.025
    m = tiny()
    opt = optim.SGD(m.parameters(), lr=0.1)
    h = fit(m, XO, optimizer=opt, scheduler=optim.StepLR(opt, step_size=1, gamma=0.5), **BASE)
    assert h["lr"] == h["lr_min"] == h["lr_max"] == [0.1, 0.05, 0.025]
    # the same schedule stepped after every batch: 72 images in batches of 16 = 5 steps
    m = tiny()
    opt = optim.SGD(m.parameters(), lr=0.1)
    h = fit(m, XO, optimizer=opt, scheduler=lambda o, steps: optim.StepLR(o, 1, gamma=0.5),
            scheduler_interval="batch", **BASE)  # fmt: skip
    rates = [0.1 * 0.5**k for k in range(15)]
    for e in range(3):
        used = rates[5 * e : 5 * e + 5]
        assert h["lr"][e] == pytest.approx(used[0], rel=1e-12)
        assert h["lr_max"][e] == pytest.approx(max(used), rel=1e-12)
        assert h["lr_min"][e] == pytest.approx(min(used), rel=1e-12)
    assert opt.lr == pytest.approx(rates[-1] * 0.5)  # the rate after the last step: not shown


# -- hooks for a part (e.g. data-parallel training) ------------------------------------
class Recorder(Callback):
    def __init__(self):
        self.calls: list[str] = []

    def __getattribute__(self, name):
        if name.startswith("on_") or name == "close":
            object.__getattribute__(self, "calls").append(name)
        return object.__getattribute__(self, name)


def test_hooks_run_in_order():
    rec = Recorder()
    fit(tiny(), XO, epochs=1, batch_size=40, callbacks=[rec], progress=False)  # 96 -> 3 batches
    batch = ["on_batch_begin", "on_loss", "on_after_backward", "on_batch_end"]
    assert rec.calls == ["on_train_begin", "on_epoch_begin", *batch * 3, "on_epoch_end",
                         "on_train_end", "close"]  # fmt: skip


class FrozenGrads(Callback):
    """Zeroes every gradient after backward and trains on half of each batch."""

    def __init__(self):
        self.seen = 0

    def on_batch_begin(self, s: TrainState) -> None:
        s.idx = s.idx[::2]  # where a distributed part takes its shard

    def on_after_backward(self, s: TrainState) -> None:
        grads = [p.grad for p in s.optimizer.params]
        assert all(g is not None and np.any(g != 0) for g in grads)
        for p in s.optimizer.params:
            p.grad = np.zeros_like(p.grad)
        self.seen += 1


def test_a_part_sees_and_replaces_gradients_and_shards_batches():
    m = tiny()
    before = weights(m)
    part = FrozenGrads()
    # plain SGD: zero gradients leave the weights where they are
    fit(m, XO, epochs=2, batch_size=16, optimizer=optim.SGD(m.parameters(), lr=0.1),
        callbacks=[part], progress=False)  # fmt: skip
    assert part.seen == 2 * 6
    assert all(np.array_equal(v, weights(m)[k]) for k, v in before.items())


# -- the progress bar (issue 24, item 22) ------------------------------------------------
class Terminal(io.StringIO):
    """A stream that says it is a terminal; it has no file descriptor, so its width is
    what ``shutil.get_terminal_size`` reports."""

    def isatty(self) -> bool:
        return True


def frames(out: io.StringIO) -> list[str]:
    """Each redraw of the bar (tqdm starts every one with a carriage return)."""
    return [f for f in out.getvalue().split("\r") if f.strip()]


@pytest.mark.parametrize(("columns", "width"), [(0, 80), (120, 120)])
def test_progress_redraws_a_few_times_a_second_with_one_rate(monkeypatch, columns, width):
    pytest.importorskip("tqdm", reason="the bar needs the cli extra (tqdm)")
    monkeypatch.setattr("shutil.get_terminal_size", lambda *a: os.terminal_size((columns, 24)))
    out = Terminal()
    start = time.perf_counter()
    fit(tiny(), data.make_xo(2000, np.random.default_rng(0)), epochs=2, batch_size=4,
        progress=ProgressBar(out, mininterval=0.05))  # fmt: skip
    elapsed = time.perf_counter() - start
    drawn = frames(out)
    # 2 x 500 batches, but at most one redraw per interval (+ the first of each epoch)
    assert 2 <= len(drawn) <= elapsed / 0.05 + 2 * 2, (len(drawn), elapsed)
    for f in drawn:  # a width of 0 is taken as 80 columns
        assert len(f) == width and f.count("/s") == 1 and f.count("img/s") == 1, f
        assert re.match(r"epoch [12]/2: +\d+%\|.*\| *[\d.]+k?/2\.00k \[", f), f
    assert any(re.search(r"img/s, loss [\d.]+ +acc [\d.]+%]$", f) for f in drawn)
    assert out.getvalue().endswith("\r")  # the bar is cleared at the end
    assert "\n" not in out.getvalue()  # a terminal gets the bar, not the epoch lines


def test_progress_without_a_terminal_is_one_line_per_epoch():
    out = io.StringIO()
    fit(tiny(), data.make_xo(2000, np.random.default_rng(0)), epochs=3, batch_size=4,
        progress=ProgressBar(out))  # fmt: skip
    lines = out.getvalue().splitlines()
    assert [int(re.match(r"epoch (\d)/3 ", x)[1]) for x in lines] == [1, 2, 3], lines
    assert "\r" not in out.getvalue() and len(out.getvalue()) < 400


def test_progress_without_tqdm_is_one_line_per_epoch_on_a_terminal_too(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    out = Terminal()
    fit(tiny(), XO, epochs=2, batch_size=16, progress=ProgressBar(out))
    lines = out.getvalue().splitlines()
    assert [int(re.match(r"epoch (\d)/2 +loss ", x)[1]) for x in lines] == [1, 2], lines
    assert "\r" not in out.getvalue()


# -- file modes (issue 24, item 22) ------------------------------------------------------
@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        save_arrays(tmp_path / "a.npz", {"x": 1}, {"w": np.zeros(2)})
        m = tiny()
        clearconv.save(m, tmp_path / "m.npz")
        fit(m, XO, epochs=1, checkpoint=tmp_path / "c.npz", progress=False,
            history_path=tmp_path / "h.json")  # fmt: skip
    finally:
        os.umask(old)
    for name in ("a.npz", "m.npz", "c.npz", "h.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert load_arrays(tmp_path / "a.npz")[0] == {"x": 1}


def test_a_checkpoint_kept_for_ctrl_c_only_is_written_only_then(tmp_path):
    ck = tmp_path / "c.npz"
    m = tiny()

    def poison(record):
        m[-1].weight.data[0, 0] = np.nan

    with pytest.raises(clearconv.train.TrainingDiverged) as e:
        fit(m, XO, **BASE, checkpoint=ck, checkpoint_every_epoch=False, on_epoch_end=poison)
    assert "checkpoint" not in str(e.value) and not ck.exists()  # none was written to keep
