"""Interrupted training loses at most the epoch in progress (RELIABILITY.md, "training").

A child process trains the X/O net with a checkpoint; it is killed (SIGKILL) or
interrupted (SIGINT) at seeded random moments and restarted with resume until
it finishes; its final weights must equal an uninterrupted run's bit for bit.
``RELIABILITY_TRIALS=N`` runs more trials (the figures in RELIABILITY.md).
"""

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import clearconv.io
from clearconv import Model, train, zoo
from clearconv.cli import main as cli_main
from clearconv.data import make_xo
from clearconv.io import load_arrays

TRIALS = int(os.environ.get("RELIABILITY_TRIALS", "1"))
EPOCHS = 6
# With a third argument "pause", the child stops in the 5th batch of epoch 3
# (its model's preprocess, which fit calls once per batch, says so on stdout)
# until a SIGINT has come: the test signals on that line, not after a sleep.
CHILD = f"""
import os, signal, sys, time
import numpy as np
from clearconv import Model, zoo, train
from clearconv.data import make_xo
ckpt, out = sys.argv[1], sys.argv[2]
pause = sys.argv[3:] == ["pause"]
ds = make_xo(256, rng=np.random.default_rng(0))
net, shape = zoo.build("xo", rng=np.random.default_rng(1))
epochs_done, batches, got_sigint = [0], [0], []

class Reporting(Model):
    def preprocess(self, images):
        batches[0] += 1
        if pause and epochs_done[0] == 2 and batches[0] == 5:
            fit_handler = signal.getsignal(signal.SIGINT)  # fit's, installed by now

            def relay(signum, frame):
                got_sigint.append(signum)
                fit_handler(signum, frame)

            signal.signal(signal.SIGINT, relay)
            print("paused in epoch 3", flush=True)
            deadline = time.monotonic() + 60
            while not got_sigint and time.monotonic() < deadline:
                time.sleep(0.005)
        return super().preprocess(images)

def epoch_end(record):
    epochs_done[0], batches[0] = record["epoch"], 0
    print("epoch", record["epoch"], flush=True)

model = Reporting(net, shape, ds.class_names)
try:
    train.fit(model, (ds.images, ds.labels), epochs={EPOCHS}, batch_size=8, lr=0.01, seed=0,
              checkpoint=ckpt, resume=os.path.exists(ckpt), progress=False,
              on_epoch_end=epoch_end)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
np.savez(out, **model.state_dict())
"""
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def _start(d: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(d / "c.npz"), str(d / "out.npz"), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _wait_for_epoch(p: subprocess.Popen, k: int) -> list[str]:
    lines = []
    while len([x for x in lines if x.startswith("epoch")]) < k:
        line = p.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
    return lines


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    p = _start(d)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return dict(np.load(d / "out.npz"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def _checkpoint_epoch(d: Path) -> int:
    header, _ = load_arrays(d / "c.npz")
    return int(header["epoch"])


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_at_random_moments_then_resume_is_bit_exact(reference, tmp_path, trial):
    rng = np.random.default_rng(trial)
    kills = 0
    for _ in range(12):
        p = _start(tmp_path)
        k = int(rng.integers(1, 3))  # let it finish 1-2 more epochs, then a random delay
        seen = _wait_for_epoch(p, k)
        if len(seen) >= k and p.poll() is None:
            time.sleep(float(rng.uniform(0, 0.12)))  # an epoch takes ~0.1 s
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=30)
            kills += 1
            # at most the epoch in progress is lost: every announced epoch is saved
            assert _checkpoint_epoch(tmp_path) >= int(seen[-1].split()[1])
            continue
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        break
    assert kills >= 1
    assert _same(dict(np.load(tmp_path / "out.npz")), reference)
    left = [f.name for f in tmp_path.iterdir() if f.name not in ("c.npz", "out.npz")]
    assert all(n.endswith(".tmp") for n in left), left  # only a killed write's temp file


def test_sigint_saves_mid_epoch_and_exits_cleanly_then_resume_is_bit_exact(reference, tmp_path):
    p = _start(tmp_path, "pause")
    lines = _wait_for_epoch(p, 2)
    lines.append(p.stdout.readline().strip())
    assert lines[-1] == "paused in epoch 3", lines  # the child waits in epoch 3's 5th batch
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 130 and "interrupted" in out and "Traceback" not in err, err
    header, _ = load_arrays(tmp_path / "c.npz")
    assert (header["epoch"], header["batch"]) == (2, 5)  # saved after that batch, mid-epoch
    p = _start(tmp_path)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert _same(dict(np.load(tmp_path / "out.npz")), reference)


# -- disks that refuse ---------------------------------------------------------------
def _xo_model():
    net, shape = zoo.build("xo", rng=np.random.default_rng(1))
    return Model(net, shape, ["O", "X"])


def _xo_data():
    ds = make_xo(32, rng=np.random.default_rng(0))
    return ds.images, ds.labels


def test_unwritable_checkpoint_folder_fails_before_training(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    calls = []
    monkeypatch.setattr(Model, "backward", lambda *a, **k: calls.append(1))
    with pytest.raises(OSError, match=r"cannot write the checkpoint .*not writable"):
        train.fit(_xo_model(), _xo_data(), epochs=2, batch_size=8, lr=0.01,
                  checkpoint=blocker / "c.npz", progress=False)  # fmt: skip
    assert calls == []  # no step was taken


def test_permission_denied_is_reported_before_training(tmp_path, monkeypatch):
    # running as root ignores chmod, so the refusal is simulated where files are created
    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("clearconv.train.checkpoint.tempfile.mkstemp", denied)
    with pytest.raises(OSError, match="Permission denied"):
        train.fit(_xo_model(), _xo_data(), epochs=1, batch_size=8, lr=0.01,
                  checkpoint=tmp_path / "c.npz", progress=False)  # fmt: skip


def _disk_full_after(monkeypatch, n_ok: int):
    """Make the writes after the first ``n_ok`` fail half-way with ENOSPC."""
    real = clearconv.io._write_npz
    calls = {"n": 0}

    def write_npz(f, arrays):
        calls["n"] += 1
        if calls["n"] > n_ok:
            f.write(b"partial bytes")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, arrays)

    monkeypatch.setattr(clearconv.io, "_write_npz", write_npz)


def test_disk_full_keeps_the_last_good_checkpoint_and_says_so(tmp_path, monkeypatch):
    ckpt = tmp_path / "c.npz"
    _disk_full_after(monkeypatch, 1)  # epoch 1 saved, epoch 2's write fails
    with pytest.raises(OSError, match=r"cannot write .*c\.npz: No space left .*is kept") as e:
        train.fit(_xo_model(), _xo_data(), epochs=3, batch_size=8, lr=0.01,
                  checkpoint=ckpt, progress=False)  # fmt: skip
    assert e.value.errno == errno.ENOSPC
    assert sorted(f.name for f in tmp_path.iterdir()) == ["c.npz"]  # no temp file left
    assert _checkpoint_epoch(tmp_path) == 1
    monkeypatch.undo()
    history = train.fit(_xo_model(), _xo_data(), epochs=3, batch_size=8, lr=0.01,
                        checkpoint=ckpt, resume=True, progress=False)  # fmt: skip
    assert len(history) == 3


def test_cli_reports_disk_full_and_unwritable_out_in_one_line(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    args = ["train", "--model", "xo", "--dataset", "xo", "--epochs", "2", "-q", "--limit", "64"]
    assert cli_main([*args, "--out", str(blocker / "m.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err, err
    _disk_full_after(monkeypatch, 1)
    code = cli_main(
        [*args, "--out", str(tmp_path / "m.npz"), "--checkpoint", str(tmp_path / "c.npz")]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "No space left on device" in err and "Traceback" not in err


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "c.npz"
    model = _xo_model()
    images, labels = _xo_data()

    def poison(record):
        if record["epoch"] == 1:
            model.net[0].weight.data[...] = np.nan

    with pytest.raises(train.TrainingDiverged, match=r"loss became nan .*checkpoint .* is kept"):
        train.fit(model, (images, labels), epochs=3, batch_size=8, lr=0.01, checkpoint=ckpt,
                  progress=False, on_epoch_end=poison)  # fmt: skip
    header, arrays = load_arrays(ckpt)
    assert header["epoch"] == 1
    assert all(np.all(np.isfinite(a)) for a in arrays.values() if a.dtype.kind == "f")
