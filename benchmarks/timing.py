"""Timing helpers: seconds per call, and interleaved median-of-runs comparison.

``per_call`` is what ``benchmarks.worker`` times each request with. ``compare``
interleaves several functions in one process; ``benchmarks.run`` does not use
it for clearconv against PyTorch, because in one process the two thread pools
(OpenBLAS's and torch's OpenMP) interfere and slow PyTorch by ~1.5-2x right
after clearconv's work. Use it only for functions that share one thread pool.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call(fn: Callable[[], object], min_time: float = 0.25, min_calls: int = 2) -> float:
    """Seconds per call of ``fn``: as many calls as fit in ``min_time`` (at least ``min_calls``)."""
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time and calls >= min_calls:
            return elapsed / calls


def compare(
    fns: dict[str, Callable[[], object]], repeats: int = 5, min_time: float = 0.25, warmup: int = 2
) -> dict[str, float]:
    """Median seconds per call of each function, runs interleaved so drift hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            samples[name].append(per_call(fn, min_time))
    return {name: statistics.median(v) for name, v in samples.items()}
