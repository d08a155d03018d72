"""Full training runs on real MNIST, recorded for BENCHMARKS.md.

Usage::

    python -m benchmarks.training lenet5 [mnist ...] [--data-dir ../shared/datasets] [--threads 1]

Runs ``clearconv train --model NAME --dataset mnist`` with the model's default
recipe, then ``clearconv evaluate --json``, and stores test accuracy, epochs and
wall time in ``benchmarks/results/training_runs.json`` (one entry per model,
replaced on each run), which ``benchmarks.run`` renders.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "benchmarks" / "results" / "training_runs.json"


def run(model: str, data_dir: str, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{model}.npz"
        train = [sys.executable, "-m", "clearconv", "train", "--model", model, "--dataset", "mnist",
                 "--data-dir", data_dir, "--out", str(out), "--threads", str(threads)]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(train, check=True)
        wall = time.perf_counter() - start
        ev = [sys.executable, "-m", "clearconv", "evaluate", str(out), "--dataset", "mnist",
              "--data-dir", data_dir, "--json"]  # fmt: skip
        result = json.loads(subprocess.run(ev, check=True, capture_output=True, text=True).stdout)
    from clearconv.zoo import recipe

    return {
        "model": model,
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["clearconv", *train[3:-4], "--threads", str(threads)]),
        "epochs": recipe(model)["epochs"],
        "test_accuracy": result["accuracy"],
        "wall_seconds": round(wall, 1),
        "threads": threads,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    runs = json.loads(RUNS.read_text()) if RUNS.exists() else {}
    for model in args.models:
        runs[model] = run(model, args.data_dir, args.threads)
        print(json.dumps(runs[model]), flush=True)
        RUNS.parent.mkdir(parents=True, exist_ok=True)
        RUNS.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
