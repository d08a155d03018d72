"""Small variants of the branched classics, written as architecture files, trained from the
command line on a folder of colour images (issue 20: "a small variant of the same design
trains on a colour image folder")."""

from __future__ import annotations

import json

import numpy as np
import pytest

import clearconv
from clearconv import nn, zoo
from clearconv.cli import main

Image = pytest.importorskip("PIL.Image", reason="Pillow (the cli extra) reads the images")

DESIGNS = {
    "googlenet": [*zoo._bconv(8, 3, padding=1), zoo._pool(2, 2),
                  zoo._inception(4, 4, 8, 2, 4, 4), zoo.GLOBAL_POOL, zoo.FLATTEN, zoo._linear(2)],
    "squeezenet": [zoo._conv(8, 3, padding=1), zoo.RELU, zoo._pool(2, 2), *zoo._fire(4, 8, 8),
                   zoo._conv(2, 1), zoo.GLOBAL_POOL, zoo.FLATTEN],
    "densenet": [zoo._conv(8, 3, padding=1, bias=False),
                 *zoo._densenet121(2, growth=4, blocks=(2, 2), width=8)[4:]],
    "resnet50": [zoo._conv(8, 3, padding=1, bias=False), zoo.BN, zoo.RELU,
                 *zoo._bottleneck(4, 2, project=True), *zoo._bottleneck(4, 1, project=False),
                 zoo.GLOBAL_POOL, zoo.FLATTEN, zoo._linear(2)],
}  # fmt: skip


@pytest.fixture(scope="module")
def colour_stripes(tmp_path_factory):
    """60 colour images a class: stripes across or down, in a random colour, with noise."""
    root = tmp_path_factory.mktemp("colour") / "stripes"
    rng = np.random.default_rng(0)
    for kind in ("across", "down"):
        (root / kind).mkdir(parents=True)
        for i in range(60):
            n = int(rng.integers(20, 33))
            band = (np.arange(n) // 2) % 2 == 0
            mask = np.zeros((n, n), bool)
            if kind == "across":
                mask[band, :] = True
            else:
                mask[:, band] = True
            colour = rng.integers(80, 256, 3)
            a = rng.integers(0, 50, (n, n, 3))
            a[mask] = colour
            Image.fromarray(a.astype(np.uint8)).save(root / kind / f"{i:02d}.png")
    return root


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_a_small_variant_trains_on_a_colour_folder(design, colour_stripes, tmp_path, capsys):
    arch = tmp_path / f"{design}.json"
    arch.write_text(json.dumps({"input_shape": [3, 24, 24], "layers": DESIGNS[design]}))
    out = tmp_path / "m.npz"
    code = main(["train", "--model", str(arch), "--data", str(colour_stripes), "--epochs", "12",
                 "--lr", "0.003", "--out", str(out), "-q"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    model = clearconv.load(out)
    merges = [m for m in model.net.modules() if isinstance(m, (nn.Concat, nn.Add, nn.Residual))]
    assert merges, "the saved model keeps its branches"
    assert model.meta["test_accuracy"] >= 0.85, model.meta["test_accuracy"]
