"""Data-parallel training (clearconv.distributed): N ranks under mpiexec reach one
process's weights; sharding, resuming with another rank count, failures, the CLI.

The MPI tests start ``mpiexec -n 2`` on tests/distributed_worker.py and compare
with the same training run here, in one process. Without mpi4py or mpiexec they
skip, except where ``CLEARCONV_REQUIRE_MPI`` is set (CI), where they must run.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clearconv.cli import main
from clearconv.distributed import Distributed, _OneRank, launched_size, mpiexec_command
from clearconv.train import evaluate, fit
from tests import distributed_worker as worker

ROOT = Path(__file__).resolve().parents[1]


def _launcher() -> list[str] | None:
    if importlib.util.find_spec("mpi4py") is None:
        return None
    try:
        return mpiexec_command(2)
    except FileNotFoundError:
        return None


LAUNCHER = _launcher()
needs_mpi = pytest.mark.skipif(
    LAUNCHER is None and not os.environ.get("CLEARCONV_REQUIRE_MPI"),
    reason="needs mpi4py and mpiexec (pip install 'clearconv[mpi]')",
)


def _mpiexec(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    assert LAUNCHER is not None, "CLEARCONV_REQUIRE_MPI is set but mpi4py/mpiexec are missing"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [*LAUNCHER, sys.executable, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _same_weights(got: dict, want: dict, prefix: str = "") -> None:
    for key, value in want.items():
        np.testing.assert_allclose(got[prefix + key], value, rtol=2e-5, atol=2e-6, err_msg=key)


# -- sharding, no MPI needed ----------------------------------------------------------------
@pytest.mark.parametrize("batch", [2, 3, 7, 8, 15, 64, 65])
@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_shards_cover_the_batch_and_weights_add_to_one(batch, size):
    ranks = [Distributed(_OneRank(r, size)) for r in range(size)]
    parts = [d.shard(batch) for d in ranks]
    shares = [d.share for d in ranks]
    assert sum(shares) == pytest.approx(1.0)
    if batch < 2 * size:  # too small for two samples per rank: every rank takes it all
        assert all(p == slice(0, batch) for p in parts)
        assert all(d.replicated for d in ranks)
    else:
        covered = np.concatenate([np.arange(batch)[p] for p in parts])
        np.testing.assert_array_equal(covered, np.arange(batch))
        sizes = [p.stop - p.start for p in parts]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 2
        assert shares == [s / batch for s in sizes]


def test_shard_rejects_an_empty_batch():
    with pytest.raises(ValueError, match="at least one sample, got 0"):
        Distributed(_OneRank()).shard(0)


def test_one_rank_trains_exactly_as_no_distribution():
    # The hooks in fit add nothing for one rank: weights equal bit for bit.
    want = worker.train(worker.bn_net, worker.BN, (1, 8, 8))
    got = worker.train(worker.bn_net, worker.BN, (1, 8, 8), Distributed(_OneRank()))
    for key, value in want.state_dict().items():
        np.testing.assert_array_equal(got.state_dict()[key], value, err_msg=key)


def test_launched_size_reads_the_launchers_environment():
    assert launched_size({"OMPI_COMM_WORLD_SIZE": "8"}) == 8
    assert launched_size({"PMI_SIZE": "x"}) == 1


def test_workers_option_is_checked(capsys, tmp_path):
    out = str(tmp_path / "m.npz")
    assert main(["train", "--model", "xo", "--dataset", "xo", "--out", out, "--workers", "0"]) == 2
    assert "--workers must be >= 1, got 0" in capsys.readouterr().err


def test_find_lr_refuses_several_ranks(capsys):
    argv = ["train", "--model", "xo", "--dataset", "xo", "--find-lr", "--workers", "2"]
    assert main(argv) == 2
    assert "--find-lr runs in one process" in capsys.readouterr().err


def test_workers_refused_under_mpiexec(capsys, tmp_path, monkeypatch):
    pytest.importorskip("mpi4py")
    monkeypatch.setenv("PMI_SIZE", "2")
    out = str(tmp_path / "m.npz")
    assert main(["train", "--model", "xo", "--dataset", "xo", "--out", out, "--workers", "2"]) == 2
    assert "leave it out under mpiexec" in capsys.readouterr().err


def test_rank_command_line_round_trips():
    from clearconv.cli._workers import rank_argv, train_parser

    parser = train_parser()
    argv = ["--model", "xo", "--dataset", "xo", "--out", "m.npz", "--no-augment", "--epochs",
            "3", "--lr", "0.02", "--sync-batchnorm", "--seed", "5", "--workers", "4"]  # fmt: skip
    args = parser.parse_args(argv)
    again = parser.parse_args(rank_argv(parser, args))
    assert vars(again) == {**vars(args), "workers": None}


# -- under mpiexec -n 2 ----------------------------------------------------------------------
@needs_mpi
def test_two_ranks_reach_one_process_weights(tmp_path):
    """LeNet-5 for 20 steps of batch 32 (shards of 16), and a BatchNorm net with
    synchronised statistics, uneven shards (7 + 8) and a last batch of 2 computed
    whole by both ranks: the weights and running statistics of one process."""
    run = _mpiexec(str(ROOT / "tests" / "distributed_worker.py"), "train", str(tmp_path))
    assert run.returncode == 0, run.stderr
    got = dict(np.load(tmp_path / "train.npz"))
    assert int(got["size"]) == 2
    lenet = worker.train(worker.lenet, worker.LENET, (1, 28, 28))
    _same_weights(got, lenet.state_dict(), "lenet.")
    bn = worker.train(worker.bn_net, worker.BN, (1, 8, 8))
    _same_weights(got, bn.state_dict(), "bn.")
    # The weights moved: equal weights are not the untrained ones.
    assert not np.allclose(got["bn.0.weight"], worker.bn_net().state_dict()["0.weight"])
    # Sharded evaluation, reduced: one process's confusion matrix and loss.
    images, labels = worker.data(101, (1, 8, 8), seed=2)
    want = evaluate(bn, images, labels, batch_size=16)
    np.testing.assert_array_equal(got["eval.confusion"], want["confusion"])
    assert float(got["eval.loss"]) == pytest.approx(want["loss"], rel=1e-5)
    masks = got["dropout.masks"]
    assert masks.shape == (2, 4, 64) and not np.array_equal(masks[0], masks[1])


@needs_mpi
def test_two_ranks_resume_a_one_process_checkpoint(tmp_path):
    """The data order follows the global step: 2 ranks finish a run 1 process began."""

    class Stop(Exception):
        pass

    def stop(record):
        raise Stop

    ckpt = tmp_path / "run.npz"
    model = worker.lenet()
    setup = {k: v for k, v in worker.RESUME.items() if k != "n"}
    train = worker.data(worker.RESUME["n"], (1, 28, 28))
    with pytest.raises(Stop):
        fit(model, train, progress=False, checkpoint=ckpt, on_epoch_end=stop, **setup)
    run = _mpiexec(
        str(ROOT / "tests" / "distributed_worker.py"), "resume", str(tmp_path), str(ckpt)
    )
    assert run.returncode == 0, run.stderr
    got = dict(np.load(tmp_path / "resume.npz"))
    whole = worker.train(worker.lenet, worker.RESUME, (1, 28, 28))
    _same_weights(got, whole.state_dict())


@needs_mpi
def test_two_ranks_with_augmentation_reach_one_process_weights(tmp_path):
    """Each rank augments the whole batch, then cuts its shard: the draws, and so
    the weights, are those of one process."""
    run = _mpiexec(str(ROOT / "tests" / "distributed_worker.py"), "augment", str(tmp_path))
    assert run.returncode == 0, run.stderr
    got = dict(np.load(tmp_path / "augment.npz"))
    want = worker.train(worker.bn_net, worker.AUGMENT, (1, 8, 8)).state_dict()
    # float32 rounding on interpolated inputs, grown by 14 SGD steps at lr 0.05:
    # measured up to 8e-6 on weights and 4.3e-5 on a running mean of 0.14, where a
    # different augmentation moves them by 0.05-0.4
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=1e-4, err_msg=key)
    # the augmentation changed the run: not the weights training without it reaches
    plain = worker.train(worker.bn_net, worker.BN, (1, 8, 8)).state_dict()
    assert not np.allclose(got["0.weight"], plain["0.weight"])


@needs_mpi
def test_a_segmentation_folder_trains_on_two_ranks_as_in_one_process(tmp_path, capsys):
    """The command on a segmentation folder: two ranks (BatchNorm synchronised) end
    with one process's weights, and the sharded test IoU is one process's figure."""
    import clearconv
    from clearconv.data.shapes import write_shapes_folder

    root = tmp_path / "seg"
    write_shapes_folder(root, train=16, test=6, size=16, seed=3)
    # SGD: Adam's steps of about lr whatever the gradient's size would turn float32
    # rounding in near-zero gradients into differences of lr
    argv = ["train", "--model", "fcn", "--data", str(root), "--input-shape", "3,16,16",
            "--epochs", "2", "--batch-size", "8", "--sync-batchnorm", "--seed", "1",
            "--optimizer", "sgd", "--lr", "0.05"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "one.npz"), "--quiet"]) == 0
    capsys.readouterr()
    run = _mpiexec("-m", "clearconv", *argv, "--out", str(tmp_path / "two.npz"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("test mean IoU 0.") == 3  # rank 0 alone: two epochs and the end
    assert "2 ranks, per step: compute" in run.stdout
    one, two = clearconv.load(tmp_path / "one.npz"), clearconv.load(tmp_path / "two.npz")
    # measured after these 4 steps: weights up to 2.2e-4 apart and running statistics
    # 2.5e-4 (float32 rounding through 4 BatchNorm layers); with per-rank statistics
    # instead, 4.6e-3 and 5.3e-2
    for key, value in one.state_dict().items():
        np.testing.assert_allclose(two.state_dict()[key], value, rtol=0, atol=1e-3, err_msg=key)
    assert two.meta["test_mean_iou"] == pytest.approx(one.meta["test_mean_iou"], abs=1e-3)


@needs_mpi
def test_synchronised_batchnorm_on_textbook_layers(tmp_path):
    """Layers switched to the textbook still take the global batch's statistics
    (the sync hook comes first): one textbook process's weights and running stats."""
    run = _mpiexec(str(ROOT / "tests" / "distributed_worker.py"), "textbook", str(tmp_path))
    assert run.returncode == 0, run.stderr
    got = dict(np.load(tmp_path / "textbook.npz"))
    want = worker.train(worker.bn_textbook_net, worker.BN, (1, 8, 8)).state_dict()
    # The synchronised pass computes as the engine does, the one process as the
    # textbook: measured up to 1.4e-5 apart (per-rank statistics: 1e-2 and more)
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-4, atol=5e-5, err_msg=key)


def test_ctrl_c_after_the_reduction_stops_at_the_next_agreed_batch(tmp_path):
    """Under MPI a Ctrl-C only requests the stop: the ranks agree on it in the next
    gradient reduction, so one that saw it after this batch's reduction does not stop
    alone. One process stops after the batch it came in."""
    import signal

    from clearconv.io import load_arrays
    from clearconv.train import Callback

    class Press(Callback):  # Ctrl-C after batch 2's reduction and optimizer step
        def on_batch_end(self, s):
            if (s.epoch, s.batch) == (0, 1):
                signal.raise_signal(signal.SIGINT)

    for dist, resume_at in ((None, 2), (Distributed(_OneRank()), 3)):
        ckpt = tmp_path / f"at{resume_at}.npz"
        with pytest.raises(KeyboardInterrupt):
            worker.train(
                worker.bn_net, worker.BN, (1, 8, 8), dist, checkpoint=ckpt, callbacks=[Press()]
            )
        header, _ = load_arrays(ckpt)
        assert (header["epoch"], header["batch"]) == (0, resume_at)


@needs_mpi
def test_a_failing_rank_stops_the_job_and_is_named(tmp_path):
    run = _mpiexec(str(ROOT / "tests" / "distributed_worker.py"), "fail", str(tmp_path), timeout=60)
    assert run.returncode != 0
    assert "rank 1 of 2: ValueError: this rank failed on purpose" in run.stderr
    assert not (tmp_path / "fail.npz").exists()


@needs_mpi
def test_train_workers_matches_one_process(tmp_path):
    """``clearconv train --workers 2``: one model file and history from rank 0,
    the same per-epoch losses as one process, and the per-step split."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    common = [sys.executable, "-m", "clearconv", "train", "--model", "xo", "--dataset", "xo",
              "--epochs", "2", "--val-split", "0.1"]  # fmt: skip
    one = subprocess.run(
        [*common, "--out", str(tmp_path / "one.npz"), "--history", str(tmp_path / "one.csv")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [*common, "--out", str(tmp_path / "two.npz"), "--history", str(tmp_path / "two.csv"),
         "--workers", "2"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("test accuracy") == 1  # rank 0 alone reports
    assert "2 ranks, per step: compute" in two.stdout
    a = np.genfromtxt(tmp_path / "one.csv", delimiter=",", names=True)
    b = np.genfromtxt(tmp_path / "two.csv", delimiter=",", names=True)
    for column in ("train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        np.testing.assert_allclose(b[column], a[column], rtol=1e-4, atol=1e-6, err_msg=column)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "one.csv",
        "one.npz",
        "two.csv",
        "two.npz",
    ]


def _ranks_of(marker: str) -> dict[int, int]:
    """{rank: pid} of the rank processes whose command line holds ``marker`` (Linux /proc)."""
    found = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
            environ = (cmdline.parent / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours
            continue
        if marker.encode() in argv and b"mpiexec" not in argv[0]:
            rank = [e for e in environ if e.startswith(b"PMI_RANK=")]
            if rank:
                found[int(rank[0].split(b"=")[1])] = int(cmdline.parent.name)
    return found


@needs_mpi
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks in /proc")
def test_train_workers_names_a_rank_killed_by_a_signal(tmp_path):
    import signal
    import time

    out = str(tmp_path / "killed.npz")
    cmd = [sys.executable, "-m", "clearconv", "train", "--model", "xo", "--dataset", "xo",
           "--epochs", "500", "--out", out, "-q", "--workers", "2"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    job = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(ranks := _ranks_of(out)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(ranks) == 2, "the two ranks did not start"
        time.sleep(2)  # into training
        os.kill(ranks[1], signal.SIGKILL)
        stdout, stderr = job.communicate(timeout=60)
    finally:
        job.kill()
        for pid in _ranks_of(out).values():  # what is left of a failed test
            os.kill(pid, signal.SIGKILL)
    assert job.returncode == 2
    assert f"rank 1 of 2 (pid {ranks[1]}) ended with exit status 9" in stderr
    assert not Path(out).exists()  # no model file from a job that did not finish


@needs_mpi
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the ranks in /proc")
def test_ctrl_c_under_workers_stops_every_rank_after_a_checkpoint(tmp_path):
    """Ctrl-C (SIGINT to the launcher's process group, as a terminal sends it):
    every rank stops at the same batch, rank 0 writes a whole checkpoint, exit 130."""
    import signal
    import time

    from clearconv.io import load_arrays

    out, ckpt = str(tmp_path / "m.npz"), tmp_path / "run.npz"
    cmd = [sys.executable, "-m", "clearconv", "train", "--model", "xo", "--dataset", "xo",
           "--epochs", "500", "--out", out, "--checkpoint", str(ckpt), "-q",
           "--workers", "2"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    job = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not ckpt.exists() and time.monotonic() < deadline:  # the first epoch is done
            time.sleep(0.2)
        os.killpg(job.pid, signal.SIGINT)
        stdout, stderr = job.communicate(timeout=90)
    finally:
        job.kill()
        for pid in _ranks_of(out).values():
            os.kill(pid, signal.SIGKILL)
    assert job.returncode == 130, stderr
    assert "Abort" not in stderr  # the ranks agreed; none was aborted
    header, _ = load_arrays(ckpt)
    assert 1 <= header["epoch"] < 500
    assert not Path(out).exists()
