"""``clearconv train``'s outputs: checked before training, kept when the end fails,
kept on Ctrl-C with the command that resumes, plain lines when not on a terminal."""

from __future__ import annotations

import errno
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import clearconv
from clearconv import train
from clearconv.cli import main
from clearconv.cli import train as train_cli
from clearconv.io import load_arrays

XO = ["train", "--model", "xo", "--dataset", "xo", "--limit", "96", "--seed", "4"]
SRC = str(Path(clearconv.__file__).parents[1])


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def weights(path) -> dict[str, np.ndarray]:
    return clearconv.load(path).state_dict()


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if training starts."""

    def fit(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(train, "fit", fit)


# -- outputs checked before training (issue 24, item 2) -------------------------------------
@pytest.mark.parametrize("flag", ["--out", "--checkpoint", "--history"])
def test_a_folder_or_a_missing_folder_is_refused_before_training(
    capsys, tmp_path, no_training, flag
):
    (tmp_path / "dir.json").mkdir()
    for bad in (tmp_path / "dir.json", tmp_path / "no" / "such.json"):
        files = {"--out": tmp_path / "m.npz", flag: bad}
        code, _, err = run(capsys, *XO, *[x for k, v in files.items() for x in (k, v)])
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and flag in lines[0], err
        assert ("is a folder" if bad.name == "dir.json" else "does not exist") in lines[0]


def test_an_unwritable_folder_is_refused_before_training(capsys, tmp_path, monkeypatch):
    # running as root ignores chmod: the refusal is simulated where the probe is made
    def denied(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(train_cli.tempfile, "mkstemp", denied)
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("training started"))
    code, _, err = run(capsys, *XO, "--out", tmp_path / "m.npz")
    assert code == 2 and err.count("\n") == 1
    assert "--out" in err and "Permission denied" in err


def test_a_write_that_fails_at_the_end_saves_elsewhere_and_says_where(
    capsys, tmp_path, monkeypatch
):
    real = clearconv.io.save
    out = tmp_path / "m.npz"

    def save(model, path):
        if Path(path) == out:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(model, path)

    monkeypatch.setattr(clearconv.io, "save", save)
    cwd = tmp_path / "here"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    code, stdout, err = run(capsys, *XO, "--epochs", "2", "-q", "--out", out)
    assert code == 2 and "test accuracy" in stdout
    line = err.strip()
    assert "\n" not in line and "No space left on device" in line, err
    saved = Path(line.split("saved to ")[1].split(" instead")[0])
    assert saved.parent == cwd and saved.name.startswith("m-") and saved.suffix == ".npz"
    assert clearconv.load(saved).meta["epochs"] == 2


# -- Ctrl-C (issue 24, item 3) -------------------------------------------------------------
def _resume(capsys, err: str) -> tuple[int, str, str]:
    """Run the command the interrupted run printed."""
    command = err.split("to resume:\n")[1].splitlines()[0]
    argv = shlex.split(command)
    assert argv[:2] == ["clearconv", "train"], command
    return run(capsys, *argv[1:])


def test_ctrl_c_after_an_epoch_keeps_its_weights_and_prints_the_command_that_resumes(
    capsys, tmp_path, monkeypatch
):
    args = [*XO, "--epochs", "4"]
    assert main([*args, "--out", str(tmp_path / "whole.npz"), "-q"]) == 0
    out = tmp_path / "m.npz"

    def press_ctrl_c(record):  # the moment an epoch is reported finished
        if record["epoch"] == 2:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(train_cli, "_epoch_line", press_ctrl_c)
    code, _, err = run(capsys, *args, "--out", out)
    assert code == 130 and "Traceback" not in err
    assert "the weights after epoch 2" in err and str(out) in err
    assert clearconv.load(out).meta["interrupted"] is True
    header, arrays = load_arrays(tmp_path / "m.ckpt.npz")  # the checkpoint made on Ctrl-C
    assert (header["epoch"], header["batch"]) == (2, 0)
    after_2 = {k[6:]: v for k, v in arrays.items() if k.startswith("model.")}
    assert same(weights(out), after_2)
    monkeypatch.undo()
    code, stdout, err2 = _resume(capsys, err)
    assert code == 0, err2
    assert "epoch   3" in stdout and "epoch   2" not in stdout
    assert same(weights(out), weights(tmp_path / "whole.npz"))


def test_ctrl_c_with_a_checkpoint_leaves_out_alone_and_prints_the_resume_command(
    capsys, tmp_path, monkeypatch
):
    def press_ctrl_c(record):
        if record["epoch"] == 1:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(train_cli, "_epoch_line", press_ctrl_c)
    ckpt, out = tmp_path / "c.npz", tmp_path / "m.npz"
    code, _, err = run(capsys, *XO, "--epochs", "3", "--checkpoint", ckpt, "--out", out)
    assert code == 130 and not out.exists() and ckpt.is_file()
    assert f"--checkpoint {ckpt} --resume" in err
    monkeypatch.undo()
    assert _resume(capsys, err)[0] == 0 and out.is_file()


ENV = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def test_sigint_from_outside_mid_run_then_the_printed_command_finishes_bit_exactly(tmp_path):
    # ~40 ms an epoch: the run is far from its end when the signal comes
    args = [*XO, "--epochs", "60", "--limit", "400"]
    cli = [sys.executable, "-m", "clearconv"]
    whole = subprocess.run([*cli, *args, "--out", "whole.npz", "-q"], cwd=tmp_path, env=ENV,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
    assert whole.returncode == 0, whole.stderr
    p = subprocess.Popen([*cli, *args, "--out", "m.npz"], cwd=tmp_path, env=ENV,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert p.stdout is not None
    for line in p.stdout:  # wait for the first finished epoch, then press Ctrl-C
        if line.startswith("epoch"):
            break
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "Traceback" not in err, err
    epochs = clearconv.load(tmp_path / "m.npz").meta["epochs"]
    assert 1 <= epochs < 60 and f"the weights after epoch {epochs}" in err
    command = err.split("to resume:\n")[1].splitlines()[0].strip()
    argv = shlex.split(command)
    resumed = subprocess.run([*cli, *argv[1:], "-q"], cwd=tmp_path, env=ENV,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert same(weights(tmp_path / "m.npz"), weights(tmp_path / "whole.npz"))


# -- not a terminal (issue 24, items 6 and 22) ---------------------------------------------
def test_output_to_a_pipe_is_one_line_per_epoch_with_the_rates_used(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "clearconv", *XO, "--epochs", "3", "--batch-size", "12",
         "--schedule", "step", "--lr", "0.01", "--out", "m.npz"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    epochs = [x for x in lines if x.startswith("epoch")]
    assert len(lines) == 5 and len(epochs) == 3, lines  # "training ...", 3 epochs, the result
    # 'step' over 3 epochs divides by 10 after each: the rate each epoch used
    assert [x.split("lr ")[1].split()[0] for x in epochs] == ["0.01", "0.001", "0.0001"]
    assert len(result.stdout) < 600


@pytest.mark.parametrize("task", ["classify", "segment"])
def test_ctrl_c_while_testing_keeps_the_trained_model(capsys, tmp_path, monkeypatch, task):
    """The training is done when the test pass starts: a Ctrl-C there saves the model
    (marked interrupted) before the command stops, for classifiers and segmentation alike."""
    from clearconv import segmentation
    from clearconv.data.shapes import write_shapes_folder

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    out = tmp_path / "m.npz"
    if task == "classify":
        monkeypatch.setattr(train, "evaluate", interrupted)
        argv = ["--model", "xo", "--dataset", "xo", "--limit", "100"]
    else:
        write_shapes_folder(tmp_path / "seg", train=8, test=4, size=16, seed=1)
        monkeypatch.setattr(segmentation, "evaluate", interrupted)
        argv = ["--model", "fcn", "--data", tmp_path / "seg", "--input-shape", "3,16,16"]
    code, _, err = run(capsys, "train", *argv, "--epochs", "1", "--out", out, "--quiet")
    assert code == 130 and f"interrupted while testing: wrote {out}" in err
    model = clearconv.load(out)
    assert model.meta["interrupted"] is True and model.meta["epochs"] == 1
