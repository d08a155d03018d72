"""One framework's side of the benchmarks, timed in a process of its own.

Usage::

    python -m benchmarks.worker {clearconv,torch} THREADS [PACKAGE]

``PACKAGE`` is the import name of the library a clearconv worker times:
``clearconv`` (the default), or ``convnet`` for a revision from before the
rename (``benchmarks.run --against``, which puts that revision's ``src/`` on
the worker's ``PYTHONPATH``). A PyTorch worker copies its weights from
``clearconv``.

The worker pins its thread count once for its whole life (BLAS threads via
threadpoolctl; ``torch.set_num_threads`` as well for PyTorch), says
``{"ready": FRAMEWORK}`` on stdout once its imports are done (or
``{"error": "..."}`` when it cannot serve), then reads JSON requests from
stdin, one per line, and answers each with one JSON line on stdout until EOF::

    {"task": "train", "model": "lenet5", "batch": 64}   -> {"seconds": s, "steal": f}
    {"task": "infer", "model": "lenet5", "batch": 1}   (also the zoo's googlenet, ...)
    {"task": "layer", "index": 0}                       (a row of ``LAYERS``)
    {"task": "conv_step", "batch": 8, "size": 28}
    {"task": "gemm", "n": 2048}                         (clearconv worker only)

Any request may carry ``"min_time"`` (seconds of calls to time, default 0.25)
and ``"warmup"`` (untimed calls first, default 2). ``seconds`` is the time per
call (``benchmarks.timing.per_call``); ``steal`` is the fraction of all CPU
time that the hypervisor stole while it was measured (``null`` where
``/proc/stat`` cannot be read). A bad request gets ``{"error": "..."}``.

Why a process per framework: timing clearconv and PyTorch in one process, in
alternating chunks, slowed PyTorch by about 1.5-2x for a second or so after
clearconv's work (OpenBLAS's and torch's OpenMP thread pools get in each
other's way), which flattered clearconv. ``benchmarks.run`` drives one worker per
framework and takes turns between them.

Each framework gets the same model, weights and data: networks come from
``benchmarks.models`` (PyTorch's copied from clearconv's), data from the seeded
``_data``, and single layers are built from seeded generators.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.models import build_clearconv, build_torch, input_shape
from benchmarks.timing import per_call

Task = Callable[[], object]

FRAMEWORKS = ("clearconv", "torch")

# (row name, class in clearconv.nn and torch.nn, positional args, keyword args, input shape)
LAYERS = [
    ("Conv2d(1, 6, 5, padding=2) 64x1x28x28", "Conv2d", (1, 6, 5), {"padding": 2},
     (64, 1, 28, 28)),
    ("Conv2d(32, 32, 3, padding=1) 64x32x28x28", "Conv2d", (32, 32, 3), {"padding": 1},
     (64, 32, 28, 28)),
    ("Conv2d(64, 64, 3, stride=2, padding=1) 64x64x14x14", "Conv2d", (64, 64, 3),
     {"stride": 2, "padding": 1}, (64, 64, 14, 14)),
    ("MaxPool2d(2) 64x32x28x28", "MaxPool2d", (2,), {}, (64, 32, 28, 28)),
    ("MaxPool2d(3, 2, 1) 64x32x28x28", "MaxPool2d", (3, 2, 1), {}, (64, 32, 28, 28)),
    ("AvgPool2d(2) 64x32x28x28", "AvgPool2d", (2,), {}, (64, 32, 28, 28)),
    ("BatchNorm2d(32) 64x32x28x28", "BatchNorm2d", (32,), {}, (64, 32, 28, 28)),
    ("ReLU 64x32x28x28", "ReLU", (), {}, (64, 32, 28, 28)),
    ("Linear(3136, 256) 64x3136", "Linear", (3136, 256), {}, (64, 3136)),
]  # fmt: skip

_SEEDED = {"Conv2d", "Linear"}  # clearconv layers whose weights take an ``rng``


class RequestError(ValueError):
    """A request that names no known task, or gives it bad arguments."""


# -- shared inputs --------------------------------------------------------------


def _data(batch: int, shape: tuple[int, ...] = (1, 28, 28)) -> tuple[np.ndarray, np.ndarray]:
    """The batch a network task uses (MNIST-shaped unless ``shape``): images and labels, seeded."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, *shape), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    return x, y


def _layer(nn: ModuleType, index: int) -> tuple[Any, np.ndarray]:
    """Row ``index`` of ``LAYERS``: the layer from ``nn`` and its input, seeded by the index."""
    if not 0 <= index < len(LAYERS):
        raise RequestError(f"layer index {index} not in 0..{len(LAYERS) - 1}")
    _, cls, args, kwargs, shape = LAYERS[index]
    rng = np.random.default_rng(index)
    extra = {"rng": rng} if cls in _SEEDED else {}
    layer = getattr(nn, cls)(*args, **kwargs, **extra)
    return layer, rng.standard_normal(shape, dtype=np.float32)


def _conv_step_layer(nn: ModuleType, batch: int, size: int) -> tuple[Any, np.ndarray]:
    """Conv2d(16, 32, 3, padding=1) and its (batch, 16, size, size) input, seeded."""
    rng = np.random.default_rng(0)
    layer = nn.Conv2d(16, 32, 3, padding=1, rng=rng)
    return layer, rng.standard_normal((batch, 16, size, size), dtype=np.float32)


# -- clearconv ------------------------------------------------------------------


def _clearconv_step(layer: Any, x: np.ndarray) -> Task:
    """Forward in training mode and backward of a ones gradient."""

    def step() -> None:
        y = layer(x, training=True)
        layer.backward(np.ones_like(y))

    return step


def clearconv_train(lib: ModuleType, model: str, batch: int) -> Task:
    """One Adam + cross-entropy training step."""
    x, y = _data(batch)
    net = build_clearconv(model, nn=lib.nn)
    loss = lib.nn.CrossEntropyLoss()
    opt = lib.optim.Adam(net.parameters(), 1e-3)
    # The data is not learned: the first layer skips its dx. Revisions before the
    # planner said so per call (backward(g, input_grad=False)); --against runs them.
    backward = net.backward
    if "input_grad" in inspect.signature(net.backward).parameters:
        backward = functools.partial(net.backward, input_grad=False)
    else:
        net.needs_input_grad = False

    def step() -> None:
        opt.zero_grad()
        loss(net(x, training=True), y)
        backward(loss.backward())
        opt.step()

    return step


def clearconv_infer(lib: ModuleType, model: str, batch: int) -> Task:
    """One forward pass in eval mode."""
    x, _ = _data(batch, input_shape(model))
    net = build_clearconv(model, nn=lib.nn)
    return lambda: net(x)


def clearconv_gemm(n: int) -> Task:
    """float32 n^3 matrix product: the ceiling every conv layer works under."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    return lambda: a @ b


def clearconv_tasks(lib: ModuleType) -> dict[str, Callable[[dict], Task]]:
    """The task table of a clearconv worker, on the library ``lib`` (clearconv or convnet)."""
    return {
        "train": lambda r: clearconv_train(lib, r["model"], r["batch"]),
        "infer": lambda r: clearconv_infer(lib, r["model"], r["batch"]),
        "layer": lambda r: _clearconv_step(*_layer(lib.nn, r["index"])),
        "conv_step": lambda r: _clearconv_step(*_conv_step_layer(lib.nn, r["batch"], r["size"])),
        "gemm": lambda r: clearconv_gemm(r.get("n", 2048)),
    }


# -- PyTorch ------------------------------------------------------------------


def _torch_like(layer: Any, make: Callable[[], Any]) -> Any:
    """A PyTorch layer from ``make()`` carrying ``layer``'s parameters and buffers."""
    import torch

    tl = make()
    state = {k: torch.from_numpy(np.array(v)) for k, v in layer.state_dict().items()}
    if state:
        tl.load_state_dict(state, strict=False)  # torch's BatchNorm adds num_batches_tracked
    return tl


def _torch_step(tl: Any, x: np.ndarray) -> Task:
    """Forward and backward of a ones gradient, input gradient included as in clearconv."""
    import torch

    xt = torch.tensor(x, requires_grad=True)

    def step() -> None:
        y = tl(xt)
        y.backward(torch.ones_like(y))

    return step


def torch_train(model: str, batch: int) -> Task:
    """One Adam + cross-entropy training step, on clearconv's initial weights."""
    import torch

    x, y = _data(batch)
    net = build_torch(model, like=build_clearconv(model))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    loss = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def step() -> None:
        opt.zero_grad()
        loss(net(xt), yt).backward()
        opt.step()

    return step


def torch_infer(model: str, batch: int) -> Task:
    """One forward pass in eval mode with no gradient bookkeeping."""
    import torch

    x, _ = _data(batch, input_shape(model))
    net = build_torch(model, like=build_clearconv(model)).eval()
    xt = torch.from_numpy(x)

    def forward() -> None:
        with torch.inference_mode():
            net(xt)

    return forward


def torch_layer(index: int) -> Task:
    """Row ``index`` of ``LAYERS`` in PyTorch, with the clearconv layer's weights."""
    import torch

    from clearconv import nn

    layer, x = _layer(nn, index)
    _, cls, args, kwargs, _ = LAYERS[index]
    tl = _torch_like(layer, lambda: getattr(torch.nn, cls)(*args, **kwargs))
    return _torch_step(tl, x)


def torch_conv_step(batch: int, size: int) -> Task:
    """``conv_step`` in PyTorch, with the clearconv layer's weights."""
    import torch

    from clearconv import nn

    layer, x = _conv_step_layer(nn, batch, size)
    tl = _torch_like(layer, lambda: torch.nn.Conv2d(16, 32, 3, padding=1))
    return _torch_step(tl, x)


TORCH_TASKS: dict[str, Callable[[dict], Task]] = {
    "train": lambda r: torch_train(r["model"], r["batch"]),
    "infer": lambda r: torch_infer(r["model"], r["batch"]),
    "layer": lambda r: torch_layer(r["index"]),
    "conv_step": lambda r: torch_conv_step(r["batch"], r["size"]),
}


# -- measuring ----------------------------------------------------------------


def cpu_times() -> list[int] | None:
    """The first eight counters of the ``cpu`` line of /proc/stat (steal is the last).

    The ninth and tenth (guest time) are already counted in user and nice.
    """
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu "):
                    return [int(v) for v in line.split()[1:9]]
    except (OSError, ValueError):
        pass
    return None


def steal_fraction(before: list[int] | None, after: list[int] | None) -> float | None:
    """Stolen share of all CPU time between two ``cpu_times`` readings."""
    if before is None or after is None or len(before) < 8 or len(after) < 8:
        return None
    total = sum(after) - sum(before)
    return (after[7] - before[7]) / total if total > 0 else None


def timed(fn: Task, min_time: float, warmup: int) -> dict[str, float | None]:
    """Warm ``fn`` up, then seconds per call and the steal seen while timing it."""
    for _ in range(warmup):
        fn()
    before = cpu_times()
    seconds = per_call(fn, min_time)
    return {"seconds": seconds, "steal": steal_fraction(before, cpu_times())}


def _options(request: dict) -> tuple[float, int]:
    """``min_time`` and ``warmup`` of a request, checked."""
    min_time, warmup = request.get("min_time", 0.25), request.get("warmup", 2)
    if not isinstance(min_time, int | float) or isinstance(min_time, bool) or min_time <= 0:
        raise RequestError(f"min_time must be a positive number, not {min_time!r}")
    if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
        raise RequestError(f"warmup must be a whole number >= 0, not {warmup!r}")
    return float(min_time), warmup


class Worker:
    """Builds each requested task once and times it on request."""

    def __init__(self, tasks: dict[str, Callable[[dict], Task]]) -> None:
        self.tasks = tasks
        self.built: dict[str, Task] = {}

    def task(self, request: dict) -> Task:
        """The callable for ``request``, built on first use and kept by its key."""
        name = request.get("task")
        if name not in self.tasks:
            raise RequestError(f"unknown task {name!r}; this worker knows {sorted(self.tasks)}")
        key = json.dumps(
            {k: v for k, v in request.items() if k not in ("min_time", "warmup")}, sort_keys=True
        )
        if key not in self.built:
            try:
                self.built[key] = self.tasks[name](request)
            except KeyError as e:
                raise RequestError(f"{name}: missing or unknown {e}") from None
        return self.built[key]

    def answer(self, line: str) -> dict:
        """The JSON answer to one request line."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise RequestError("a request is a JSON object")
            min_time, warmup = _options(request)
            return timed(self.task(request), min_time, warmup)
        except json.JSONDecodeError as e:
            return {"error": f"bad JSON: {e}"}
        except RequestError as e:
            return {"error": str(e)}
        except Exception as e:  # a task that fails to build or run: answer, keep serving
            return {"error": f"{type(e).__name__}: {e}"}


def pin_threads(framework: str, threads: int, package: str = "clearconv") -> tuple[dict, object]:
    """The task table of ``framework``, with its threads pinned for the life of the process.

    A clearconv worker imports the library as ``package`` (``convnet`` before
    the rename). Returns the tasks and the threadpoolctl limiter, which the
    caller keeps.
    """
    if framework == "clearconv":
        if package not in ("clearconv", "convnet"):
            raise RequestError(f"unknown package {package!r}; use clearconv or convnet")
        lib = importlib.import_module(package)
        importlib.import_module(f"{package}.optim")  # a subpackage the package may not import
        return clearconv_tasks(lib), threadpool_limits(threads)
    if framework == "torch":
        try:
            import torch
        except ImportError:
            raise RequestError("torch is not installed") from None
        torch.set_num_threads(threads)
        # NumPy's BLAS only builds inputs and weights here; keep it to the same count
        return TORCH_TASKS, threadpool_limits(threads, user_api="blas")
    raise RequestError(f"unknown framework {framework!r}; use one of {FRAMEWORKS}")


def _refuse(message: str) -> int:
    """Say ``message`` instead of ready, answer every request with it, then fail."""
    print(json.dumps({"error": message}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps({"error": message}), flush=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print(
            "usage: python -m benchmarks.worker {clearconv,torch} THREADS [PACKAGE]",
            file=sys.stderr,
        )
        return 2
    framework, threads, package = (*args, "clearconv")[:3]
    if not threads.isdigit() or int(threads) < 1:
        return _refuse(f"THREADS must be a positive whole number, not {threads!r}")
    try:
        tasks, _limits = pin_threads(framework, int(threads), package)
    except RequestError as e:
        return _refuse(str(e))
    worker = Worker(tasks)
    print(json.dumps({"ready": framework}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(worker.answer(line)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
