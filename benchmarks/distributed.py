"""Data-parallel training over MPI: wall time beside PyTorch, allreduce cost, scaling model.

Usage::

    python -m benchmarks.distributed [compare] [allreduce] [model]
        [--data-dir ../shared/datasets] [--repeats 3] [--batch 256]

- ``compare``: ``clearconv train --model lenet5 --dataset mnist --epochs 2
  --batch-size 64 --workers 2`` against PyTorch training the same LeNet-5
  (AdamW, one-cycle, same batch and epochs, test evaluation and a saved
  model, as ``clearconv train`` does) on 2 threads, and clearconv in one
  process on 2 threads; wall time from process start to end, median of
  ``--repeats`` rounds in an order that alternates. The 2-rank runs print the
  per-step split (compute, allreduce, idle) measured by ``Distributed``'s timers.
- ``allreduce``: ``Allreduce`` time against buffer size between 2 ranks on
  this machine (loopback, shared memory), fitted as ``latency + bytes / bandwidth``.
- ``model``: time per image of forward + backward on one core for LeNet-5,
  the 4-conv net and ResNet-18, then the step time of a global batch of
  ``--batch`` images on N ranks, ``compute / N + allreduce(parameters)``, with a
  ring allreduce ``2 (N-1) * latency + 2 (N-1)/N * bytes / bandwidth``, for
  2..64 ranks on 10, 25 and 100 Gbit/s: the predicted speed-up over one rank.

Results go to ``benchmarks/results/distributed.json`` and ``distributed.png``;
the Markdown for BENCHMARKS.md is printed. Needs ``clearconv[mpi]`` (and torch
for ``compare``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RANKS = (1, 2, 4, 8, 16, 64)
# Network: line rate (bytes/s) and the latency of one message step (s). The
# latencies are assumptions: TCP over 10/25 GbE, RDMA (RoCE/InfiniBand) at 100.
NETWORKS = {"10 Gbit/s": (10e9 / 8, 30e-6), "25 Gbit/s": (25e9 / 8, 20e-6),
            "100 Gbit/s": (100e9 / 8, 5e-6)}  # fmt: skip
SIZES = [2**k for k in range(8, 25, 2)]  # float32 values: 1 KiB .. 64 MiB


def _env(threads: int) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    return env


# -- compare: wall time of whole training runs -------------------------------------------
def _clearconv_run(data_dir: str, workers: int, out: Path) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "clearconv", "train", "--model", "lenet5", "--dataset",
           "mnist", "--data-dir", data_dir, "--epochs", "2", "--batch-size", "64",
           "--no-download", "--out", str(out)]  # fmt: skip
    cmd += ["--workers", str(workers)] if workers > 1 else ["--threads", "2"]
    start = time.perf_counter()
    run = subprocess.run(cmd, env=_env(1 if workers > 1 else 2), capture_output=True, text=True)
    wall = time.perf_counter() - start
    if run.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed: {run.stderr}")
    return wall, run.stdout


def _torch_run(data_dir: str, out: Path) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "benchmarks.distributed", "torch-train", "--data-dir", data_dir,
           "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    run = subprocess.run(cmd, env=_env(2), capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - start
    if run.returncode:
        raise RuntimeError(f"PyTorch run failed: {run.stderr}")
    return wall, run.stdout


def torch_train(data_dir: str, out: str, epochs: int = 2, batch: int = 64) -> None:
    """PyTorch's side of ``compare``: what ``clearconv train`` does, in PyTorch, 2 threads."""
    import torch

    from benchmarks.models import build_torch
    from clearconv.cli._common import load_named

    torch.set_num_threads(2)
    torch.manual_seed(0)
    root = Path(data_dir)
    train = load_named("mnist", root, "train", download=False)
    test = load_named("mnist", root, "test", download=False)
    x = torch.from_numpy(train.images.astype(np.float32) / 255)
    mean, std = x.mean(), x.std()
    x = (x - mean) / std
    y = torch.from_numpy(train.labels.astype(np.int64))
    net = build_torch("lenet5")
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.0)
    steps = -(-len(y) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for b in range(steps):
            idx = order[b * batch : (b + 1) * batch]
            opt.zero_grad()
            loss = loss_fn(net(x[idx]), y[idx])
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        xt = (torch.from_numpy(test.images.astype(np.float32) / 255) - mean) / std
        pred = torch.cat([net(xt[i : i + 256]).argmax(1) for i in range(0, len(xt), 256)])
    acc = float((pred.numpy() == test.labels).mean())
    torch.save(net.state_dict(), out)
    print(f"test accuracy {acc:.2%}")


def compare(data_dir: str, repeats: int) -> dict:
    runs: dict[str, list[float]] = {"clearconv --workers 2": [], "clearconv --threads 2": [],
                                    "pytorch 2 threads": []}  # fmt: skip
    splits, accuracy = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            order = list(runs) if r % 2 == 0 else list(reversed(runs))
            for name in order:
                time.sleep(2)  # let the previous run's spinning threads go idle
                out = Path(tmp) / "m.npz"
                if name.startswith("pytorch"):
                    wall, text = _torch_run(data_dir, Path(tmp) / "m.pt")
                else:
                    wall, text = _clearconv_run(data_dir, 2 if "workers" in name else 1, out)
                runs[name].append(wall)
                acc = re.search(r"test accuracy ([\d.]+)%", text)
                accuracy[name] = float(acc.group(1)) / 100 if acc else None
                m = re.search(
                    r"per step: compute ([\d.]+) ms \(BatchNorm sync [\d.]+\), allreduce ([\d.]+) "
                    r"ms \(idle ([\d.]+), transfer ([\d.]+)\)",
                    text,
                )
                if m:
                    splits.append(dict(zip(("compute", "allreduce", "idle", "transfer"),
                                           map(float, m.groups()), strict=True)))  # fmt: skip
                print(f"  {name}: {wall:.1f} s", flush=True)
    split = {k: statistics.median(s[k] for s in splits) for k in splits[0]} if splits else {}
    return {
        "wall_s": {k: statistics.median(v) for k, v in runs.items()},
        "wall_all_s": runs,
        "test_accuracy": accuracy,
        "split_ms": split,
    }


# -- allreduce against buffer size --------------------------------------------------------
def allreduce_worker(out: str) -> None:
    """One rank: time ``Allreduce`` of float32 buffers of each size (median of repeats)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rows = []
    for n in SIZES:
        buf = np.ones(n, dtype=np.float32)
        reps = max(5, min(200, 2**22 // n))
        times = []
        for _ in range(reps):
            comm.Barrier()
            t = time.perf_counter()
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times.append(time.perf_counter() - t)
        slowest = comm.allreduce(statistics.median(times), op=MPI.MAX)
        rows.append({"bytes": 4 * n, "seconds": slowest})
    if comm.Get_rank() == 0:
        Path(out).write_text(json.dumps(rows))


def allreduce(ranks: int = 2) -> dict:
    from clearconv.distributed import mpiexec_command

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ar.json"
        cmd = [*mpiexec_command(ranks), sys.executable, "-m", "benchmarks.distributed",
               "allreduce-worker", str(out)]  # fmt: skip
        subprocess.run(cmd, env=_env(1), check=True, cwd=ROOT)
        rows = json.loads(out.read_text())
    b = np.array([r["bytes"] for r in rows], dtype=np.float64)
    t = np.array([r["seconds"] for r in rows])
    # Least squares t = latency + bytes / bandwidth, weighted so small buffers count too.
    a = np.stack([np.ones_like(b), b], axis=1) / t[:, None]
    (lat, inv_bw), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    return {"ranks": ranks, "rows": rows, "latency_s": float(lat), "bandwidth_Bps": 1 / inv_bw}


# -- the scaling model ---------------------------------------------------------------------
def image_seconds(name: str, batch: int, rounds: int = 3) -> tuple[float, int]:
    """Seconds of forward + backward per image on one thread, and the parameter count."""
    from benchmarks.models import build_clearconv
    from clearconv import zoo
    from clearconv.backend import blas_threads
    from clearconv.nn.loss import CrossEntropyLoss

    rng = np.random.default_rng(0)
    if name == "conv4":
        net, shape = build_clearconv("conv4"), (1, 28, 28)
    else:
        net, shape = zoo.build(name, rng=rng)
    x = rng.standard_normal((batch, *shape)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    ce = CrossEntropyLoss()
    times = []
    with blas_threads(1):
        for _ in range(rounds + 1):
            t = time.perf_counter()
            ce(net(x, training=True), y)
            net.backward(ce.backward())
            times.append(time.perf_counter() - t)
    return statistics.median(times[1:]) / batch, sum(p.size for p in net.parameters())


def ring_allreduce(nbytes: float, ranks: int, bandwidth: float, latency: float) -> float:
    """Seconds for a ring allreduce of ``nbytes`` among ``ranks`` (0 for one rank)."""
    if ranks == 1:
        return 0.0
    return 2 * (ranks - 1) * latency + 2 * (ranks - 1) / ranks * nbytes / bandwidth


def scaling(batch: int) -> dict:
    models = {}
    for name, probe in (("lenet5", 64), ("conv4", 32), ("resnet18", 2)):
        per_image, params = image_seconds(name, probe)
        compute = per_image * batch
        curves = {}
        for net_name, (bw, lat) in NETWORKS.items():
            curves[net_name] = [
                compute / (compute / n + ring_allreduce(4 * params, n, bw, lat)) for n in RANKS
            ]
        models[name] = {"params": params, "step_compute_s": compute, "speedup": curves}
        print(f"  {name}: {per_image * 1e3:.2f} ms/image, {params:,} parameters", flush=True)
    return {"batch": batch, "ranks": list(RANKS), "networks": NETWORKS, "models": models}


# -- output ---------------------------------------------------------------------------------
def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sc, ar = results.get("scaling"), results.get("allreduce")
    panels = (len(sc["models"]) if sc else 0) + (1 if ar else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 3.6), squeeze=False)
    ax_iter = iter(axes[0])
    if ar:
        ax = next(ax_iter)
        b = [r["bytes"] for r in ar["rows"]]
        ax.loglog(b, [r["seconds"] * 1e6 for r in ar["rows"]], "o-", label="measured")
        fit = [(ar["latency_s"] + x / ar["bandwidth_Bps"]) * 1e6 for x in b]
        ax.loglog(b, fit, "--", label="latency + bytes/bandwidth")
        ax.set(xlabel="buffer (bytes)", ylabel="Allreduce (us)", title="2 ranks, loopback")
        ax.legend(fontsize=8)
    if sc:
        for name, m in sc["models"].items():
            ax = next(ax_iter)
            for net_name, curve in m["speedup"].items():
                ax.plot(sc["ranks"], curve, "o-", label=net_name)
            ax.plot(sc["ranks"], sc["ranks"], ":", color="grey", label="ideal")
            title = f"{name} ({m['params'] / 1e6:.2g} M params), batch {sc['batch']}"
            ax.set(xscale="log", yscale="log", xlabel="ranks", ylabel="predicted speed-up")
            ax.set_title(title, fontsize=9)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown(results: dict) -> str:
    lines = []
    if "compare" in results:
        c = results["compare"]
        lines += [
            "| run | wall time (median) | all runs | test accuracy |",
            "| --- | ---: | --- | ---: |",
        ]
        for name, wall in c["wall_s"].items():
            all_runs = ", ".join(f"{w:.1f}" for w in c["wall_all_s"][name])
            acc = c["test_accuracy"].get(name)
            lines.append(f"| {name} | {wall:.1f} s | {all_runs} | "
                         f"{'' if acc is None else f'{acc:.2%}'} |")  # fmt: skip
        if c["split_ms"]:
            s = c["split_ms"]
            lines += ["", f"Per step (2 ranks, median over runs): compute {s['compute']:.2f} ms, "
                      f"allreduce {s['allreduce']:.2f} ms (idle {s['idle']:.2f}, transfer "
                      f"{s['transfer']:.2f})."]  # fmt: skip
    if "allreduce" in results:
        a = results["allreduce"]
        lines += ["", f"Allreduce between 2 ranks on loopback: latency "
                  f"{a['latency_s'] * 1e6:.0f} us, bandwidth {a['bandwidth_Bps'] / 1e9:.2f} GB/s "
                  "(fit of the measured times)."]  # fmt: skip
    if "scaling" in results:
        sc = results["scaling"]
        head = "| model | network | " + " | ".join(f"{n} ranks" for n in sc["ranks"][1:]) + " |"
        lines += ["", head, "| --- | --- |" + " ---: |" * (len(sc["ranks"]) - 1)]
        for name, m in sc["models"].items():
            for net_name, curve in m["speedup"].items():
                cells = " | ".join(f"{v:.1f}x" for v in curve[1:])
                lines.append(f"| {name} | {net_name} | {cells} |")
    return "\n".join(lines)


def _revision() -> str:
    """The commit measured, marked ``+changes`` when the tree differs from it."""

    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    rev = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "-uno", "--", ".", ":!benchmarks/results")
    return rev + ("+changes" if changed else "")


def _load(results: dict) -> str:
    load = results.get("load")
    return "not recorded" if not load else f"{load[0]:.1f} at the start, {load[1]:.1f} at the end"


def section(path: Path = RESULTS / "distributed.json") -> list[str]:
    """The BENCHMARKS.md section (``benchmarks.run`` adds it when the results exist)."""
    if not path.exists():
        return []
    results = json.loads(path.read_text())
    return [
        "",
        "## Data-parallel training over MPI (recorded by `python -m benchmarks.distributed`)",
        "",
        f"- date: {results['date']} (UTC); same machine; code at {results.get('revision', '?')}; "
        f"1-minute load average {_load(results)} on 2 cores; {results.get('note', '')}".rstrip(
            "; "
        ),
        "- wall time from process start to end of `clearconv train --model lenet5 --dataset "
        "mnist --epochs 2 --batch-size 64` (data loading, 1,876 steps, test evaluation, model "
        "file) against the same in PyTorch on 2 threads (`benchmarks/distributed.py "
        "torch-train`); medians of rounds in alternating order",
        "- per-step split from `Distributed.timings()`: compute is everything between two "
        "gradient reductions; allreduce = idle (waiting for the slower rank) + transfer",
        "",
        markdown(results),
        "",
        "![Allreduce against buffer size; predicted speed-up against ranks]"
        "(benchmarks/results/distributed.png)",
        "",
        "The model: a step of a global batch of B images on N ranks takes "
        "`compute(B) / N + 2 (N-1) latency + 2 (N-1)/N * 4 * params / bandwidth` (ring "
        "allreduce of float32 gradients); compute per image measured on one thread here; "
        "latencies assumed 30 us (10 Gbit/s TCP), 20 us (25), 5 us (100, RDMA); line rate, no "
        "overlap of communication with backward; compute(B/N) = compute(B)/N, which small "
        "shards do not reach. Raw figures: `benchmarks/results/distributed.json`.",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["compare", "allreduce", "model"])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=256, help="global batch of the model")
    parser.add_argument("--out", help="torch-train: output file")
    parser.add_argument("--note", help="a remark on the conditions, kept with the results")
    args = parser.parse_args(argv)
    if args.parts[:1] == ["torch-train"]:
        torch_train(args.data_dir, args.out)
        return 0
    if args.parts[:1] == ["allreduce-worker"]:
        allreduce_worker(args.parts[1])
        return 0
    path = RESULTS / "distributed.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    # The conditions belong to this run: a note from an earlier one must not survive it.
    results["note"] = args.note or ""
    results["revision"] = _revision()
    load_before = os.getloadavg()[0]
    if "compare" in args.parts:
        print("compare (wall time, process start to end):", flush=True)
        results["compare"] = compare(args.data_dir, args.repeats)
    if "allreduce" in args.parts:
        results["allreduce"] = allreduce()
    if "model" in args.parts:
        print("scaling model (compute per image on one thread):", flush=True)
        results["scaling"] = scaling(args.batch)
    results["load"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    plot(results, RESULTS / "distributed.png")
    print("\n".join(section(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
