"""Peak resident memory of a training run, one framework per process.

Usage: python -m benchmarks.memory {clearconv,torch} MODEL BATCH STEPS THREADS [PACKAGE]
(PACKAGE as for ``benchmarks.worker``.)
Prints JSON: peak RSS after imports and after training (MiB).
"""

from __future__ import annotations

import json
import resource
import sys


def _peak_mib() -> float:
    """This process's peak resident memory (VmHWM).

    Not ``getrusage``: Linux carries ``ru_maxrss`` across fork and exec, so a
    child started by a large benchmark process would report the parent's peak.
    """
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    framework, model, batch, steps, threads = sys.argv[1:6]
    package = sys.argv[6] if len(sys.argv) > 6 else "clearconv"
    batch, steps, threads = int(batch), int(steps), int(threads)
    from benchmarks.worker import RequestError, pin_threads

    try:
        tasks, _limits = pin_threads(framework, threads, package)  # imports the framework
    except RequestError as e:
        raise SystemExit(str(e)) from None
    base = _peak_mib()
    # The same Adam + cross-entropy step the throughput table times.
    step = tasks["train"]({"model": model, "batch": batch})
    for _ in range(steps):
        step()
    print(json.dumps({"after_imports_mib": base, "peak_mib": _peak_mib()}))


if __name__ == "__main__":
    main()
