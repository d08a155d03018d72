"""The PyTorch side of the segmentation benchmark: a plain U-Net on a segmentation folder.

Usage::

    python -m clearconv.data.shapes /tmp/shapes            # 600 train / 150 test scenes
    python -m benchmarks.segmentation_torch /tmp/shapes [--epochs 30] [--threads 2]

The U-Net is the zoo's ``unet`` written in PyTorch (4 levels of 16-32-64-128
channels and a bottom of 256 (``--bottom``), two conv-BN-ReLU each, 2x2 max
pooling, 2x2 stride-2 transposed convolutions, skips concatenated), trained as
the issue describes: Adam
1e-3, batch 16, no augmentation, inputs scaled to [0, 1] and normalised by
the training set's channel means and deviations. Prints the test mean IoU
after every epoch and one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def load(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    files = sorted((root / split / "images").glob("*.png"))
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    masks = np.stack([np.asarray(Image.open(root / split / "masks" / f.name)) for f in files])
    return images.transpose(0, 3, 1, 2), masks.astype(np.int64)


def unet(k: int, widths=(16, 32, 64, 128), bottom=256):
    import torch
    from torch import nn

    def cbr(cin: int, c: int) -> list:
        return [
            nn.Conv2d(cin, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
        ]  # fmt: skip

    class Level(nn.Module):
        def __init__(self, cin: int, i: int) -> None:
            super().__init__()
            c = widths[i]
            self.enc = nn.Sequential(*cbr(cin, c))
            last = i + 1 == len(widths)
            deeper = nn.Sequential(*cbr(c, bottom)) if last else Level(c, i + 1)
            c_deep = bottom if last else widths[i + 1]
            self.down_up = nn.Sequential(
                nn.MaxPool2d(2), deeper, nn.ConvTranspose2d(c_deep, c, 2, stride=2)
            )
            self.dec = nn.Sequential(*cbr(2 * c, c))

        def forward(self, x):
            x = self.enc(x)
            return self.dec(torch.cat([x, self.down_up(x)], 1))

    return nn.Sequential(Level(3, 0), nn.Conv2d(widths[0], k, 1))


def mean_iou(pred: np.ndarray, target: np.ndarray, k: int) -> float:
    m = np.bincount(target.ravel() * k + pred.ravel(), minlength=k * k).reshape(k, k)
    tp = np.diag(m).astype(float)
    union = m.sum(0) + m.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]))


def main() -> None:
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("folder")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bottom", type=int, default=256, help="channels below the last pool")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    root = Path(args.folder)
    xtr, ytr = load(root, "train")
    xte, yte = load(root, "test")
    k = len((root / "classes.txt").read_text().split())
    mean = (xtr / 255).mean(axis=(0, 2, 3), keepdims=True)
    std = (xtr / 255).std(axis=(0, 2, 3), keepdims=True)

    def prep(x):
        return torch.tensor(((x / 255 - mean) / std).astype(np.float32))

    net = unet(k, bottom=args.bottom)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    history = []
    for epoch in range(args.epochs):
        net.train()
        order = rng.permutation(len(xtr))
        for idx in (order[i : i + 16] for i in range(0, len(order), 16)):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(net(prep(xtr[idx])), torch.tensor(ytr[idx]))
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            pred = torch.cat([net(prep(xte[i : i + 64])).argmax(1) for i in range(0, len(xte), 64)])
        miou = mean_iou(pred.numpy(), yte, k)
        history.append(miou)
        print(
            f"epoch {epoch + 1:>3}  test mean IoU {miou:.4f}  {time.perf_counter() - start:.1f} s"
        )
    wall = time.perf_counter() - start
    print(json.dumps({"framework": "torch", "epochs": args.epochs, "test_mean_iou": history[-1],
                      "best_mean_iou": max(history), "seconds": round(wall, 1)}))  # fmt: skip


if __name__ == "__main__":
    main()
