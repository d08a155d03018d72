"""Data-parallel training over MPI: N processes (ranks), one global batch.

Every rank holds the whole model and walks the same shuffled order of the
data (the order follows the seed and the global step, not the rank count).
Each global batch of ``B`` samples is cut into ``N`` contiguous shards; each
rank runs forward and backward on its shard, then one ``Allreduce`` adds up
the weighted gradients of every rank, so that every rank steps its optimizer
with the same full-batch gradient::

    g = sum_r (n_r / B) * g_r      # g_r: the gradient of the mean loss over shard r

which is the gradient of the mean loss over the whole batch (``n_r`` samples
on rank ``r``; unequal shards are weighted, so a short last batch is exact).
A batch too small to give every rank two samples (BatchNorm needs two) is
computed whole by every rank, each with weight ``1 / N``.

BatchNorm keeps per-rank batch statistics by default (as PyTorch's DDP);
``sync_batchnorm=True`` reduces the per-channel sums over the ranks in the
forward and backward pass, so the statistics are the global batch's and N
ranks reach the weights of one process (to float32 rounding).

Run under ``mpiexec -n N`` (``clearconv train ... --workers N`` starts it on
this machine). mpi4py and an MPI library come with ``pip install
"clearconv[mpi]"``; nothing here is imported by the single-process path.

Example
-------
A training script, started with ``mpiexec -n 4 python train.py``::

    from clearconv.distributed import Distributed
    from clearconv.train import fit

    dist = Distributed(sync_batchnorm=True)  # mpi4py's COMM_WORLD
    history = dist.run(fit, model, train_data, epochs=2, batch_size=128,
                       checkpoint="run.npz", distributed=dist)  # rank 0 writes it
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np

from clearconv._extras import install_hint
from clearconv.engine.norm import channel_dot, reduce_axes
from clearconv.train.callbacks import Callback, TrainState

__all__ = ["PID_FOLDER", "Distributed", "DistributedPart", "launched_size", "mpiexec_command"]

#: Environment variables by which MPI launchers tell a process the number of ranks
#: (MPICH/Hydra, Open MPI, PMIx, MVAPICH, Slurm's srun).
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MV2_COMM_WORLD_SIZE")
#: Set by ``clearconv train --workers``: a folder where each rank writes its process
#: id (file ``rank-R``), so that a rank killed by a signal can be named by its number.
PID_FOLDER = "CLEARCONV_RANK_PIDS"
#: After Ctrl-C, how long a rank waits for the others (rank 0 writing its checkpoint)
#: before it aborts the job.
INTERRUPT_GRACE_S = 60.0


def launched_size(environ: dict[str, str] | None = None) -> int:
    """The number of ranks an MPI launcher started this process among, 1 without one.

    Read from the launcher's environment, so that a plain ``python`` run never
    imports mpi4py (importing it starts MPI).

    >>> launched_size({"PMI_SIZE": "4"}), launched_size({})
    (4, 1)
    """
    env = os.environ if environ is None else environ
    for name in SIZE_VARIABLES:
        value = env.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def mpiexec_command(n: int) -> list[str]:
    """``[mpiexec, -n, N]`` with the launcher beside this Python (the ``mpich``
    wheel puts it there), else the one on ``PATH``.

    Raises
    ------
    FileNotFoundError
        When there is no ``mpiexec``.
    """
    import shutil

    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    exe = beside if os.access(beside, os.X_OK) else shutil.which("mpiexec")
    if exe is None:
        raise FileNotFoundError(
            f"no MPI launcher (mpiexec) found: install one with {install_hint('mpi')}"
        )
    return [exe, "-n", str(n)]


class Distributed:
    """Data-parallel training over an MPI communicator.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm, optional
        The ranks that train together; ``MPI.COMM_WORLD`` by default.
    sync_batchnorm : bool, default False
        Reduce BatchNorm's batch statistics over the ranks (the statistics of
        the global batch); False keeps each rank's own, as PyTorch's DDP.

    Attributes
    ----------
    rank, size : int
        This process's number in ``0 .. size-1`` and the number of ranks.
    is_root : bool
        Rank 0: the one that prints, and writes checkpoints, history and models.
    share : float
        The weight of this rank's gradient in the current step (``n_r / B``,
        or ``1 / N`` when every rank computes the whole batch), set by :meth:`shard`.
    replicated : bool
        Whether every rank computes the whole current batch.
    seconds : dict of str to float
        Time spent so far in ``compute`` (everything between two gradient
        reductions: loading, forward, backward, the optimizer step),
        ``allreduce`` (packing and reducing the gradients, waiting for the
        other ranks included) and ``bn_sync`` (synchronised BatchNorm's forward
        and backward passes with their reductions, inside ``compute``).

    Raises
    ------
    ImportError
        Without mpi4py, saying how to install it.
    """

    def __init__(self, comm: Any = None, *, sync_batchnorm: bool = False) -> None:
        if comm is None:
            try:
                from mpi4py import MPI
            except ImportError as exc:
                raise ImportError(
                    f"Distributed needs mpi4py and an MPI library: {install_hint('mpi')}"
                ) from exc
            comm = MPI.COMM_WORLD
        if not isinstance(sync_batchnorm, bool):
            raise TypeError(f"Distributed: sync_batchnorm must be a bool, got {sync_batchnorm!r}")
        self.comm = comm
        self.rank = int(comm.Get_rank())
        self.size = int(comm.Get_size())
        self.is_root = self.rank == 0
        folder = os.environ.get(PID_FOLDER)
        if folder and os.path.isdir(folder):
            with open(os.path.join(folder, f"rank-{self.rank}"), "w") as f:
                f.write(str(os.getpid()))
        self.sync_batchnorm = sync_batchnorm
        self.share = 1.0
        self.replicated = False
        self._batch = 0  # samples in the current global batch
        self._buffer: np.ndarray | None = None  # the flat gradient buffer, reused
        self._step_start = time.perf_counter()
        self.step_compute: list[float] = []  # per step, for the idle time (timings)
        self.seconds = {"compute": 0.0, "allreduce": 0.0, "bn_sync": 0.0}

    def __repr__(self) -> str:
        sync = ", sync_batchnorm=True" if self.sync_batchnorm else ""
        return f"Distributed(rank={self.rank}, size={self.size}{sync})"

    # -- one training step ------------------------------------------------------
    def part(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` items: ``r*n//N`` to ``(r+1)*n//N``
        (sizes differ by at most one; empty when ``n < N`` leaves none).

        >>> Distributed(_OneRank(1, 3)).part(10)
        slice(3, 6, None)
        """
        return slice(self.rank * n // self.size, (self.rank + 1) * n // self.size)

    def shard(self, batch: int) -> slice:
        """This rank's part of a global batch of ``batch`` samples.

        Rank ``r`` of ``N`` gets samples ``r*B//N`` to ``(r+1)*B//N`` (sizes
        differ by at most one); when ``B < 2N`` every rank gets all of them.
        Sets :attr:`share` and :attr:`replicated` for the step.

        >>> d = Distributed(_OneRank())
        >>> d.shard(10), d.share
        (slice(0, 10, None), 1.0)
        """
        if batch < 1:
            raise ValueError(f"Distributed.shard: a batch needs at least one sample, got {batch}")
        self._batch = batch
        self.replicated = batch < 2 * self.size
        if self.replicated:
            part = slice(0, batch)
            self.share = 1.0 / self.size
        else:
            part = self.part(batch)
            self.share = (part.stop - part.start) / batch
        return part

    def average_gradients(self, params: Sequence[Any], *totals: float) -> list[float]:
        """Replace every ``Parameter.grad`` by the full batch's gradient; add up ``totals``.

        Each rank's gradients, times :attr:`share`, are packed into one flat
        buffer (the parameters' dtype) with the step's ``totals`` appended
        (e.g. the shard's loss sum, correct count, sample count), and one
        ``Allreduce`` sums the buffer over the ranks. Parameters without a
        gradient are left out (they must be the same on every rank).

        Returns
        -------
        list of float
            ``totals`` summed over the ranks (counted once when every rank
            computed the whole batch).
        """
        now = time.perf_counter()
        self.step_compute.append(now - self._step_start)
        self.seconds["compute"] += now - self._step_start
        grads = [p.grad for p in params if p.grad is not None]
        dtype = np.result_type(*grads) if grads else np.dtype(np.float64)
        size = sum(g.size for g in grads) + len(totals)
        if self._buffer is None or self._buffer.size != size or self._buffer.dtype != dtype:
            self._buffer = np.empty(size, dtype=dtype)
        buf = self._buffer
        at = 0
        for g in grads:
            np.multiply(g.reshape(-1), self.share, out=buf[at : at + g.size])
            at += g.size
        # Totals are per-sample sums: counted once per sample even when replicated.
        buf[at:] = np.asarray(totals, dtype=np.float64) * (self.share if self.replicated else 1.0)
        self._allreduce(buf)
        at = 0
        for p in params:
            if p.grad is not None:
                # a copy in the gradient's dtype: the buffer is reused next step
                p.grad = buf[at : at + p.grad.size].reshape(p.grad.shape).astype(p.grad.dtype)
                at += p.grad.size
        self._step_start = time.perf_counter()
        self.seconds["allreduce"] += self._step_start - now
        return [float(v) for v in buf[at:]]

    def sum(self, values: Sequence[float]) -> np.ndarray:
        """``values`` added up over the ranks (float64; a collective)."""
        buf = np.array(values, dtype=np.float64)
        self._allreduce(buf)
        return buf

    def _allreduce(self, buf: np.ndarray) -> None:
        """Sum ``buf`` over the ranks, in place (``MPI_IN_PLACE``)."""
        if self.size > 1:
            from mpi4py import MPI

            self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

    # -- BatchNorm over the global batch (nn.norm calls these when attached) -----------
    def batch_norm_train(
        self, x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None, eps: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """As :func:`clearconv.engine.norm.batch_norm_train` with the global batch's
        statistics; also returns the global count per channel ``M``.

        Two reductions of ``(C,)`` sums: the mean first, then the variance as
        the mean of squares about the global mean (as the engine: no
        ``E[x^2] - E[x]^2`` cancellation).
        """
        t = time.perf_counter()
        axes, c = reduce_axes(x.ndim), x.shape[1]
        per_sample = x.size // (x.shape[0] * c)  # H*W (or L, or 1)
        m = self._batch * per_sample  # values per channel in the global batch
        mult = 1.0 / self.size if self.replicated else 1.0  # each sample counted once
        total = x.sum(axis=axes, dtype=np.float64) * mult
        self._allreduce(total)
        mean = (total / m).astype(x.dtype)
        bshape = (1, c) + (1,) * (x.ndim - 2)
        xc = x - mean.reshape(bshape)
        sq = channel_dot(xc, xc).astype(np.float64) * mult
        self._allreduce(sq)
        var = (sq / m).astype(x.dtype)
        inv_std = (1 / np.sqrt(var + eps)).astype(x.dtype)
        scale = inv_std if weight is None else inv_std * weight
        y = xc * scale.reshape(bshape)
        if bias is not None:
            y += bias.reshape(bshape)
        self.seconds["bn_sync"] += time.perf_counter() - t
        return y, xc, inv_std, mean, var, m

    def batch_norm_backward(
        self, grad_out: np.ndarray, xc: np.ndarray, inv_std: np.ndarray, weight: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As :func:`clearconv.engine.norm.batch_norm_backward` (training) with the
        statistics of the global batch.

        ``grad_out`` is the gradient of this rank's shard loss; the full
        batch's is ``share_r * grad_out`` on shard ``r`` (``1`` when
        replicated), so the sums that ``dx`` needs are ``S = sum_r w_r *
        s_r`` with ``w_r`` the gradient weight (:attr:`share`), and this rank's
        ``dx`` is the full batch's divided by its own loss scale. The returned
        ``dweight, dbias`` are this rank's, weighted by :meth:`average_gradients`.
        """
        t = time.perf_counter()
        axes, c = reduce_axes(grad_out.ndim), grad_out.shape[1]
        m = self._batch * (grad_out.size // (grad_out.shape[0] * c))
        dbias = grad_out.sum(axis=axes)
        dxc = channel_dot(grad_out, xc)  # sum(g * xc); dweight = inv_std * dxc
        sums = np.concatenate([dbias, dxc]).astype(np.float64) * self.share
        self._allreduce(sums)
        scale_r = 1.0 if self.replicated else self.share  # this rank's loss scale
        sums = (sums / (scale_r * m)).astype(grad_out.dtype)
        bshape = (1, c) + (1,) * (grad_out.ndim - 2)
        shift, slope = sums[:c], sums[c:] * inv_std * inv_std
        scale = inv_std if weight is None else inv_std * weight
        dx = (grad_out - xc * slope.reshape(bshape) - shift.reshape(bshape)) * scale.reshape(bshape)
        self.seconds["bn_sync"] += time.perf_counter() - t
        return dx, dxc * inv_std, dbias

    # -- around a training run ---------------------------------------------------------
    @contextmanager
    def attached(self, model: Any) -> Iterator[None]:
        """Within the block: rank 0's weights and buffers on every rank,
        BatchNorm layers reducing over the ranks when ``sync_batchnorm``, and
        Dropout layers drawing a different stream on each rank.

        Every rank builds its model from the same seed; the broadcast makes the
        start identical even when they did not.
        """
        from clearconv.nn.dropout import Dropout
        from clearconv.nn.norm import _BatchNorm

        self.broadcast_state(model)
        self._step_start = time.perf_counter()
        norms = [m for m in model.modules() if isinstance(m, _BatchNorm)]
        if self.sync_batchnorm:
            for m in norms:
                m.sync = self
        dropouts = [m for m in model.modules() if isinstance(m, Dropout)]
        saved = [d.rng for d in dropouts]
        if self.rank > 0:
            # Each rank masks its own shard: a stream from rank 0's state and the rank
            # (the same generators on every rank would repeat rank 0's masks).
            for d in dropouts:
                d.rng = np.random.default_rng([int(d.rng.integers(2**63)), self.rank])
        try:
            yield
        finally:
            for m in norms:
                m.sync = None
            for d, rng in zip(dropouts, saved, strict=True):
                d.rng = rng

    def broadcast_state(self, model: Any) -> None:
        """Copy rank 0's parameters and buffers to every rank (in place)."""
        if self.size == 1:
            return
        state = model.state_dict()
        for key in sorted(state):
            arr = np.array(state[key], order="C")  # a copy; 0-d buffers stay 0-d
            self.comm.Bcast(arr, root=0)
            state[key] = arr
        model.load_state_dict(state)

    def evaluate(
        self, model: Any, images: np.ndarray, labels: np.ndarray, batch_size: int = 256
    ) -> dict[str, Any]:
        """:func:`clearconv.train.evaluate` on this rank's contiguous share of the
        samples, reduced over the ranks: the same dict as one process gives."""
        from clearconv.train import evaluate

        n = len(labels)
        part = self.part(n)
        mine = evaluate(model, images[part], labels[part], batch_size=batch_size)
        k = model.num_classes
        # One buffer: the confusion counts, then the loss sum (float64 holds both exactly).
        buf = np.concatenate(
            [
                mine["confusion"].ravel().astype(np.float64),
                [mine["loss"] * mine["n"] if mine["n"] else 0.0],
            ]
        )
        self._allreduce(buf)
        confusion = np.rint(buf[:-1]).astype(np.int64).reshape(k, k)
        tp = np.diag(confusion).astype(np.float64)
        predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
        return {
            "accuracy": float(tp.sum() / n) if n else 0.0,
            "loss": float(buf[-1] / n) if n else float("nan"),
            "n": n,
            "confusion": confusion,
            "precision": np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0),
            "recall": np.divide(tp, actual, out=np.zeros(k), where=actual > 0),
            "class_names": list(model.class_names),
        }

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, stopping every rank when it fails on one.

        A rank that raises would leave the others waiting in a reduction for
        ever: print ``rank R of N: <error>`` on stderr and abort the job
        (``MPI_Abort``, exit status 1). Ctrl-C reaches every rank, which stop
        at the same batch (``fit`` reduces the flag with the gradients): the
        ranks wait for each other, rank 0 having written its checkpoint, and
        KeyboardInterrupt goes on; a rank not there within
        ``INTERRUPT_GRACE_S`` is aborted (status 130). Files are written
        atomically, so an abort leaves every file whole.
        """
        try:
            return fn(*args, **kwargs)
        except BaseException as exc:
            if self.size == 1 or (isinstance(exc, SystemExit) and not exc.code):
                raise
            if isinstance(exc, KeyboardInterrupt) and self._all_arrive(INTERRUPT_GRACE_S):
                raise  # Ctrl-C stopped every rank at the same batch, after rank 0's checkpoint
            code = 130 if isinstance(exc, KeyboardInterrupt) else 1
            # a CLI user error says what is wrong in its message; others name their type
            user = type(exc).__name__ == "CLIError"
            what = f"{exc}" if user else f"{type(exc).__name__}: {exc}"
            what = "interrupted" if code == 130 else what
            print(f"clearconv: rank {self.rank} of {self.size}: {what}", file=sys.stderr)
            sys.stderr.flush()
            self.comm.Abort(code)
            raise  # not reached: Abort ends the process

    def _all_arrive(self, seconds: float) -> bool:
        """Whether every rank reaches this point within ``seconds`` (a barrier that gives up)."""
        request = self.comm.Ibarrier()
        deadline = time.monotonic() + seconds
        while not request.Test():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def timings(self) -> dict[str, float]:
        """Seconds per step, averaged over the ranks (a collective: every rank calls it).

        ``compute`` (the work between two gradient reductions), ``bn_sync``
        (synchronised BatchNorm's passes, part of ``compute``), ``allreduce`` (the gradient
        reduction: ``idle`` + ``transfer``), ``idle`` (waiting for the slowest
        rank's compute: per step, the slowest rank's compute minus this
        rank's), ``transfer`` and ``steps``.
        """
        mine = np.asarray(self.step_compute, dtype=np.float64)
        steps = len(mine)
        if self.size > 1:
            slowest = mine.copy()
            from mpi4py import MPI

            self.comm.Allreduce(MPI.IN_PLACE, slowest, op=MPI.MAX)
        else:
            slowest = mine
        local = np.array(
            [
                self.seconds["compute"],
                self.seconds["bn_sync"],
                self.seconds["allreduce"],
                float((slowest - mine).sum()),
            ]
        )
        self._allreduce(local)
        compute, bn_sync, allreduce, idle = local / self.size / max(steps, 1)
        return {
            "steps": steps,
            "compute": compute,
            "bn_sync": bn_sync,
            "allreduce": allreduce,
            "idle": min(idle, allreduce),
            "transfer": max(allreduce - idle, 0.0),
        }


class DistributedPart(Callback):
    """The part of ``fit(..., distributed=dist)`` that makes N ranks one run
    (``fit`` puts it first, right after Ctrl-C handling).

    - first epoch begins (after a checkpoint restored the run): rank 0's
      weights on every rank, synchronised BatchNorm, a Dropout stream per rank
      (:meth:`Distributed.attached`, undone when the run closes);
    - each batch begins: ``state.shard`` is this rank's slice of the batch
      (:meth:`Distributed.shard`; the loop cuts it after augmentation);
    - after backward: one allreduce averages the gradients and sums the
      batch's loss, correct count, sample count and the Ctrl-C flag
      (:meth:`Distributed.average_gradients`), so that the running metrics are
      the whole batch's and every rank stops at the same batch.

    Parameters
    ----------
    dist : Distributed
    """

    def __init__(self, dist: Distributed) -> None:
        self.dist = dist
        self._attached: ExitStack | None = None

    def on_epoch_begin(self, s: TrainState) -> None:
        if self._attached is None:
            self._attached = ExitStack()
            self._attached.enter_context(self.dist.attached(s.model))

    def on_batch_begin(self, s: TrainState) -> None:
        s.shard = self.dist.shard(len(s.idx))

    def on_after_backward(self, s: TrainState) -> None:
        *totals, flags = self.dist.average_gradients(
            s.model.parameters(), *s.totals, float(s.interrupt_requested)
        )
        s.totals = [totals[0], round(totals[1]), round(totals[2])]
        s.interrupted = flags > 0  # agreed: every rank stops after this batch

    def close(self, s: TrainState) -> None:
        if self._attached is not None:
            self._attached.close()
            self._attached = None


class _OneRank:
    """A communicator of one rank (for doctests and for tests of sharding)."""

    def __init__(self, rank: int = 0, size: int = 1) -> None:
        self.rank, self.size = rank, size

    def Get_rank(self) -> int:  # mpi4py's names
        return self.rank

    def Get_size(self) -> int:
        return self.size
