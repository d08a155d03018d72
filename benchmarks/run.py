"""Produce every figure in BENCHMARKS.md: clearconv beside PyTorch on this machine.

Usage::

    python -m benchmarks.run [--threads 2] [--quick] [--repeats 5] [--out BENCHMARKS.md]
    python -m benchmarks.run --against REV [--only TEXT ...]

This script only orchestrates: every timing happens in a long-lived
``benchmarks.worker`` process per side, each pinned once to the same
thread count (BLAS threads via threadpoolctl for clearconv,
``torch.set_num_threads`` for PyTorch) and given the same model, weights and
data. Each figure is the median of several rounds; a round asks each side
once, in an order that rotates every round, after a short pause so the other
processes' spinning BLAS/OpenMP threads have gone idle.

``--against REV`` adds a side: the library at git revision REV, checked out
in a temporary worktree (``benchmarks.revision``) and imported by a worker of
its own, so one run pairs this tree with REV round by round on the same rows
and reports this tree's speed over REV's per row (the PyTorch column stays).
``--only`` keeps the rows whose label contains a text. Either makes a partial
run: the tables go to stdout (or ``--out``), BENCHMARKS.md is left alone.

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
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

import clearconv
from benchmarks.models import ARCHS, ZOO, build_clearconv, input_shape
from benchmarks.revision import Revision, RevisionError, checkout, python_path
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

RATIOS = ("paired", "vs_rev")  # keys of measure()'s ratios, not times


@dataclass(frozen=True)
class Side:
    """One worker: the key its figures go under, what it times, and which library it imports.

    ``src`` goes first on the worker's ``PYTHONPATH``: this tree's ``src/``, or
    a revision's (``--against``) whose package may be called ``convnet``.
    PyTorch's side imports this tree's clearconv only to copy its weights.
    """

    key: str  # "clearconv", "rev" or "torch"
    framework: str  # "clearconv" or "torch": what benchmarks.worker times
    src: Path
    package: str = "clearconv"

    def env(self) -> dict[str, str]:
        return python_path(self.src, os.environ)


def sides(rev: Revision | None = None, frameworks: Sequence[str] = FRAMEWORKS) -> list[Side]:
    """This tree's clearconv, ``rev``'s when given, and PyTorch when installed."""
    out = [Side("clearconv", "clearconv", ROOT / "src")]
    if rev is not None:
        out.append(Side("rev", "clearconv", rev.src, rev.package))
    if "torch" in frameworks:
        out.append(Side("torch", "torch", ROOT / "src"))
    return out


class Workers:
    """One long-lived ``benchmarks.worker`` process per side, all on ``threads`` threads.

    Use as a context manager so the workers are closed (EOF on stdin, then
    wait) also when a measurement fails. ``steal`` collects the hypervisor's
    steal fraction reported with every answer.
    """

    def __init__(self, sides: Sequence[Side], threads: int) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.steal: list[float] = []  # of the samples kept
        self.retried = 0  # samples taken again for stolen time
        try:
            for side in sides:
                self.procs[side.key] = subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.worker", side.framework, str(threads),
                     side.package],
                    cwd=ROOT,
                    env=side.env(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )  # fmt: skip
            for side in sides:  # no timing while another worker is still importing
                self._ready(side.key)
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


def measure(workers: Workers, request: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of ``request`` for each side, over ``repeats`` rounds.

    A round asks each side once; the order rotates every round so no side
    always goes first, and each request waits ``PAUSE`` seconds so the other
    processes' BLAS/OpenMP threads have gone idle. Ratios are medians over
    rounds of two sides' times in the same round: this machine's speed drifts
    for seconds at a time, and a round's samples share the drift where two
    medians need not. ``"paired"`` is PyTorch's time over clearconv's (> 1:
    clearconv faster); ``"vs_rev"`` the revision's over this tree's (> 1:
    this tree faster).
    """
    keys = list(workers.procs)
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for i in range(repeats):
        turn = i % len(keys)
        for key in keys[turn:] + keys[:turn]:
            time.sleep(PAUSE)
            samples[key].append(workers.ask(key, request))
    out = {k: statistics.median(v) for k, v in samples.items()}
    for ratio_key, other in (("paired", "torch"), ("vs_rev", "rev")):
        if other in samples:
            out[ratio_key] = statistics.median(
                o / c for c, o in zip(samples["clearconv"], samples[other], strict=True)
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


def _per(t: dict[str, float], convert) -> dict[str, float]:
    """``t`` with every time converted, its ratios kept as they are."""
    return {k: v if k in RATIOS else convert(v) for k, v in t.items()}


def layer_rows(workers: Workers, repeats: int, keep=lambda label: True) -> list[dict]:
    """Forward + backward of each row of ``LAYERS`` whose label ``keep`` accepts, in ms."""
    rows = []
    for index, (name, *_) in enumerate(LAYERS):
        if keep(f"layer {name}"):
            t = measure(workers, {"task": "layer", "index": index, "min_time": 0.15}, repeats)
            rows.append({"layer": name, **_per(t, lambda v: v * 1e3)})
    return rows


def training_rate(workers: Workers, model: str, batch: int, repeats: int) -> dict[str, float]:
    """Images per second of a full Adam + cross-entropy training step."""
    t = measure(workers, {"task": "train", "model": model, "batch": batch}, repeats)
    return _per(t, lambda v: batch / v)


def inference_time(workers: Workers, model: str, batch: int, repeats: int) -> dict[str, float]:
    """Seconds per forward pass (eval mode, no gradient bookkeeping in torch)."""
    request = {"task": "infer", "model": model, "batch": batch}
    return measure(workers, {**request, "min_time": 0.3 if batch > 1 else 0.2}, repeats)


def conv_flops(model: str) -> float:
    """Multiply-adds x 2 per image of the model (convolutions and linear layers)."""
    net = build_clearconv(model)
    return 2.0 * clearconv.summary(net, input_shape(model)).total_macs


def memory(
    model: str, batch: int, threads: int, on: Sequence[Side], steps: int = 5
) -> dict[str, dict]:
    """Peak memory of ``steps`` training steps, one process per side."""
    out = {}
    for side in on:
        cmd = [sys.executable, "-m", "benchmarks.memory", side.framework, model, str(batch),
               str(steps), str(threads), side.package]  # fmt: skip
        res = subprocess.run(
            cmd, cwd=ROOT, env=side.env(), capture_output=True, text=True, check=True
        )
        out[side.key] = json.loads(res.stdout.strip().splitlines()[-1])
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


def _heads(rev: str | None) -> list[str]:
    """The columns of one figure: clearconv, [the revision, vs REV,] PyTorch, ratio."""
    return ["clearconv", *([f"clearconv@{rev}", "vs REV"] if rev else []), "PyTorch", "ratio"]


def _cells(r: dict, fmt, rev: str | None) -> list[str]:
    """One figure's cells under :func:`_heads`, times formatted by ``fmt``."""
    cells = [fmt(r["clearconv"])]
    if rev:
        cells += [fmt(r["rev"]), f"{r['vs_rev']:.2f}"]
    return [*cells, fmt(r.get("torch", float("nan"))), ratio(r)]


def _table(heads: list[str], right: int, rows: list[list[str]]) -> list[str]:
    """A markdown table whose last ``right`` columns are right-aligned numbers."""
    rule = ["---"] * (len(heads) - right) + ["---:"] * right
    return [f"| {' | '.join(row)} |" for row in (heads, rule, *rows)]


def _header(info: dict, threads: int, res: dict, cmd: str, repeats: int, rev) -> list[str]:
    lines = [
        "# Benchmarks",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['cpu']}; Python {info['python']}; NumPy {info['numpy']}; "
        f"PyTorch {info['torch']}; clearconv {info['clearconv']}",
        f"- command: `{cmd}`",
        f"- threads: {threads} for {'every side' if rev else 'both'} (BLAS via threadpoolctl;"
        " `torch.set_num_threads`);"
        " each framework runs in its own worker process (`benchmarks/worker.py`), requests"
        f" alternate between them, medians of {repeats} rounds ({SCALING_REPEATS} for the"
        " scaling plot)",
        steal_line(res["steal"], res["retried"]),
        f"- float32 matrix product 2048^3 (NumPy/OpenBLAS): {res['ceiling1']:.0f} GFLOP/s on"
        f" one thread, {res['ceiling']:.0f} GFLOP/s on {threads} (the ceiling; best of 5 runs"
        " each)",
    ]
    if rev is not None:
        lines.append(
            f"- against: clearconv@{rev.label} = the library at commit {rev.sha} (package"
            f" `{rev.package}`), checked out in a temporary worktree and timed by a worker of"
            " its own on the same rows (the benchmark code is this tree's); vs REV = its time"
            " over this tree's in the same round (> 1 means this tree is faster)"
        )
    return [
        *lines,
        "",
        "Ratio = how many times faster clearconv is (> 1 means faster than PyTorch): the"
        " median over rounds of the two frameworks' times in the same round, so it can"
        " differ from the ratio of the two medians shown beside it.",
    ]


def markdown(info, threads, res: dict, cmd: str, *, repeats: int, rev=None) -> str:
    """BENCHMARKS.md from ``res`` (see :func:`collect`); with ``rev``, its columns too."""
    label = rev.label if rev is not None else None
    lines = _header(info, threads, res, cmd, repeats, rev)
    if res["train"]:
        lines += ["", "## Training throughput (images/s, Adam + cross-entropy, MNIST-shaped"
                  " batches)", ""]  # fmt: skip
        rows = [[m, str(b), *_cells(r, lambda v: f"{v:,.0f}", label)]
                for (m, b), r in res["train"].items()]  # fmt: skip
        lines += _table(["model", "batch", *_heads(label)], len(_heads(label)) + 1, rows)
    if res["infer"]:
        lines += ["", "## Inference", ""]
        heads = _heads(label)
        heads = ["model", f"batch 256 images/s {heads[0]}", *heads[1:],
                 f"batch 1 latency ms {heads[0]}", *heads[1:],
                 "clearconv GFLOP/s at 256 (% of ceiling)"]  # fmt: skip
        rows = []
        for model in dict.fromkeys(m for m, _ in res["infer"]):
            big, one = res["infer"][(model, 256)], res["infer"][(model, 1)]
            gf = res["flops"][model] * 256 / big["clearconv"] / 1e9
            rows.append([model, *_cells(big, lambda v: f"{256 / v:,.0f}", label),
                         *_cells(one, lambda v: f"{v * 1e3:.3f}", label),
                         f"{gf:.0f} ({100 * gf / res['ceiling']:.0f}%)"])  # fmt: skip
        lines += _table(heads, len(heads) - 1, rows)
    if res.get("zoo"):
        lines += zoo_table(res, label)
    if res["memory"]:
        lines += ["", "## Peak memory of training (conv4, batch 128, 5 steps; one process each)",
                  ""]  # fmt: skip
        names = {"rev": f"clearconv@{label}"}
        rows = [[names.get(k, k), f"{m['after_imports_mib']:.0f}", f"{m['peak_mib']:.0f}",
                 f"{m['peak_mib'] - m['after_imports_mib']:.0f}"]
                for k, m in res["memory"].items()]  # fmt: skip
        heads = ["framework", "RSS after imports (MiB)", "peak RSS (MiB)", "growth (MiB)"]
        lines += _table(heads, 3, rows)
    if res["layers"]:
        lines += ["", "## Layers (forward + backward, ms)", ""]
        rows = [[r["layer"], *_cells(r, lambda v: f"{v:.3f}", label)] for r in res["layers"]]
        lines += _table(["layer and input", *_heads(label)], len(_heads(label)), rows)
    if res["scaling"] is not None:  # a full run: the records and the plot
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
        ]
    return "\n".join([*lines, ""])


#: Sections a full run writes; any other section of BENCHMARKS.md (runs recorded
#: by hand or by other scripts: sound and text, segmentation) is carried over.
GENERATED_SECTIONS = ("Training throughput", "Inference", "Peak memory", "Layers",
                      "Full training runs on MNIST", "Data-parallel training over MPI",
                      "Scaling")  # fmt: skip


def with_kept_sections(md: str, old: str) -> str:
    """``md`` (a full run's BENCHMARKS.md) with the sections of ``old`` that this
    script does not write, in their order, before its closing "Scaling" section."""
    kept = [s.rstrip("\n") for s in re.split(r"(?m)^(?=## )", old)[1:]
            if not s[3:].startswith(GENERATED_SECTIONS)]  # fmt: skip
    if not kept:
        return md
    at = md.find("\n## Scaling")
    at = len(md) if at < 0 else at
    return md[:at] + "\n" + "\n\n".join(kept) + "\n" + md[at:]


def zoo_table(res: dict, label: str | None) -> list[str]:
    """The zoo's 224x224 classics: images/s at batch 32, latency of one image."""
    heads = _heads(label)
    heads = ["model", f"batch 32 images/s {heads[0]}", *heads[1:],
             f"batch 1 latency ms {heads[0]}", *heads[1:],
             "clearconv GFLOP/s at 32 (% of ceiling)"]  # fmt: skip
    rows = []
    for model in dict.fromkeys(m for m, _ in res["zoo"]):
        big, one = res["zoo"][(model, 32)], res["zoo"][(model, 1)]
        gf = res["flops"][model] * 32 / big["clearconv"] / 1e9
        rows.append([model, *_cells(big, lambda v: f"{32 / v:,.1f}", label),
                     *_cells(one, lambda v: f"{v * 1e3:.1f}", label),
                     f"{gf:.0f} ({100 * gf / res['ceiling']:.0f}%)"])  # fmt: skip
    return [
        "",
        "## Inference of the zoo's branched classics (3x224x224, eval mode)",
        "",
        *_table(heads, len(heads) - 1, rows),
    ]


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


def collect(threads: int, repeats: int, quick: bool, rev=None, only=()) -> dict:
    """Every figure: the GEMM ceiling, then each row on every side, then memory.

    ``only``: substrings of the row labels to keep ("train lenet5", "infer
    conv4", "layer ReLU", "memory conv4"; empty keeps all). The scaling plot
    is measured only on a full run (no ``rev``, no ``only``).
    """

    def keep(label: str) -> bool:
        return not only or any(text in label for text in only)

    on = sides(rev)
    with Workers(on[:1], 1) as one:
        ceiling1 = gemm_gflops(one)
    with Workers(on, threads) as workers:
        ceiling = gemm_gflops(workers)
        print(f"GEMM ceiling: {ceiling1:.0f} / {ceiling:.0f} GFLOP/s", flush=True)
        train, infer = {}, {}
        for model in (m for m in ARCHS if keep(f"train {m}")):
            for batch in (64, 128):
                train[(model, batch)] = training_rate(workers, model, batch, repeats)
                print("train", model, batch, train[(model, batch)], flush=True)
        for model in (m for m in ARCHS if keep(f"infer {m}")):
            for batch in (256, 1):
                infer[(model, batch)] = inference_time(workers, model, batch, repeats)
                print("infer", model, batch, infer[(model, batch)], flush=True)
        zoo = {}  # the zoo's 224x224 classics: batch 32 and single images
        # Not timed --against a revision: revisions before these rows lack the models.
        for model in (m for m in ZOO if keep(f"infer {m}") and rev is None):
            for batch in (32, 1):
                zoo[(model, batch)] = inference_time(workers, model, batch, repeats)
                print("infer", model, batch, zoo[(model, batch)], flush=True)
        layers = layer_rows(workers, repeats, keep)
        print("layers done", flush=True)
        full = rev is None and not only
        scale = scaling(workers, SCALING_REPEATS, quick) if full else None
    mem = memory("conv4", 128, threads, on) if keep("memory conv4") else {}
    print("memory", mem, flush=True)
    return {
        "ceiling1": ceiling1,
        "ceiling": ceiling,
        "train": train,
        "infer": infer,
        "zoo": zoo,
        "flops": {m: conv_flops(m) for m in (*ARCHS, *(m for m, _ in zoo))},
        "layers": layers,
        "memory": mem,
        "scaling": scale,
        "steal": one.steal + workers.steal,
        "retried": one.retried + workers.retried,
    }


def raw_json(info: dict, threads: int, repeats: int, res: dict, rev=None) -> dict:
    """The figures of ``res`` as JSON (``benchmarks/results/latest.json`` on a full run)."""
    steal = res["steal"]
    against = None if rev is None else {"rev": rev.rev, "sha": rev.sha, "package": rev.package}
    return {
        "machine": info,
        "threads": threads,
        "method": "one worker process per side; requests rotate; medians of rounds",
        "repeats": repeats,
        "against": against,
        "steal": {
            "median": statistics.median(steal) if steal else None,
            "max": max(steal, default=None),
            "samples": len(steal),
            "retried": res["retried"],
        },
        "gemm_gflops": {"1": res["ceiling1"], str(threads): res["ceiling"]},
        "training_images_per_s": {f"{m}@{b}": v for (m, b), v in res["train"].items()},
        "inference_seconds": {
            f"{m}@{b}": v for (m, b), v in {**res["infer"], **res.get("zoo", {})}.items()
        },
        "layers_ms": res["layers"],
        "memory": res["memory"],
        "scaling_seconds": res["scaling"],
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes")
    parser.add_argument("--repeats", type=int, default=None, help="rounds per figure (5)")
    parser.add_argument(
        "--against",
        metavar="REV",
        help="also time the library at git revision REV (checked out in a temporary worktree)"
        " on the same rows, and report this tree's speed against it per row",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="only the rows whose label contains TEXT (repeatable): 'train lenet5',"
        " 'infer conv4', 'infer googlenet', 'layer ReLU', 'memory'",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="markdown file to write (default: BENCHMARKS.md on a full run; with --against"
        " or --only, none: the tables go to stdout)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    repeats = args.repeats or (3 if args.quick else 5)
    cmd = "python -m benchmarks.run" + (" --quick" if args.quick else "")
    cmd += f" --repeats {args.repeats}" if args.repeats else ""
    cmd += f" --against {args.against}" if args.against else ""
    cmd += "".join(f" --only {text!r}" for text in args.only)
    full = not (args.against or args.only)
    out = args.out or (str(ROOT / "BENCHMARKS.md") if full else None)
    info = machine()
    try:
        with contextlib.ExitStack() as stack:
            rev = stack.enter_context(checkout(ROOT, args.against)) if args.against else None
            res = collect(args.threads, repeats, args.quick, rev, tuple(args.only))
    except RevisionError as exc:
        print(f"benchmarks.run: {exc}", file=sys.stderr)
        return 2
    raw = raw_json(info, args.threads, repeats, res, rev)
    if res["scaling"] is not None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        plot_scaling(res["scaling"], RESULTS / "scaling.png")
        (RESULTS / "latest.json").write_text(json.dumps(raw, indent=1))
    md = markdown(info, args.threads, res, cmd, repeats=repeats, rev=rev)
    if out is not None:
        if full and Path(out).exists():  # keep what was recorded by hand
            md = with_kept_sections(md, Path(out).read_text())
        Path(out).write_text(md)
        if not full:  # the raw figures of a partial run go beside its tables
            Path(out).with_suffix(".json").write_text(json.dumps(raw, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
