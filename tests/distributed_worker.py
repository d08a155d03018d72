"""One rank of the data-parallel tests (tests/test_distributed.py starts it under mpiexec).

Usage: ``mpiexec -n N python tests/distributed_worker.py SCENARIO OUT_DIR [CHECKPOINT]``.
Rank 0 writes what it computed to ``OUT_DIR/SCENARIO.npz``; the test computes
the same in one process and compares. The data and models are made here, by
the functions the test imports, so both sides train on the same things.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from clearconv import nn, zoo
from clearconv.distributed import Distributed
from clearconv.model import Model
from clearconv.train import fit

# LeNet-5 (no Dropout, no BatchNorm): 20 steps of batch 32.
LENET = {"n": 640, "batch_size": 32, "epochs": 1, "optimizer": "adam", "lr": 1e-3}
# A BatchNorm net: batch 15 on 2 ranks gives shards of 7 and 8; 92 samples end
# in a batch of 2 that every rank computes whole.
BN = {"n": 92, "batch_size": 15, "epochs": 2, "optimizer": "sgd", "lr": 0.05}
# Resume: 2 epochs of 10 steps; the checkpoint after epoch 1 comes from one process.
RESUME = {"n": 320, "batch_size": 32, "epochs": 2, "optimizer": "adam", "lr": 1e-3}
# Augmentation: each rank cuts its shard from the whole batch augmented with the
# same draws as one process (shifts, rotations, flips).
AUGMENT = {**BN, "augment": {"shift": 1, "rotate": 15.0, "scale": 0.1, "flip": True}}


def data(n: int, shape: tuple[int, ...], seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images and labels that depend on them (learnable, not constant)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = (images.reshape(n, -1)[:, :8].sum(axis=1) % 10).astype(np.int64)
    return images, labels


def lenet() -> Model:
    net, shape = zoo.build("lenet5", rng=np.random.default_rng(0))
    return Model(net, shape, [str(i) for i in range(10)])


def bn_net() -> Model:
    rng = np.random.default_rng(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, rng=rng), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(36, 16, rng=rng), nn.BatchNorm1d(16), nn.ReLU(),
        nn.Linear(16, 10, rng=rng),
    )  # fmt: skip
    return Model(net, (1, 8, 8), [str(i) for i in range(10)])


def bn_textbook_net() -> Model:
    """:func:`bn_net` on the textbook (clearconv.functional) layers."""
    model = bn_net()
    nn.use_textbook(model.net)
    return model


def train(make, setup: dict, shape, dist: Distributed | None = None, **kw) -> Model:
    model = make()
    settings = {k: v for k, v in setup.items() if k != "n"}
    fit(model, data(setup["n"], shape), progress=False, distributed=dist, **settings, **kw)
    return model


def main(scenario: str, out: Path, checkpoint: str | None = None) -> None:
    dist = Distributed(sync_batchnorm=True)
    result: dict[str, np.ndarray] = {}
    if scenario == "train":
        for name, model in (
            ("lenet", dist.run(train, lenet, LENET, (1, 28, 28), dist)),
            ("bn", dist.run(train, bn_net, BN, (1, 8, 8), dist)),
        ):
            result.update({f"{name}.{k}": v for k, v in model.state_dict().items()})
        images, labels = data(101, (1, 8, 8), seed=2)
        r = dist.evaluate(model, images, labels, batch_size=16)
        result["eval.confusion"], result["eval.loss"] = r["confusion"], np.array(r["loss"])
        # Dropout: rank 1 draws its own masks, not a copy of rank 0's.
        drop = Model(nn.Sequential(nn.Flatten(), nn.Dropout(0.5, rng=np.random.default_rng(3))),
                     (1, 8, 8), [str(i) for i in range(64)])  # fmt: skip
        with dist.attached(drop):
            mask = drop(np.ones((4, 1, 8, 8), np.float32), training=True)
        result["dropout.masks"] = np.stack(dist.comm.gather(mask, root=0) or [mask])
    elif scenario == "resume":
        model = dist.run(
            train, lenet, RESUME, (1, 28, 28), dist, checkpoint=checkpoint, resume=True
        )
        result.update(model.state_dict())
    elif scenario == "augment":
        model = dist.run(train, bn_net, AUGMENT, (1, 8, 8), dist)
        result.update(model.state_dict())
    elif scenario == "textbook":
        model = dist.run(train, bn_textbook_net, BN, (1, 8, 8), dist)
        result.update(model.state_dict())
    elif scenario == "fail":

        def step() -> None:
            if dist.rank == 1:
                raise ValueError("this rank failed on purpose")
            dist.average_gradients([], 1.0)  # rank 0 waits for rank 1 in a reduction

        dist.run(step)
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    if dist.is_root:
        np.savez(out / f"{scenario}.npz", size=np.array(dist.size), **result)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), *sys.argv[3:])
