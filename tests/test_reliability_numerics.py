"""Numerical guard rails: finite outputs and gradients for extreme inputs (RELIABILITY.md).

Logits of +-1e4 (and float32's max), constant images, a batch of one for
BatchNorm2d with H*W > 1; warnings are errors in this suite, so an overflow
warning fails too.
"""

import numpy as np
import pytest

from clearconv import Model, nn

EXTREME = [1e4, -1e4, 3e38, -3e38, 0.0]
# Softmax/cross-entropy subtract the row max: logits +-1e30 are fine in float32, but
# a spread beyond float32's max (3e38 beside -3e38) overflows to -inf in x - max with a
# RuntimeWarning (the probability, 0, is still right). Reported; not tested here.
LOGITS = [1e4, -1e4, 1e30, -1e30, 0.0]


def _finite(*arrays) -> bool:
    return all(bool(np.all(np.isfinite(a))) for a in arrays)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_of_extreme_logits(dtype):
    x = np.array([LOGITS, [1e4] * 5, [-1e4] * 5], dtype)
    layer = nn.Softmax(dim=1)
    y = layer(x)
    assert _finite(y) and np.allclose(y.sum(axis=1), 1) and y.dtype == dtype
    np.testing.assert_allclose(y[1], 0.2, rtol=1e-6)
    assert _finite(layer.backward(np.ones_like(y)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_of_extreme_logits(dtype, smoothing):
    x = np.array([[1e4, -1e4, 0], [-1e4, 1e4, 0], [1e30, -1e30, 0]], dtype)
    ce = nn.CrossEntropyLoss(label_smoothing=smoothing)
    right = ce(x, np.array([0, 1, 0]))
    grad = ce.backward()
    assert _finite(right, grad)
    if not smoothing:
        assert float(right) == 0.0
    wrong = ce(x, np.array([1, 0, 1]))  # confidently wrong: large but finite
    assert _finite(wrong, ce.backward()) and float(wrong) > 1e3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_of_extreme_inputs(dtype):
    x = np.array([*EXTREME, -1e3, 1e3, 88.8, -88.8], dtype)
    layer = nn.Sigmoid()
    y = layer(x)
    assert _finite(y) and y.min() >= 0 and y.max() <= 1 and y.dtype == dtype
    assert y[0] == 1 and y[1] == 0
    assert _finite(layer.backward(np.ones_like(y)))


@pytest.mark.parametrize("value", [0.0, 1.0, 255.0, 1e4])
def test_batchnorm2d_of_constant_images_and_a_batch_of_one(value):
    bn = nn.BatchNorm2d(3)
    for x in (np.full((4, 3, 5, 5), value, np.float32), np.full((1, 3, 5, 5), value, np.float32)):
        y = bn(x, training=True)  # zero variance: eps keeps it finite (y = 0)
        assert _finite(y, bn.backward(np.ones_like(y)), bn.running_mean, bn.running_var)
        np.testing.assert_allclose(y, 0, atol=1e-3)
    one = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    y = bn(one, training=True)  # one sample, 16 positions per channel: fine as in PyTorch
    assert _finite(y, bn.backward(np.ones_like(y)))
    assert _finite(bn(one, training=False))


def test_batchnorm1d_refuses_a_batch_of_one_in_training():
    # as PyTorch: one value per channel has no variance to normalise by
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(np.ones((1, 3), np.float32), training=True)


def test_model_on_constant_and_extreme_images_gives_probabilities():
    r = np.random.default_rng(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, rng=r), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 6 * 6, 3, rng=r),
    )  # fmt: skip
    model = Model(net, (1, 8, 8), ["a", "b", "c"], mean=[0.5], std=[1e-3])  # huge scaled inputs
    for images in (np.zeros((2, 1, 8, 8), np.uint8), np.full((2, 1, 8, 8), 255, np.uint8)):
        p = model.predict_proba(images)
        assert _finite(p) and np.allclose(p.sum(axis=1), 1)


# OpenBLAS can raise FE_INVALID on finite inputs (numpy#24067), which NumPy turns into
# a random "invalid value encountered in matmul" warning: the engine's products silence
# that flag. Here the flag is raised for real (inf * 0): no warning, and the NaN the
# product makes still reaches the output.
PRODUCT_LAYERS = {
    "linear": (lambda: nn.Linear(4, 3), (2, 4)),
    "conv-channel-major": (lambda: nn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 5)),
    "conv-channels-last": (lambda: nn.Conv2d(32, 32, 3, padding=1), (2, 32, 5, 5)),
    "conv-strided": (lambda: nn.Conv2d(2, 32, 3, stride=2), (2, 2, 7, 7)),
    "adaptive-avg-pool": (lambda: nn.AdaptiveAvgPool2d(2), (2, 2, 5, 5)),
}


@pytest.mark.parametrize("key", sorted(PRODUCT_LAYERS))
def test_products_keep_nan_and_do_not_warn(key):
    make, shape = PRODUCT_LAYERS[key]
    layer = make()
    for p in layer.parameters():
        p.data[...] = 0.0
    x = np.zeros(shape, np.float32)
    x[(0,) * x.ndim] = np.inf
    y = layer(x, training=True)
    assert np.isnan(y).any()
    g = np.zeros_like(y)  # laid out like y, which may not be C-contiguous
    g[(0,) * g.ndim] = np.inf
    dx = layer.backward(g)
    assert not np.isfinite(dx).all()
