"""Peak resident memory of a training run, one framework per process.

Usage: python -m benchmarks.memory {convnet,torch} MODEL BATCH STEPS THREADS
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
    batch, steps, threads = int(batch), int(steps), int(threads)
    import numpy as np

    from benchmarks.models import build_convnet

    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    if framework == "convnet":
        from threadpoolctl import threadpool_limits

        from convnet import nn, optim

        base = _peak_mib()
        net = build_convnet(model)
        loss = nn.CrossEntropyLoss()
        opt = optim.Adam(net.parameters(), 1e-3)
        with threadpool_limits(threads):
            for _ in range(steps):
                opt.zero_grad()
                loss(net(x, training=True), y)
                net.backward(loss.backward(), input_grad=False)
                opt.step()
    elif framework == "torch":
        import torch

        from benchmarks.models import build_torch

        torch.set_num_threads(threads)
        base = _peak_mib()
        tnet = build_torch(model)
        topt = torch.optim.Adam(tnet.parameters(), 1e-3)
        lossf = torch.nn.CrossEntropyLoss()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        for _ in range(steps):
            topt.zero_grad()
            lossf(tnet(xt), yt).backward()
            topt.step()
    else:
        raise SystemExit(f"unknown framework {framework!r}")
    print(json.dumps({"after_imports_mib": base, "peak_mib": _peak_mib()}))


if __name__ == "__main__":
    main()
