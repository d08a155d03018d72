"""Produce every figure in BENCHMARKS.md: convnet beside PyTorch on this machine.

Usage::

    python -m benchmarks.run [--threads 2] [--quick] [--out BENCHMARKS.md]

Both frameworks get the same thread count (BLAS threads via threadpoolctl for
convnet, ``torch.set_num_threads`` for PyTorch), the same model, weights and
data; runs are interleaved and the median of several is reported. PyTorch
2.13.0 (CPU) is the peer when installed; without it only convnet's column is filled.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import convnet
from benchmarks.models import ARCHS, build_convnet, build_torch
from benchmarks.timing import compare
from convnet import nn, optim

try:
    import torch
except ImportError:  # convnet alone
    torch = None

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


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
        "torch": torch.__version__ if torch is not None else "not installed",
        "convnet": convnet.__version__,
    }


def gemm_gflops(n: int = 2048) -> float:
    """float32 n^3 matrix product rate: the ceiling every conv layer works under."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    t = compare({"gemm": lambda: a @ b}, repeats=3, min_time=0.5)["gemm"]
    return 2 * n**3 / t / 1e9


# -- layers -------------------------------------------------------------------

LAYERS = [
    ("Conv2d(1, 6, 5, padding=2) 64x1x28x28", lambda: nn.Conv2d(1, 6, 5, padding=2),
     lambda: torch.nn.Conv2d(1, 6, 5, padding=2), (64, 1, 28, 28)),
    ("Conv2d(32, 32, 3, padding=1) 64x32x28x28", lambda: nn.Conv2d(32, 32, 3, padding=1),
     lambda: torch.nn.Conv2d(32, 32, 3, padding=1), (64, 32, 28, 28)),
    ("Conv2d(64, 64, 3, stride=2, padding=1) 64x64x14x14",
     lambda: nn.Conv2d(64, 64, 3, stride=2, padding=1),
     lambda: torch.nn.Conv2d(64, 64, 3, stride=2, padding=1), (64, 64, 14, 14)),
    ("MaxPool2d(2) 64x32x28x28", lambda: nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2),
     (64, 32, 28, 28)),
    ("MaxPool2d(3, 2, 1) 64x32x28x28", lambda: nn.MaxPool2d(3, 2, 1),
     lambda: torch.nn.MaxPool2d(3, 2, 1), (64, 32, 28, 28)),
    ("AvgPool2d(2) 64x32x28x28", lambda: nn.AvgPool2d(2), lambda: torch.nn.AvgPool2d(2),
     (64, 32, 28, 28)),
    ("BatchNorm2d(32) 64x32x28x28", lambda: nn.BatchNorm2d(32),
     lambda: torch.nn.BatchNorm2d(32), (64, 32, 28, 28)),
    ("ReLU 64x32x28x28", nn.ReLU, lambda: torch.nn.ReLU(), (64, 32, 28, 28)),
    ("Linear(3136, 256) 64x3136", lambda: nn.Linear(3136, 256),
     lambda: torch.nn.Linear(3136, 256), (64, 3136)),
]  # fmt: skip


def layer_rows(repeats: int) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for name, make, make_torch, shape in LAYERS:
        layer = make()
        x = rng.standard_normal(shape, dtype=np.float32)
        g = None

        def ours(layer=layer, x=x):
            y = layer(x, training=True)
            layer.backward(np.ones_like(y))

        fns = {"convnet": ours}
        if torch is not None:
            tl = make_torch()
            if layer.parameters():
                tl.load_state_dict(
                    {k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()},
                    strict=False,
                )
            xt = torch.tensor(x, requires_grad=True)

            def theirs(tl=tl, xt=xt):
                y = tl(xt)
                y.backward(torch.ones_like(y))

            fns["torch"] = theirs
        t = compare(fns, repeats=repeats, min_time=0.15)
        rows.append({"layer": name, **{k: v * 1e3 for k, v in t.items()}})
        del g
    return rows


# -- whole networks -----------------------------------------------------------


def _data(batch: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    return x, y


def training_rate(model: str, batch: int, repeats: int) -> dict[str, float]:
    """Images per second of a full Adam + cross-entropy training step."""
    x, y = _data(batch)
    net = build_convnet(model)
    loss = nn.CrossEntropyLoss()
    opt = optim.Adam(net.parameters(), 1e-3)

    def ours():
        opt.zero_grad()
        loss(net(x, training=True), y)
        net.backward(loss.backward(), input_grad=False)
        opt.step()

    fns = {"convnet": ours}
    if torch is not None:
        tnet = build_torch(model, net)
        topt = torch.optim.Adam(tnet.parameters(), 1e-3)
        tloss = torch.nn.CrossEntropyLoss()
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)

        def theirs():
            topt.zero_grad()
            tloss(tnet(xt), yt).backward()
            topt.step()

        fns["torch"] = theirs
    t = compare(fns, repeats=repeats)
    return {k: batch / v for k, v in t.items()}


def inference_time(model: str, batch: int, repeats: int) -> dict[str, float]:
    """Seconds per forward pass (eval mode, no gradient bookkeeping in torch)."""
    x, _ = _data(batch)
    net = build_convnet(model)
    fns = {"convnet": lambda: net(x)}
    if torch is not None:
        tnet = build_torch(model, net).eval()
        xt = torch.from_numpy(x)

        def theirs():
            with torch.inference_mode():
                tnet(xt)

        fns["torch"] = theirs
    return compare(fns, repeats=repeats, min_time=0.3 if batch > 1 else 0.2)


def conv_flops(model: str) -> float:
    """Multiply-adds x 2 per image of the model (convolutions and linear layers)."""
    net = build_convnet(model)
    return 2.0 * convnet.summary(net, (1, 28, 28)).total_macs


def memory(model: str, batch: int, threads: int, steps: int = 5) -> dict[str, dict]:
    out = {}
    for fw in ("convnet", "torch") if torch is not None else ("convnet",):
        cmd = [sys.executable, "-m", "benchmarks.memory", fw, model, str(batch), str(steps),
               str(threads)]  # fmt: skip
        res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        out[fw] = json.loads(res.stdout.strip().splitlines()[-1])
    return out


# -- scaling ------------------------------------------------------------------


def conv_step(batch: int, size: int, repeats: int) -> dict[str, float]:
    """Forward + backward of Conv2d(16, 32, 3, padding=1) on (batch, 16, size, size)."""
    rng = np.random.default_rng(0)
    layer = nn.Conv2d(16, 32, 3, padding=1, rng=rng)
    x = rng.standard_normal((batch, 16, size, size), dtype=np.float32)

    def ours():
        y = layer(x, training=True)
        layer.backward(np.ones_like(y))

    fns = {"convnet": ours}
    if torch is not None:
        tl = torch.nn.Conv2d(16, 32, 3, padding=1)
        xt = torch.tensor(x, requires_grad=True)

        def theirs():
            y = tl(xt)
            y.backward(torch.ones_like(y))

        fns["torch"] = theirs
    return compare(fns, repeats=repeats, min_time=0.1, warmup=1)


def scaling(repeats: int, quick: bool) -> dict[str, list]:
    batches = [1, 4, 16, 64, 256] if quick else [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    sizes = [28, 56, 112] if quick else [28, 56, 84, 112, 168, 224]
    by_batch = [{"x": b, **conv_step(b, 28, repeats)} for b in batches]
    by_size = [{"x": s, **conv_step(8, s, repeats)} for s in sizes]
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
        for fw, style in (("convnet", "o-"), ("torch", "s--")):
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


def ratio(ours: float, theirs: float | None, higher_is_better: bool) -> str:
    if theirs is None:
        return "-"
    r = ours / theirs if higher_is_better else theirs / ours
    return f"{r:.2f}"


def markdown(info, threads, ceiling1, ceiling, layers, train, infer, flops, mem, cmd) -> str:
    t = "torch" if torch is not None else None
    lines = [
        "# Benchmarks",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['cpu']}; Python {info['python']}; NumPy {info['numpy']}; "
        f"PyTorch {info['torch']}; convnet {info['convnet']}",
        f"- command: `{cmd}`",
        f"- threads: {threads} for both (BLAS via threadpoolctl; `torch.set_num_threads`);"
        " runs interleaved, medians of several",
        f"- float32 matrix product 2048^3 (NumPy/OpenBLAS): {ceiling1:.0f} GFLOP/s on one"
        f" thread, {ceiling:.0f} GFLOP/s on {threads} (the ceiling)",
        "",
        "Ratio = how many times faster convnet is (> 1 means faster than PyTorch).",
        "",
        "## Training throughput (images/s, Adam + cross-entropy, MNIST-shaped batches)",
        "",
        "| model | batch | convnet | PyTorch | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for (model, batch), r in train.items():
        lines.append(
            f"| {model} | {batch} | {r['convnet']:,.0f} | "
            f"{r.get('torch', float('nan')):,.0f} | {ratio(r['convnet'], r.get(t), True)} |"
        )
    lines += [
        "",
        "## Inference",
        "",
        "| model | batch 256 images/s convnet | PyTorch | ratio | batch 1 latency ms convnet"
        " | PyTorch | ratio | convnet GFLOP/s at 256 (% of ceiling) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for model in ARCHS:
        big, one = infer[(model, 256)], infer[(model, 1)]
        gf = flops[model] * 256 / big["convnet"] / 1e9
        tb = big.get("torch")
        t1 = one.get("torch")
        lines.append(
            f"| {model} | {256 / big['convnet']:,.0f} | "
            f"{(256 / tb) if tb else float('nan'):,.0f} | {ratio(big['convnet'], tb, False)} | "
            f"{one['convnet'] * 1e3:.3f} | {(t1 or float('nan')) * 1e3:.3f} | "
            f"{ratio(one['convnet'], t1, False)} | {gf:.0f} ({100 * gf / ceiling:.0f}%) |"
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
        "| layer and input | convnet | PyTorch | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in layers:
        lines.append(
            f"| {r['layer']} | {r['convnet']:.3f} | {r.get('torch', float('nan')):.3f} | "
            f"{ratio(r['convnet'], r.get('torch'), False)} |"
        )
    lines += _training_runs()
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
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 5
    cmd = "python -m benchmarks.run" + (" --quick" if args.quick else "")
    if torch is not None:
        torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    info = machine()
    with threadpool_limits(1):
        ceiling1 = gemm_gflops()
    with threadpool_limits(args.threads):
        ceiling = gemm_gflops()
        print(f"GEMM ceiling: {ceiling1:.0f} / {ceiling:.0f} GFLOP/s", flush=True)
        train = {}
        for model in ARCHS:
            for batch in (64, 128):
                train[(model, batch)] = training_rate(model, batch, repeats)
                print("train", model, batch, train[(model, batch)], flush=True)
        infer = {}
        for model in ARCHS:
            for batch in (256, 1):
                infer[(model, batch)] = inference_time(model, batch, repeats)
                print("infer", model, batch, infer[(model, batch)], flush=True)
        flops = {m: conv_flops(m) for m in ARCHS}
        layers = layer_rows(repeats)
        print("layers done", flush=True)
        scale = scaling(3, args.quick)
    mem = memory("conv4", 128, args.threads)
    print("memory", mem, flush=True)
    plot_scaling(scale, RESULTS / "scaling.png")
    raw = {
        "machine": info,
        "threads": args.threads,
        "gemm_gflops": {"1": ceiling1, str(args.threads): ceiling},
        "training_images_per_s": {f"{m}@{b}": v for (m, b), v in train.items()},
        "inference_seconds": {f"{m}@{b}": v for (m, b), v in infer.items()},
        "layers_ms": layers,
        "memory": mem,
        "scaling_seconds": scale,
    }
    (RESULTS / "latest.json").write_text(json.dumps(raw, indent=1))
    md = markdown(info, args.threads, ceiling1, ceiling, layers, train, infer, flops, mem, cmd)
    Path(args.out).write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
