"""Produce every figure in BENCHMARKS.md: clearconv beside PyTorch on this machine.

Usage::

    python -m benchmarks.run [--threads 2] [--quick] [--out BENCHMARKS.md]

This script only orchestrates: every timing happens in a long-lived
``benchmarks.worker`` process per framework, each pinned once to the same
thread count (BLAS threads via threadpoolctl for clearconv,
``torch.set_num_threads`` for PyTorch) and given the same model, weights and
data. Each figure is the median of several rounds; a round asks clearconv and
PyTorch once each, in an order that flips every round, after a short pause so
the other process's spinning BLAS/OpenMP threads have gone idle.

Why separate processes: timing both in this one process, in alternating
0.25 s chunks (``benchmarks.timing.compare``), slowed PyTorch by about
1.5-2x after clearconv's work (LeNet-5 training at ~3,900 images/s instead of
6,000-8,800 alone), because OpenBLAS's and torch's OpenMP thread pools got in
each other's way; the ratios flattered clearconv. This script does not import
torch. PyTorch 2.13.0 (CPU) is the peer when installed; without it only
clearconv's column is filled.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

import clearconv
from benchmarks.models import ARCHS, build_clearconv
from benchmarks.worker import LAYERS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
HAVE_TORCH = importlib.util.find_spec("torch") is not None
FRAMEWORKS = ("clearconv", "torch") if HAVE_TORCH else ("clearconv",)
PAUSE = 0.2  # seconds before each request: the other worker's threads stop spinning
MAX_STEAL = 0.05  # a sample with more of its CPU time stolen is taken again ...
RETRIES = 3  # ... at most this many times
SCALING_REPEATS = 3


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = ", ".join(f"{i['internal_api']} {i.get('version', '')}" for i in threadpool_info())
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "numpy": f"{np.__version__} ({blas})",
        "torch": importlib.metadata.version("torch") if HAVE_TORCH else "not installed",
        "clearconv": clearconv.__version__,
    }


# -- workers ------------------------------------------------------------------


class Workers:
    """One long-lived ``benchmarks.worker`` process per framework, all on ``threads`` threads.

    Use as a context manager so the workers are closed (EOF on stdin, then
    wait) also when a measurement fails. ``steal`` collects the hypervisor's
    steal fraction reported with every answer.
    """

    def __init__(self, frameworks: Sequence[str], threads: int) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.steal: list[float] = []  # of the samples kept
        self.retried = 0  # samples taken again for stolen time
        try:
            for fw in frameworks:
                self.procs[fw] = subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.worker", fw, str(threads)],
                    cwd=ROOT,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            for fw in frameworks:  # no timing while another worker is still importing
                self._ready(fw)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ask(self, fw: str, request: dict) -> float:
        """Seconds per call of ``request`` as timed by ``fw``'s worker.

        A sample during which the hypervisor stole more than ``MAX_STEAL`` of
        the CPU time is taken again, up to ``RETRIES`` times: on a shared
        virtual machine such a sample measures the neighbours, not the code.
        """
        for attempt in range(RETRIES + 1):
            answer = self._ask_once(fw, request)
            steal = answer.get("steal")
            if steal is None or steal <= MAX_STEAL or attempt == RETRIES:
                break
            self.retried += 1
        if steal is not None:
            self.steal.append(steal)
        return answer["seconds"]

    def _ready(self, fw: str) -> None:
        """Wait for ``fw``'s worker to say it is ready.

        Importing torch keeps a core busy for a second or two; clearconv's
        first samples, taken meanwhile, ran 2-3x slow (LeNet-5 training at
        3,000-4,000 against 8,000-8,500 images/s).
        """
        line = self.procs[fw].stdout.readline()
        answer = json.loads(line) if line else {"error": "ended before it was ready"}
        if "error" in answer:
            raise RuntimeError(f"{fw} worker: {answer['error']}")

    def _ask_once(self, fw: str, request: dict) -> dict:
        proc = self.procs[fw]
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{fw} worker ended (exit code {proc.poll()}) on {request}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{fw} worker: {answer['error']} (request {request})")
        return answer

    def close(self) -> None:
        """End every worker: EOF on its stdin, then wait for it (kill after 30 s)."""
        for proc in self.procs.values():
            with contextlib.suppress(OSError):  # a worker that died leaves a broken pipe
                proc.stdin.close()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with contextlib.suppress(OSError):
                proc.stdout.close()


def measure(
    workers: Workers, request: dict, repeats: int, frameworks: Sequence[str] | None = None
) -> dict[str, float]:
    """Median seconds per call of ``request`` for each framework, over ``repeats`` rounds.

    A round asks each framework once; the order flips every round so neither
    always goes first, and each request waits ``PAUSE`` seconds so the other
    process's BLAS/OpenMP threads have gone idle. With both frameworks,
    ``"paired"`` is the median over rounds of PyTorch's time over clearconv's
    in the same round (> 1: clearconv faster): this machine's speed drifts for
    seconds at a time, and a round's two samples share the drift where two
    medians need not.
    """
    fws = list(frameworks if frameworks is not None else workers.procs)
    samples: dict[str, list[float]] = {fw: [] for fw in fws}
    for i in range(repeats):
        for fw in fws if i % 2 == 0 else fws[::-1]:
            time.sleep(PAUSE)
            samples[fw].append(workers.ask(fw, request))
    out = {fw: statistics.median(v) for fw, v in samples.items()}
    if "clearconv" in samples and "torch" in samples:
        out["paired"] = statistics.median(
            t / c for c, t in zip(samples["clearconv"], samples["torch"], strict=True)
        )
    return out


def gemm_gflops(workers: Workers, n: int = 2048, rounds: int = 5) -> float:
    """float32 n^3 matrix product rate in the clearconv worker: the ceiling of every conv layer.

    The best of ``rounds``: a ceiling is what the machine reaches, not its average.
    """
    request = {"task": "gemm", "n": n, "min_time": 0.5}
    best = min(workers.ask("clearconv", request) for _ in range(rounds))
    return 2 * n**3 / best / 1e9


# -- measurements -------------------------------------------------------------


def layer_rows(workers: Workers, repeats: int) -> list[dict]:
    """Forward + backward of each row of ``LAYERS``, in ms."""
    rows = []
    for index, (name, *_) in enumerate(LAYERS):
        t = measure(workers, {"task": "layer", "index": index, "min_time": 0.15}, repeats)
        rows.append({"layer": name, **{k: v if k == "paired" else v * 1e3 for k, v in t.items()}})
    return rows


def training_rate(workers: Workers, model: str, batch: int, repeats: int) -> dict[str, float]:
    """Images per second of a full Adam + cross-entropy training step."""
    t = measure(workers, {"task": "train", "model": model, "batch": batch}, repeats)
    return {k: v if k == "paired" else batch / v for k, v in t.items()}


def inference_time(workers: Workers, model: str, batch: int, repeats: int) -> dict[str, float]:
    """Seconds per forward pass (eval mode, no gradient bookkeeping in torch)."""
    request = {"task": "infer", "model": model, "batch": batch}
    return measure(workers, {**request, "min_time": 0.3 if batch > 1 else 0.2}, repeats)


def conv_flops(model: str) -> float:
    """Multiply-adds x 2 per image of the model (convolutions and linear layers)."""
    net = build_clearconv(model)
    return 2.0 * clearconv.summary(net, (1, 28, 28)).total_macs


def memory(model: str, batch: int, threads: int, steps: int = 5) -> dict[str, dict]:
    out = {}
    for fw in FRAMEWORKS:
        cmd = [sys.executable, "-m", "benchmarks.memory", fw, model, str(batch), str(steps),
               str(threads)]  # fmt: skip
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        out[fw] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


# -- scaling ------------------------------------------------------------------


def conv_step(workers: Workers, batch: int, size: int, repeats: int) -> dict[str, float]:
    """Forward + backward of Conv2d(16, 32, 3, padding=1) on (batch, 16, size, size)."""
    request = {"task": "conv_step", "batch": batch, "size": size, "min_time": 0.1, "warmup": 1}
    return measure(workers, request, repeats)


def scaling(workers: Workers, repeats: int, quick: bool) -> dict[str, list]:
    batches = [1, 4, 16, 64, 256] if quick else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    sizes = [28, 56, 112] if quick else [28, 56, 84, 112, 168, 224]
    by_batch = [{"x": b, **conv_step(workers, b, 28, repeats)} for b in batches]
    by_size = [{"x": s, **conv_step(workers, 8, s, repeats)} for s in sizes]
    return {"batch": by_batch, "size": by_size}


def plot_scaling(data: dict[str, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in [
        (axes[0], "batch", "batch size (28x28 images)"),
        (axes[1], "size", "image side (batch 8)"),
    ]:
        xs = [r["x"] for r in data[key]]
        for fw, style in (("clearconv", "o-"), ("torch", "s--")):
            if fw in data[key][0]:
                ax.loglog(xs, [r[fw] * 1e3 for r in data[key]], style, label=fw)
        ax.set_xlabel(label)
        ax.set_ylabel("ms per forward + backward")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("Conv2d(16, 32, 3, padding=1): time per step as the work grows")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- report -------------------------------------------------------------------


def ratio(r: dict) -> str:
    """A row's paired ratio (see :func:`measure`), or "-" without PyTorch."""
    return f"{r['paired']:.2f}" if "paired" in r else "-"


def steal_line(steal: list[float], retried: int) -> str:
    """The header line on the CPU time the hypervisor stole while the workers timed."""
    head = "- CPU time stolen by the hypervisor during the timed samples kept: "
    if not steal:
        return head + "unknown (no /proc/stat)"
    return head + (
        f"median {100 * statistics.median(steal):.1f}%, max {100 * max(steal):.1f}% "
        f"({retried} samples with more than {100 * MAX_STEAL:.0f}% stolen were taken again,"
        f" up to {RETRIES} times each)"
    )


def markdown(
    info, threads, ceiling1, ceiling, layers, train, infer, flops, mem, cmd, *, repeats, steal,
    retried,
) -> str:  # fmt: skip
    lines = [
        "# Benchmarks",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['cpu']}; Python {info['python']}; NumPy {info['numpy']}; "
        f"PyTorch {info['torch']}; clearconv {info['clearconv']}",
        f"- command: `{cmd}`",
        f"- threads: {threads} for both (BLAS via threadpoolctl; `torch.set_num_threads`);"
        " each framework runs in its own worker process (`benchmarks/worker.py`), requests"
        f" alternate between them, medians of {repeats} rounds ({SCALING_REPEATS} for the"
        " scaling plot)",
        steal_line(steal, retried),
        f"- float32 matrix product 2048^3 (NumPy/OpenBLAS): {ceiling1:.0f} GFLOP/s on one"
        f" thread, {ceiling:.0f} GFLOP/s on {threads} (the ceiling; best of 5 runs each)",
        "",
        "Ratio = how many times faster clearconv is (> 1 means faster than PyTorch): the"
        " median over rounds of the two frameworks' times in the same round, so it can"
        " differ from the ratio of the two medians shown beside it.",
        "",
        "## Training throughput (images/s, Adam + cross-entropy, MNIST-shaped batches)",
        "",
        "| model | batch | clearconv | PyTorch | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for (model, batch), r in train.items():
        lines.append(
            f"| {model} | {batch} | {r['clearconv']:,.0f} | "
            f"{r.get('torch', float('nan')):,.0f} | {ratio(r)} |"
        )
    lines += [
        "",
        "## Inference",
        "",
        "| model | batch 256 images/s clearconv | PyTorch | ratio | batch 1 latency ms clearconv"
        " | PyTorch | ratio | clearconv GFLOP/s at 256 (% of ceiling) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in ARCHS:
        big, one = infer[(model, 256)], infer[(model, 1)]
        gf = flops[model] * 256 / big["clearconv"] / 1e9
        tb = big.get("torch")
        t1 = one.get("torch")
        lines.append(
            f"| {model} | {256 / big['clearconv']:,.0f} | "
            f"{(256 / tb) if tb else float('nan'):,.0f} | {ratio(big)} | "
            f"{one['clearconv'] * 1e3:.3f} | {(t1 or float('nan')) * 1e3:.3f} | "
            f"{ratio(one)} | {gf:.0f} ({100 * gf / ceiling:.0f}%) |"
        )
    lines += [
        "",
        "## Peak memory of training (conv4, batch 128, 5 steps; one process each)",
        "",
        "| framework | RSS after imports (MiB) | peak RSS (MiB) | growth (MiB) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for fw, m in mem.items():
        lines.append(
            f"| {fw} | {m['after_imports_mib']:.0f} | {m['peak_mib']:.0f} | "
            f"{m['peak_mib'] - m['after_imports_mib']:.0f} |"
        )
    lines += [
        "",
        "## Layers (forward + backward, ms)",
        "",
        "| layer and input | clearconv | PyTorch | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in layers:
        lines.append(
            f"| {r['layer']} | {r['clearconv']:.3f} | {r.get('torch', float('nan')):.3f} | "
            f"{ratio(r)} |"
        )
    lines += _training_runs()
    from benchmarks.distributed import section  # MPI runs, recorded separately

    lines += section()
    lines += [
        "",
        "## Scaling",
        "",
        "![time per step against batch size and image size](benchmarks/results/scaling.png)",
        "",
        "Raw figures: `benchmarks/results/latest.json`.",
        "",
    ]
    return "\n".join(lines)


def _training_runs() -> list[str]:
    """Full MNIST runs recorded by ``python -m benchmarks.training`` (minutes each)."""
    path = RESULTS / "training_runs.json"
    if not path.exists():
        return []
    runs = json.loads(path.read_text())
    lines = [
        "",
        "## Full training runs on MNIST (recorded by `python -m benchmarks.training`)",
        "",
        "| model | epochs | test accuracy | wall time | threads | date | command |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in runs.values():
        lines.append(
            f"| {r['model']} | {r['epochs']} | {100 * r['test_accuracy']:.2f}% | "
            f"{r['wall_seconds']:.0f} s | {r['threads']} | {r['date']} | `{r['command']}` |"
        )
    if any(r.get("note") for r in runs.values()):
        lines += ["", *(f"- {r['model']}: {r['note']}" for r in runs.values() if r.get("note"))]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per figure (5)")
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    cmd = "python -m benchmarks.run" + (" --quick" if args.quick else "")
    cmd += f" --repeats {args.repeats}" if args.repeats else ""
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    with Workers(("clearconv",), 1) as one:
        ceiling1 = gemm_gflops(one)
    with Workers(FRAMEWORKS, args.threads) as workers:
        ceiling = gemm_gflops(workers)
        print(f"GEMM ceiling: {ceiling1:.0f} / {ceiling:.0f} GFLOP/s", flush=True)
        train = {}
        for model in ARCHS:
            for batch in (64, 128):
                train[(model, batch)] = training_rate(workers, model, batch, repeats)
                print("train", model, batch, train[(model, batch)], flush=True)
        infer = {}
        for model in ARCHS:
            for batch in (256, 1):
                infer[(model, batch)] = inference_time(workers, model, batch, repeats)
                print("infer", model, batch, infer[(model, batch)], flush=True)
        layers = layer_rows(workers, repeats)
        print("layers done", flush=True)
        scale = scaling(workers, SCALING_REPEATS, args.quick)
    steal = one.steal + workers.steal
    retried = one.retried + workers.retried
    flops = {m: conv_flops(m) for m in ARCHS}
    mem = memory("conv4", 128, args.threads)
    print("memory", mem, flush=True)
    plot_scaling(scale, RESULTS / "scaling.png")
    raw = {
        "machine": info,
        "threads": args.threads,
        "method": "one worker process per framework; requests alternate; medians of rounds",
        "repeats": repeats,
        "steal": {
            "median": statistics.median(steal) if steal else None,
            "max": max(steal, default=None),
            "samples": len(steal),
            "retried": retried,
        },
        "gemm_gflops": {"1": ceiling1, str(args.threads): ceiling},
        "training_images_per_s": {f"{m}@{b}": v for (m, b), v in train.items()},
        "inference_seconds": {f"{m}@{b}": v for (m, b), v in infer.items()},
        "layers_ms": layers,
        "memory": mem,
        "scaling_seconds": scale,
    }
    (RESULTS / "latest.json").write_text(json.dumps(raw, indent=1))
    md = markdown(
        info,
        args.threads,
        ceiling1,
        ceiling,
        layers,
        train,
        infer,
        flops,
        mem,
        cmd,
        repeats=repeats,
        steal=steal,
        retried=retried,
    )
    Path(args.out).write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
