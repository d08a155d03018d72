"""``clearconv train --workers N``: start N ranks of the same command under mpiexec."""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from clearconv._extras import install_hint
from clearconv.cli import CLIError
from clearconv.distributed import PID_FOLDER


def train_parser() -> argparse.ArgumentParser:
    """The parser of ``clearconv train``, common options included."""
    from clearconv.cli import build_parser

    for action in build_parser()._actions:  # argparse lists its subcommands only here
        if isinstance(action, argparse._SubParsersAction):
            return action.choices["train"]
    raise RuntimeError("clearconv has no train command")  # pragma: no cover


def rank_argv(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """The options of ``args`` that differ from ``parser``'s defaults, as a command line
    (``--workers`` and ``--threads`` left out: the launcher sets them)."""
    out: list[str] = []
    for action in parser._actions:  # argparse keeps its options here; no public list
        if not action.option_strings or action.dest in ("help", "workers", "threads"):
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        if isinstance(action, argparse.BooleanOptionalAction):
            out.append(action.option_strings[0 if value else 1])
        elif action.nargs == 0:  # store_true
            out.append(action.option_strings[0])
        else:
            out += [action.option_strings[0], str(value)]
    return out


def spawn(args: argparse.Namespace) -> int:
    """Run ``mpiexec -n N python -m clearconv train ...`` and return its exit status.

    Each rank gets ``--threads`` BLAS/engine threads (1 unless given): N ranks
    on N cores, not N processes each threading over every core.
    """
    from clearconv.distributed import launched_size, mpiexec_command

    if launched_size() > 1:
        raise CLIError("--workers starts the ranks itself: leave it out under mpiexec")
    if importlib.util.find_spec("mpi4py") is None:
        raise CLIError(f"--workers needs mpi4py and MPI: {install_hint('mpi')}")
    try:
        launcher = mpiexec_command(args.workers)
    except FileNotFoundError as exc:
        raise CLIError(f"--workers: {exc}") from exc
    threads = str(args.threads or 1)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = threads
    cmd = [*launcher, sys.executable, "-m", "clearconv", "train", *rank_argv(train_parser(), args)]
    with tempfile.TemporaryDirectory(prefix="clearconv-ranks-") as pids:
        env[PID_FOLDER] = pids  # each rank writes its process id here (Distributed)
        proc = subprocess.Popen(
            [*cmd, "--threads", threads], env=env, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        stdout = proc.stdout
        if stdout is None:  # pragma: no cover (stdout=PIPE always gives one)
            raise RuntimeError("no pipe from mpiexec")
        dead = None
        try:
            for line in stdout:  # pass the ranks' output on, noting the pid of a dead one
                sys.stdout.write(line)
                sys.stdout.flush()
                found = re.search(r"PID (\d+) RUNNING AT", line)
                dead = found.group(1) if found else dead
        except KeyboardInterrupt:
            # mpiexec passed the same Ctrl-C to the ranks: let them checkpoint and stop
            for line in stdout:
                sys.stdout.write(line)
            proc.wait()
            raise
        code = proc.wait()
        if code and dead is not None:
            ranks = {f.read_text(): f.name.split("-")[1] for f in Path(pids).glob("rank-*")}
            raise CLIError(
                f"rank {ranks.get(dead, '?')} of {args.workers} (pid {dead}) ended with exit "
                f"status {code}; mpiexec stopped the others"
            )
    return code
