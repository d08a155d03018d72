"""The textbook (clearconv.functional) against torch.nn.functional, forward and backward, float64.

Every function is run on the same float64 arrays as its PyTorch namesake;
the backward is compared with torch autograd's gradients for a random
upstream gradient. Convolution and pooling geometry is drawn by hypothesis.
"""

import ast
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import clearconv.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

TEXTBOOK = Path(__file__).resolve().parents[1] / "src" / "clearconv" / "functional"
# Docstrings and doctests included (tinygrad's habit): a learner reads it in one sitting.
LINE_BUDGET = 1000
# torch's note that it pads a copy for 'same' with an even kernel: a fact, not a fault.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def test_textbook_stays_within_its_line_budget():
    files = sorted(TEXTBOOK.glob("*.py"))
    lines = sum(len(f.read_text().splitlines()) for f in files)
    assert len(files) >= 7
    assert lines <= LINE_BUDGET, f"clearconv/functional is {lines} lines, over {LINE_BUDGET}"


# What the textbook may import (at any depth, not only at the top of a file).
_TEXTBOOK_IMPORTS = ("__future__", "typing", "numpy", "clearconv.functional")
# Words of the engine's machinery: threads, kept buffers, tuning.
_ENGINE_WORDS = re.compile(
    r"thread|workspace|resultpool|engine|tuning|getrefcount|\bglobal\b", re.IGNORECASE
)


def _code_names(tree):
    """Every identifier and attribute name in ``tree`` (comments and docstrings left out)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.id
        elif isinstance(node, ast.Attribute):
            yield node.attr
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            yield node.name
        elif isinstance(node, ast.arg):
            yield node.arg
        elif isinstance(node, ast.Global | ast.Nonlocal):
            yield "global"


def _engine_faults(source: str) -> list[str]:
    """What in ``source`` belongs to the engine: imports, out= buffers, machinery, module state."""
    tree = ast.parse(source)
    faults = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            for mod in mods:
                if not any(mod == m or str(mod).startswith(m + ".") for m in _TEXTBOOK_IMPORTS):
                    faults.append(f"line {node.lineno} imports {mod}")
        # a result written into a buffer passed in (NumPy's out=)
        if isinstance(node, ast.Call) and any(k.arg == "out" for k in node.keywords):
            faults.append(f"line {node.lineno} writes into out=")
    names = sorted({n for n in _code_names(tree) if _ENGINE_WORDS.search(n)})
    if names:
        faults.append(f"names engine machinery: {names}")
    # module state: only constants, tuples of them, type aliases and __all__ at the top
    for node in tree.body:
        targets = [t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)]
        if (
            isinstance(node, ast.Assign | ast.AnnAssign)
            and targets != ["__all__"]
            and not isinstance(node.value, ast.Constant | ast.Tuple | ast.Subscript)
        ):
            faults.append(f"line {node.lineno} holds module state")
    return faults


def test_textbook_knows_nothing_of_the_engine():
    files = sorted(TEXTBOOK.glob("*.py"))
    assert len(files) >= 7
    faults = [f"{f.name}: {x}" for f in files for x in _engine_faults(f.read_text("utf-8"))]
    assert not faults, "; ".join(faults)


def test_the_engine_check_sees_threads_buffers_and_state():
    bad = (
        "import numpy as np\n"
        "_CACHE = {}\n"
        "def f(x, y):\n"
        "    import threading\n"
        "    from clearconv.engine import DEFAULT\n"
        "    np.matmul(x, x, out=y)\n"
        "    return threading.Lock()\n"
    )
    faults = _engine_faults(bad)
    assert any("imports threading" in x for x in faults)
    assert any("imports clearconv.engine" in x for x in faults)
    assert any("out=" in x for x in faults)
    assert any("names engine machinery" in x and "threading" in x for x in faults)
    assert any("line 2 holds module state" in x for x in faults)
    assert _engine_faults("from numpy.lib.stride_tricks import sliding_window_view\n") == []


def _t(a, grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def _close(a, b, tol=1e-10):
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    np.testing.assert_allclose(np.asarray(a), b, rtol=tol, atol=tol)


def _torch_run(fn, arrays, g_seed=1):
    """Torch's forward of ``fn`` on ``arrays`` and its gradients for a random dy."""
    ts = [_t(a, grad=a is not None and np.ndim(a) > 0) if a is not None else None for a in arrays]
    y = fn(*ts)
    dy = np.random.default_rng(g_seed).standard_normal(tuple(y.shape))
    y.backward(_t(dy))
    return y, dy, [None if t is None else t.grad for t in ts]


# -- convolution -------------------------------------------------------------------


@st.composite
def conv_geometry(draw, nd=2):
    groups = draw(st.sampled_from([1, 2, 3]))
    cg, og = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    d = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    same = draw(st.booleans()) and draw(st.booleans())
    s = (1,) * nd if same else tuple(draw(st.integers(1, 3)) for _ in range(nd))
    p = "same" if same else tuple(draw(st.integers(0, 2)) for _ in range(nd))
    size = tuple(
        draw(st.integers(max(1, dd * (kk - 1) + 1 - (0 if same else 2 * pp)), 8))
        for kk, dd, pp in zip(k, d, (0,) * nd if same else p)
    )
    n = draw(st.integers(1, 2))
    return n, groups, cg, og, k, s, p, d, size, draw(st.booleans())


@settings(max_examples=40, deadline=None)
@given(conv_geometry())
def test_conv2d_matches_torch(case):
    n, g, cg, og, k, s, p, d, size, bias = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, g * cg, *size))
    w = rng.standard_normal((g * og, cg, *k))
    b = rng.standard_normal(g * og) if bias else None
    y, dy, (dx, dw, db) = _torch_run(
        lambda x_, w_, b_: TF.conv2d(x_, w_, b_, s, p, d, g), [x, w, b]
    )
    _close(F.conv2d(x, w, b, s, p, d, g), y)
    gx, gw, gb = F.conv2d_backward(dy, x, w, s, p, d, g)
    _close(gx, dx)
    _close(gw, dw)
    if bias:
        _close(gb, db)


@settings(max_examples=25, deadline=None)
@given(conv_geometry(nd=1))
def test_conv1d_matches_torch(case):
    n, g, cg, og, k, s, p, d, size, bias = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, g * cg, *size))
    w = rng.standard_normal((g * og, cg, *k))
    b = rng.standard_normal(g * og) if bias else None
    p1 = p if isinstance(p, str) else p[0]
    y, dy, (dx, dw, db) = _torch_run(
        lambda x_, w_, b_: TF.conv1d(x_, w_, b_, s[0], p1, d[0], g), [x, w, b]
    )
    _close(F.conv1d(x, w, b, s[0], p1, d[0], g), y)
    gx, gw, gb = F.conv1d_backward(dy, x, w, s[0], p1, d[0], g)
    _close(gx, dx)
    _close(gw, dw)
    if bias:
        _close(gb, db)


def test_conv2d_depthwise_and_valid_padding():
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((8, 1, 3, 3))
    y, dy, (dx, dw) = _torch_run(lambda a, b: TF.conv2d(a, b, groups=4, padding="valid"), [x, w])
    _close(F.conv2d(x, w, groups=4, padding="valid"), y)
    gx, gw, _ = F.conv2d_backward(dy, x, w, groups=4, padding="valid")
    _close(gx, dx)
    _close(gw, dw)


def test_conv2d_rejects_channels_that_do_not_fit_the_groups():
    with pytest.raises(ValueError, match="groups=2"):
        F.conv2d(np.zeros((1, 3, 4, 4)), np.zeros((2, 1, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="stride 1"):
        F.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), stride=2, padding="same")


# -- pooling -------------------------------------------------------------------------


@st.composite
def pool_geometry(draw, nd=2, dilation=True):
    k = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    d = tuple(draw(st.integers(1, 2)) if dilation else 1 for _ in range(nd))
    p = tuple(draw(st.integers(0, kk // 2)) for kk in k)  # torch's bound
    size = tuple(
        draw(st.integers(max(1, dd * (kk - 1) + 1 - 2 * pp), 8)) for kk, dd, pp in zip(k, d, p)
    )
    return draw(st.integers(1, 2)), draw(st.integers(1, 2)), k, s, p, d, size, draw(st.booleans())


@settings(max_examples=40, deadline=None)
@given(pool_geometry())
def test_max_pool2d_matches_torch(case):
    n, c, k, s, p, d, size, ceil = case
    # Distinct values, so that which one wins each window is never a tie of rounding.
    x = np.random.default_rng(0).permutation(n * c * size[0] * size[1]).reshape(n, c, *size) / 7.0
    # A dilated window may fall wholly on the padding: -inf, and torch's backward
    # then writes outside the input's memory (it corrupted the heap here). Not a
    # window anyone pools over on purpose, so such cases are left out before torch runs.
    assume(bool(np.isfinite(F.max_pool2d(x, k, s, p, d, ceil)).all()))
    y, dy, (dx,) = _torch_run(lambda a: TF.max_pool2d(a, k, s, p, d, ceil), [x])
    _close(F.max_pool2d(x, k, s, p, d, ceil), y)
    _close(F.max_pool2d_backward(dy, x, k, s, p, d, ceil), dx)


def test_max_pool2d_routes_ties_to_the_first_maximum():
    x = np.zeros((1, 1, 4, 4))
    y, dy, (dx,) = _torch_run(lambda a: TF.max_pool2d(a, 3, 1, 1), [x])
    _close(F.max_pool2d_backward(dy, x, 3, 1, 1), dx)


@settings(max_examples=40, deadline=None)
@given(pool_geometry(dilation=False), st.booleans())
def test_avg_pool2d_matches_torch(case, count_pad):
    n, c, k, s, p, _, size, ceil = case
    x = np.random.default_rng(0).standard_normal((n, c, *size))
    y, dy, (dx,) = _torch_run(lambda a: TF.avg_pool2d(a, k, s, p, ceil, count_pad), [x])
    _close(F.avg_pool2d(x, k, s, p, ceil, count_pad), y)
    _close(F.avg_pool2d_backward(dy, x.shape, k, s, p, ceil, count_pad), dx)


@settings(max_examples=25, deadline=None)
@given(pool_geometry(nd=1), st.booleans())
def test_pool1d_matches_torch(case, count_pad):
    n, c, (k,), (s,), (p,), (d,), size, ceil = case
    x = np.random.default_rng(0).permutation(n * c * size[0]).reshape(n, c, *size) / 3.0
    assume(bool(np.isfinite(F.max_pool1d(x, k, s, p, d, ceil)).all()))  # see max_pool2d's
    y, dy, (dx,) = _torch_run(lambda a: TF.max_pool1d(a, k, s, p, d, ceil), [x])
    _close(F.max_pool1d(x, k, s, p, d, ceil), y)
    _close(F.max_pool1d_backward(dy, x, k, s, p, d, ceil), dx)
    y, dy, (dx,) = _torch_run(lambda a: TF.avg_pool1d(a, k, s, p, ceil, count_pad), [x])
    _close(F.avg_pool1d(x, k, s, p, ceil, count_pad), y)
    _close(F.avg_pool1d_backward(dy, x.shape, k, s, p, ceil, count_pad), dx)


def test_pool_stride_defaults_to_the_kernel():
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6))
    _close(F.max_pool2d(x, 2), TF.max_pool2d(_t(x), 2))
    _close(F.avg_pool1d(x[:, :, 0], 3), TF.avg_pool1d(_t(x[:, :, 0]), 3))


@pytest.mark.parametrize("out", [1, 2, 3, (2, 5), (None, 2)])
def test_adaptive_avg_pool2d_matches_torch(out):
    x = np.random.default_rng(0).standard_normal((2, 3, 7, 5))
    y, dy, (dx,) = _torch_run(lambda a: TF.adaptive_avg_pool2d(a, out), [x])
    _close(F.adaptive_avg_pool2d(x, out), y)
    _close(F.adaptive_avg_pool2d_backward(dy, x.shape, out), dx)


# -- elementwise, softmax, linear -----------------------------------------------------


def _x():
    x = np.random.default_rng(0).standard_normal((3, 4, 5)) * 3
    x[0, 0, :2] = 0.0  # the kink of ReLU and LeakyReLU
    return x


@pytest.mark.parametrize(
    ("name", "torch_fn", "backward_from"),
    [
        ("relu", TF.relu, "input"),
        ("leaky_relu", lambda a: TF.leaky_relu(a, 0.2), "input"),
        ("sigmoid", torch.sigmoid, "output"),
        ("tanh", torch.tanh, "output"),
    ],
)
def test_elementwise_matches_torch(name, torch_fn, backward_from):
    x = _x()
    y, dy, (dx,) = _torch_run(torch_fn, [x])
    args = (0.2,) if name == "leaky_relu" else ()
    ours = getattr(F, name)(x, *args)
    _close(ours, y)
    saved = x if backward_from == "input" else ours
    _close(getattr(F, name + "_backward")(dy, saved, *args), dx)


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_matches_torch(name, dim):
    x = _x()
    y, dy, (dx,) = _torch_run(lambda a: getattr(TF, name)(a, dim), [x])
    ours = getattr(F, name)(x, dim)
    _close(ours, y)
    _close(getattr(F, name + "_backward")(dy, ours, dim), dx)


def test_softmax_does_not_overflow():
    y = F.softmax(np.array([[1000.0, 0.0]]), 1)
    _close(y, [[1.0, 0.0]])
    _close(F.sigmoid(np.array([-800.0, 800.0])), [0.0, 1.0])


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(shape, bias):
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(shape), rng.standard_normal((3, 4))
    b = rng.standard_normal(3) if bias else None
    y, dy, (dx, dw, db) = _torch_run(TF.linear, [x, w, b])
    _close(F.linear(x, w, b), y)
    gx, gw, gb = F.linear_backward(dy, x, w)
    _close(gx, dx)
    _close(gw, dw)
    if bias:
        _close(gb, db)


# -- batch norm, dropout, losses --------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_torch(shape, training, affine):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape) * 2 + 1
    w, b = (rng.standard_normal(3), rng.standard_normal(3)) if affine else (None, None)
    mean, var = rng.standard_normal(3), rng.random(3) + 0.5
    t_mean, t_var = _t(mean), _t(var)
    y, dy, grads = _torch_run(
        lambda a, w_, b_: TF.batch_norm(a, t_mean, t_var, w_, b_, training, 0.3, 1e-3), [x, w, b]
    )
    ours = F.batch_norm(x, mean, var, w, b, training, 0.3, 1e-3)
    _close(ours, y)
    _close(mean, t_mean)  # the running statistics, updated in place in training
    _close(var, t_var)
    stats = (t_mean.numpy(), t_var.numpy())  # what the forward used in eval (unchanged)
    gx, gw, gb = F.batch_norm_backward(dy, x, *stats, w, training, 1e-3)
    _close(gx, grads[0], 1e-9)
    if affine:
        _close(gw, grads[1], 1e-9)
        _close(gb, grads[2], 1e-9)
    else:
        assert gw is None and gb is None


def test_batch_norm_without_running_statistics_uses_the_batch():
    x = np.random.default_rng(0).standard_normal((5, 2))
    _close(
        F.batch_norm(x, None, None, training=True), TF.batch_norm(_t(x), None, None, training=True)
    )


def test_dropout_masks_from_the_generator_and_scales():
    x = np.ones((1000,))
    y = F.dropout(x, 0.25, rng=np.random.default_rng(0))
    mask = F.dropout_mask(x.shape, 0.25, np.random.default_rng(0), x.dtype)
    np.testing.assert_array_equal(y, mask)
    assert set(np.unique(y)) == {0.0, 1 / 0.75}
    assert 0.2 < np.mean(y == 0) < 0.3
    assert F.dropout(x, 0.5, training=False) is x
    with pytest.raises(TypeError, match="Generator"):
        F.dropout(x, 0.5)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
def test_cross_entropy_matches_torch(smoothing):
    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((6, 4)) * 3, rng.integers(0, 4, 6)
    t = _t(x, grad=True)
    y = TF.cross_entropy(t, torch.tensor(target), label_smoothing=smoothing)
    y.backward(_t(0.7))
    _close(F.cross_entropy(x, target, smoothing), y)
    _close(F.cross_entropy_backward(x, target, smoothing, 0.7), t.grad)


def test_mse_loss_matches_torch():
    rng = np.random.default_rng(0)
    x, target = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    t = _t(x, grad=True)
    y = TF.mse_loss(t, _t(target))
    y.backward(_t(1.5))
    _close(F.mse_loss(x, target), y)
    _close(F.mse_loss_backward(x, target, 1.5), t.grad)


def test_float32_stays_float32():
    x = np.ones((2, 3, 5, 5), np.float32)
    w = np.ones((4, 3, 3, 3), np.float32)
    outs = [
        F.conv2d(x, w, padding="same"),
        F.max_pool2d(x, 2),
        F.avg_pool2d(x, 2, ceil_mode=True),
        F.adaptive_avg_pool2d(x, 2),
        F.relu(x),
        F.sigmoid(x),
        F.softmax(x, 1),
        F.batch_norm(x, None, None, training=True),
        F.dropout(x, 0.5, rng=np.random.default_rng(0)),
        F.cross_entropy(x[:, :, 0, 0], np.array([0, 1])),
        F.mse_loss(x, x),
    ]
    assert [o.dtype for o in outs] == [np.float32] * len(outs)
    assert F.conv2d_backward(F.conv2d(x, w), x, w)[0].dtype == np.float32


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_per_pixel_with_weight_and_ignore_matches_torch(smoothing):
    rng = np.random.default_rng(1)
    x, target = rng.standard_normal((2, 3, 4, 5)) * 2, rng.integers(0, 3, (2, 4, 5))
    target[0, 1] = 255  # a row of unlabelled pixels
    w = np.array([0.5, 2.0, 1.0])
    t = _t(x, grad=True)
    y = TF.cross_entropy(
        t, torch.tensor(target), _t(w), ignore_index=255, label_smoothing=smoothing
    )
    y.backward(_t(0.7))
    _close(F.cross_entropy(x, target, smoothing, w, 255), y)
    _close(F.cross_entropy_backward(x, target, smoothing, 0.7, w, 255), t.grad)
