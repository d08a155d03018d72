"""Fuzz the readers of outside bytes: ``python -m fuzz.run --target idx --seconds 600``.

Engines
-------
``mutate`` (default when atheris is missing, and what the test suite uses)
    Seeded mutations (:mod:`fuzz.mutate`) of the target's valid seeds, half of
    them structure-aware for zip and gzip targets. Reproducible from ``--seed``.
``atheris`` (default when ``pip install atheris`` worked)
    Coverage-guided libFuzzer via atheris over the same seeds (as the initial
    corpus), with clearconv's modules instrumented; stops at the first finding.

Guards, for every input: a time limit (``--timeout``, default 2 s; SIGALRM
raises :class:`Hang`, a ``BaseException`` no reader can swallow), an address
space limit (``--memory-mb`` above the process's size after warm-up, so an
absurd allocation fails as ``MemoryError`` and is reported), and the peak RSS
growth over the whole run is printed. Findings (exceptions other than the
target's documented refusal types) are saved under ``--crashes`` and listed;
the exit status is 1 when there is any.

Output: one JSON line per target, e.g. ``{"target": "idx", "engine": "mutate",
"inputs": 41234, "refused": 39876, "accepted": 1358, "findings": 0,
"max_input_s": 0.004, "rss_growth_mb": 0.4}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from fuzz.targets import TARGETS, Target

__all__ = ["Hang", "fuzz_target", "main"]


class Hang(BaseException):
    """Raised by SIGALRM when one input runs past the time limit."""


def _alarm(signum, frame):
    raise Hang


def _vm_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _limit_memory(extra_mb: int) -> None:
    """Cap the address space at the current size plus ``extra_mb``."""
    if extra_mb <= 0:
        return
    cap = (_vm_kb("VmSize") + extra_mb * 1024) * 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _finding(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}: {str(exc)[:200]}"


def fuzz_target(
    target: Target,
    seconds: float,
    *,
    seed: int = 0,
    max_inputs: int | None = None,
    timeout: float = 2.0,
    crashes: Path | None = None,
) -> dict:
    """Run the mutation engine on ``target`` for ``seconds`` (or ``max_inputs``).

    Returns the run's figures; ``findings`` lists ``"Type at file:line: message"``
    of each distinct unexpected exception (its input saved under ``crashes``).
    """
    rng = np.random.default_rng(seed)
    seeds = target.seeds()
    found: dict[str, str] = {}
    counts = {"inputs": 0, "refused": 0, "accepted": 0}
    slowest = 0.0
    old = signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        for s in seeds:  # warm-up: seeds must be accepted, and caches filled
            target.run(s, work)
        rss0 = _peak_rss_mb()
        end = time.monotonic() + seconds
        try:
            while time.monotonic() < end and (max_inputs is None or counts["inputs"] < max_inputs):
                data = target.mutant(seeds, rng)
                counts["inputs"] += 1
                t0 = time.perf_counter()
                signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    target.run(data, work)
                    counts["accepted"] += 1
                except Hang as exc:
                    found.setdefault(f"Hang over {timeout} s", data.hex())
                    del exc
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:
                    if target.allowed(exc):
                        counts["refused"] += 1
                    else:
                        found.setdefault(_finding(exc), data.hex())
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                slowest = max(slowest, time.perf_counter() - t0)
        finally:
            signal.signal(signal.SIGALRM, old)
    if crashes is not None and found:
        crashes.mkdir(parents=True, exist_ok=True)
        for hexdata in found.values():
            data = bytes.fromhex(hexdata)
            name = f"{target.name}-{hashlib.sha1(data).hexdigest()[:12]}.bin"
            (crashes / name).write_bytes(data)
    return {
        "target": target.name,
        "engine": "mutate",
        **counts,
        "findings": sorted(found),
        "max_input_s": round(slowest, 4),
        "rss_growth_mb": round(_peak_rss_mb() - rss0, 1),
    }


def _atheris(target: Target, seconds: float, timeout: float, memory_mb: int, crashes: Path) -> int:
    import atheris

    with atheris.instrument_imports(include=["clearconv"]):
        import clearconv.data
        import clearconv.io
        import clearconv.onnx
        import clearconv.train  # noqa: F401
    corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{target.name}-"))
    for i, s in enumerate(target.seeds()):
        (corpus / f"seed{i}").write_bytes(s)
    work = Path(tempfile.mkdtemp(prefix="fuzz-work-"))

    def one(data: bytes) -> None:  # libFuzzer counts the runs ("Done N runs")
        try:
            target.run(data, work)
        except Exception as exc:
            if not target.allowed(exc):
                raise

    crashes.mkdir(parents=True, exist_ok=True)
    args = [
        sys.argv[0],
        f"-max_total_time={int(seconds)}",
        f"-timeout={max(1, int(timeout))}",
        f"-rss_limit_mb={memory_mb + int(_peak_rss_mb())}",
        f"-artifact_prefix={crashes}/{target.name}-",
        str(corpus),
    ]
    atheris.Setup(args, one)
    atheris.Fuzz()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.splitlines()[0])
    p.add_argument("--target", default="all", help=f"one of {', '.join(TARGETS)} or 'all'")
    p.add_argument("--seconds", type=float, default=60.0, help="time per target")
    p.add_argument("--engine", choices=("auto", "mutate", "atheris"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-inputs", type=int, default=None, help="stop a target after N inputs")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds allowed per input")
    p.add_argument("--memory-mb", type=int, default=1024, help="extra memory allowed")
    p.add_argument(
        "--crashes", type=Path, default=Path(tempfile.gettempdir()) / "clearconv-fuzz-crashes"
    )
    args = p.parse_args(argv)
    names = list(TARGETS) if args.target == "all" else [args.target]
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        p.error(f"unknown target {unknown[0]!r}: choose from {', '.join(TARGETS)} or all")
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "mutate"
    if engine == "atheris":
        if len(names) != 1:
            p.error("atheris fuzzes one target per process: give --target NAME")
        return _atheris(TARGETS[names[0]], args.seconds, args.timeout, args.memory_mb, args.crashes)
    bad = 0
    for name in names:
        target = TARGETS[name]
        target.seeds()  # import everything before the memory cap is measured
        target.run(target.seeds()[0], Path(tempfile.mkdtemp()))
        _limit_memory(args.memory_mb)
        result = fuzz_target(
            target,
            args.seconds,
            seed=args.seed,
            max_inputs=args.max_inputs,
            timeout=args.timeout,
            crashes=args.crashes,
        )
        bad += len(result["findings"])
        print(json.dumps(result), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
