"""CrossEntropyLoss and MSELoss: values, gradients, stability, PyTorch parity, errors."""

import numpy as np
import pytest

from clearconv.nn import CrossEntropyLoss, MSELoss
from gradcheck import numerical_grad


def labels_for(rng, n, c):
    return rng.integers(0, c, size=n)


# -- gradient checks (float64) ------------------------------------------------------------
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy_gradcheck(smoothing, rng):
    ce = CrossEntropyLoss(label_smoothing=smoothing)
    logits = rng.standard_normal((5, 4)) * 2
    labels = labels_for(rng, 5, 4)
    ce(logits, labels)
    analytic = ce.backward()
    numeric = numerical_grad(lambda: float(ce(logits, labels)), logits)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_mse_gradcheck(rng):
    mse = MSELoss()
    pred, target = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    mse(pred, target)
    analytic = mse.backward()
    numeric = numerical_grad(lambda: float(mse(pred, target)), pred)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


def test_backward_scales_with_grad_out(rng):
    ce = CrossEntropyLoss()
    ce(rng.standard_normal((3, 4)), np.array([0, 1, 2]))
    np.testing.assert_allclose(ce.backward(2.5), 2.5 * ce.backward())


# -- PyTorch parity ---------------------------------------------------------------------------
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_cross_entropy_torch_parity(smoothing, dtype, scale, rng):
    torch = pytest.importorskip("torch")
    logits = (rng.standard_normal((16, 10)) * scale).astype(dtype)
    labels = labels_for(rng, 16, 10)
    ce = CrossEntropyLoss(label_smoothing=smoothing)
    loss = ce(logits, labels)
    grad = ce.backward()
    lt = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.CrossEntropyLoss(label_smoothing=smoothing)(lt, torch.tensor(labels))
    ref.backward()
    assert isinstance(loss, np.generic) and loss.dtype == dtype and grad.dtype == dtype
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, lt.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mse_torch_parity(dtype, rng):
    torch = pytest.importorskip("torch")
    pred = rng.standard_normal((4, 3, 2)).astype(dtype)
    target = rng.standard_normal((4, 3, 2)).astype(dtype)
    mse = MSELoss()
    loss = mse(pred, target)
    grad = mse.backward()
    pt = torch.tensor(pred, requires_grad=True)
    ref = torch.nn.MSELoss()(pt, torch.tensor(target))
    ref.backward()
    assert isinstance(loss, np.generic) and loss.dtype == dtype and grad.dtype == dtype
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-6)
    np.testing.assert_allclose(grad, pt.grad.numpy(), rtol=1e-6, atol=1e-7)


# -- golden values and stability -------------------------------------------------------------------
def test_cross_entropy_golden():
    ce = CrossEntropyLoss()
    loss = ce(np.zeros((2, 4), dtype=np.float32), np.array([0, 3]))
    np.testing.assert_allclose(loss, np.log(4), rtol=1e-6)
    np.testing.assert_allclose(
        ce.backward(), [[-0.375, 0.125, 0.125, 0.125], [0.125, 0.125, 0.125, -0.375]], rtol=1e-6
    )
    # label smoothing 1.0 makes the target uniform: uniform logits give zero gradient
    ce1 = CrossEntropyLoss(label_smoothing=1.0)
    ce1(np.zeros((2, 4)), np.array([1, 2]))
    np.testing.assert_allclose(ce1.backward(), 0.0, atol=1e-15)


def test_cross_entropy_huge_logits_finite():
    ce = CrossEntropyLoss(label_smoothing=0.1)
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype=np.float32)
    loss = ce(logits, np.array([0, 0]))
    grad = ce.backward()
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert loss > 1e3  # the second sample is confidently wrong
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-6)  # rows of p - q sum to 0


def test_unsigned_and_int32_labels_accepted():
    ce = CrossEntropyLoss()
    x = np.zeros((2, 3))
    assert ce(x, np.array([0, 2], dtype=np.uint8)) == ce(x, np.array([0, 2], dtype=np.int32))


# -- errors and repr ------------------------------------------------------------------
def test_cross_entropy_errors():
    ce = CrossEntropyLoss()
    x = np.zeros((3, 4), dtype=np.float32)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 3\] for 4 classes, got 4"):
        ce(x, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"got -1"):
        ce(x, np.array([0, -1, 1]))
    with pytest.raises(TypeError, match="expected integer class labels, got dtype float32"):
        ce(x, np.array([0, 1, 1], dtype=np.float32))
    with pytest.raises(ValueError, match=r"expected labels of shape \(3,\) .*got \(3, 1\)"):
        ce(x, np.zeros((3, 1), dtype=np.int64))
    with pytest.raises(ValueError, match=r"expected logits of shape \(N, C\) .*got \(4,\)"):
        ce(x[0], np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"labels of shape \(3, 1\) for logits .*got \(3,\)"):
        ce(
            x[..., None], np.zeros(3, dtype=np.int64)
        )  # per-position logits need per-position labels
    with pytest.raises(TypeError, match="expected logits of dtype float32 or float64, got int64"):
        ce(np.zeros((3, 4), dtype=np.int64), np.zeros(3, dtype=np.int64))
    with pytest.raises(TypeError, match="expected labels as an array, got list"):
        ce(x, [0, 1, 2])
    with pytest.raises(RuntimeError, match="backward called before forward"):
        CrossEntropyLoss().backward()
    with pytest.raises(ValueError, match=r"label_smoothing must be <= 1\.0, got 1\.5"):
        CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(TypeError, match="label_smoothing must be a number"):
        CrossEntropyLoss(label_smoothing="0.1")


def test_mse_errors():
    mse = MSELoss()
    with pytest.raises(
        ValueError,
        match=r"expected target of the same shape as pred \(2, 3\), "
        r"got \(3, 2\)",
    ):
        mse(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="expected target of dtype float32 or float64, got int64"):
        mse(np.zeros(3), np.zeros(3, dtype=np.int64))
    with pytest.raises(RuntimeError, match="backward called before forward"):
        MSELoss().backward()


def test_mse_target_cast_to_pred_dtype():
    mse = MSELoss()
    loss = mse(np.ones(4, dtype=np.float32), np.zeros(4, dtype=np.float64))
    assert loss.dtype == np.float32 and mse.backward().dtype == np.float32


def test_repr():
    assert repr(CrossEntropyLoss()) == "CrossEntropyLoss()"
    assert repr(CrossEntropyLoss(label_smoothing=0.1)) == "CrossEntropyLoss(label_smoothing=0.1)"
    assert repr(MSELoss()) == "MSELoss()"


# -- per-pixel cross-entropy: class weights, ignore_index, label smoothing ------------------
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [None, 255, -100, 1])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_per_pixel_torch_parity(weighted, ignore, smoothing, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    n, c, h, w = 2, 4, 3, 5
    logits = (rng.standard_normal((n, c, h, w)) * 3).astype(dtype)
    labels = rng.integers(0, c, (n, h, w))
    if ignore is not None:
        labels[rng.random((n, h, w)) < 0.3] = ignore
    weight = rng.uniform(0.2, 2.0, c) if weighted else None
    kwargs = {"label_smoothing": smoothing}
    if ignore is not None:
        kwargs["ignore_index"] = ignore
    ce = CrossEntropyLoss(weight=weight, **kwargs)
    loss = ce(logits, labels)
    grad = ce.backward()
    tw = None if weight is None else torch.tensor(weight, dtype=torch.float64)
    ref = torch.nn.CrossEntropyLoss(weight=tw, **kwargs)
    lt = torch.tensor(logits.astype(np.float64), requires_grad=True)
    out = ref(lt, torch.tensor(labels))
    out.backward()
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss.dtype == dtype and grad.dtype == dtype and grad.shape == logits.shape
    np.testing.assert_allclose(float(loss), out.item(), rtol=tol, atol=tol)
    np.testing.assert_allclose(grad, lt.grad.numpy(), rtol=tol, atol=tol)


def test_cross_entropy_per_pixel_gradcheck_and_loop():
    rng = np.random.default_rng(6)
    logits = rng.standard_normal((2, 3, 2, 2))
    labels = np.array([[[0, 2], [1, -100]], [[2, 2], [0, 1]]])
    weight = np.array([0.5, 1.0, 2.0])
    ce = CrossEntropyLoss(weight=weight, label_smoothing=0.1)
    ce(logits, labels)
    analytic = ce.backward()
    numeric = numerical_grad(lambda: float(ce(logits, labels)), logits)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)
    # a loop over the kept pixels, straight from the formula
    num = den = 0.0
    for i in range(2):
        for y in range(2):
            for x in range(2):
                t = labels[i, y, x]
                if t == -100:
                    continue
                z = logits[i, :, y, x]
                logp = z - np.log(np.exp(z).sum())
                num += 0.9 * weight[t] * -logp[t] + 0.1 / 3 * np.sum(weight * -logp)
                den += weight[t]
    np.testing.assert_allclose(float(ce(logits, labels)), num / den, rtol=1e-12)


def test_cross_entropy_per_pixel_errors():
    x = np.zeros((1, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"labels of shape \(1, 2, 2\) .*got \(1, 2\)"):
        CrossEntropyLoss()(x, np.zeros((1, 2), np.int64))
    with pytest.raises(ValueError, match=r"in \[0, 2\] for 3 classes, got 7 \(or -100, ignored\)"):
        CrossEntropyLoss()(x, np.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="weight has 2 values for 3 classes"):
        CrossEntropyLoss(weight=[1.0, 2.0])(x, np.zeros((1, 2, 2), np.int64))
    with pytest.raises(ValueError, match="weight must be a 1-D array of C non-negative"):
        CrossEntropyLoss(weight=[1.0, -2.0])
    assert np.isnan(CrossEntropyLoss(ignore_index=0)(x, np.zeros((1, 2, 2), np.int64)))
    assert repr(CrossEntropyLoss(ignore_index=255)) == "CrossEntropyLoss(ignore_index=255)"


def test_cross_entropy_per_pixel_textbook_switch_gives_the_engine_results():
    from clearconv.nn import use_textbook

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 3, 5)).astype(np.float32)
    y = rng.integers(0, 4, (2, 3, 5))
    y[1, 0, :2] = 7  # ignored
    fast = CrossEntropyLoss([1.0, 0.5, 2.0, 1.0], ignore_index=7, label_smoothing=0.1)
    slow = use_textbook(CrossEntropyLoss([1.0, 0.5, 2.0, 1.0], ignore_index=7, label_smoothing=0.1))
    np.testing.assert_allclose(slow(x, y), fast(x, y), rtol=1e-6)
    np.testing.assert_allclose(slow.backward(0.5), fast.backward(0.5), rtol=1e-5, atol=1e-7)
