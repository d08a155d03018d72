"""The benchmarks' PyTorch twins of the zoo's classics compute what clearconv's nets do,
and their rows reach BENCHMARKS.md."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks.models import ZOO, build_clearconv, build_torch


@pytest.mark.parametrize("name", ZOO)
def test_torch_twin_matches_the_clearconv_net_on_a_224_image(name):
    torch = pytest.importorskip("torch")
    from clearconv import nn

    net = build_clearconv(name)
    rng = np.random.default_rng(1)
    # He-initialised convolutions keep the signal alive through the depth (PyTorch's
    # default init shrinks it layer by layer until the biases alone decide the logits);
    # BatchNorm as after training, not the identity
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight.data[0].size
            m.weight.data[...] = rng.normal(0, np.sqrt(2 / fan_in), m.weight.shape)
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean[...] = rng.normal(0, 0.1, c)
            m.running_var[...] = rng.uniform(0.5, 1.5, c)
            m.weight.data[...] = rng.uniform(0.5, 1.5, c)
            m.bias.data[...] = rng.normal(0, 0.1, c)
    twin = build_torch(name, like=net).eval()
    assert sum(p.numel() for p in twin.parameters()) == sum(p.size for p in net.parameters())
    x = rng.standard_normal((2, 3, 224, 224), dtype=np.float32)
    x[1] = 3 * x[1] + 1  # global pooling averages noise away: make the second image unlike
    with torch.inference_mode():
        expected = twin(torch.from_numpy(x)).numpy()
        features = twin[:-1](torch.from_numpy(x)).numpy()  # what the classifier reads
    got = net(x)
    assert got.shape == expected.shape == (2, 1000)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    got_features = net[:-1](x)
    scale = np.abs(features).max()
    np.testing.assert_allclose(got_features, features, rtol=1e-4, atol=1e-4 * scale)
    assert np.abs(features[0] - features[1]).max() > 0.1 * scale  # the two images differ


def test_the_report_has_a_row_per_zoo_model_and_batch():
    pytest.importorskip("threadpoolctl")
    from benchmarks import run

    one = {"clearconv": 0.02, "torch": 0.01, "paired": 0.5}
    big = {"clearconv": 0.4, "torch": 0.1, "paired": 0.25}
    res = {"ceiling1": 10.0, "ceiling": 20.0, "train": {}, "infer": {},
           "zoo": {("googlenet", 32): big, ("googlenet", 1): one},
           "flops": {"googlenet": 3.0e9}, "layers": [], "memory": {}, "scaling": None,
           "steal": [], "retried": 0}  # fmt: skip
    info = {"date": "d", "cpu": "c", "python": "p", "numpy": "n", "torch": "t", "clearconv": "v"}
    md = run.markdown(info, 2, res, "cmd", repeats=3)
    assert "## Inference of the zoo's branched classics (3x224x224, eval mode)" in md
    # 32 / 0.4 s = 80 images/s; 20 ms; 3 GFLOP x 32 / 0.4 s = 240 GFLOP/s, 1200% of 20
    assert "| googlenet | 80.0 | 320.0 | 0.25 | 20.0 | 10.0 | 0.50 | 240 (1200%) |" in md
