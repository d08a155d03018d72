"""Conv2d and Conv1d: loops, finite differences, PyTorch, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clearconv import nn
from clearconv.engine import DEFAULT, Tuning
from clearconv.engine import conv as F
from clearconv.engine.plan import no_input_grad
from tests.gradcheck import check_layer
from tests.reference import conv2d_grads_loops, conv2d_loops


def _f64(layer):
    for p in layer.parameters():
        p.data = p.data.astype(np.float64)
    return layer


@st.composite
def conv_cases(draw):
    c = draw(st.integers(1, 3))
    o = draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(dh * (kh - 1) + 1 - 2 * ph if dh * (kh - 1) + 1 > 2 * ph else 1, 9))
    w = draw(st.integers(dw * (kw - 1) + 1 - 2 * pw if dw * (kw - 1) + 1 > 2 * pw else 1, 9))
    n = draw(st.integers(1, 3))
    bias = draw(st.booleans())
    return n, c, o, (kh, kw), (sh, sw), (ph, pw), (dh, dw), h, w, bias


@settings(max_examples=40, deadline=None)
@given(conv_cases())
def test_conv2d_matches_loops(case):
    n, c, o, k, s, p, d, h, w, bias = case
    rng = np.random.default_rng(1)
    layer = nn.Conv2d(c, o, k, s, p, d, bias=bias, rng=rng, dtype=np.float64)
    x = rng.standard_normal((n, c, h, w))
    y = layer(x)
    b = None if layer.bias is None else layer.bias.data
    ref = conv2d_loops(x, layer.weight.data, b, s, ((p[0], p[0]), (p[1], p[1])), d)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_conv2d_golden_arange():
    # 1x1x3x3 input 0..8 with a 2x2 kernel of ones: each output is a window sum.
    layer = nn.Conv2d(1, 1, 2, bias=False)
    layer.weight.data = np.ones((1, 1, 2, 2), dtype=np.float32)
    y = layer(np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3))
    np.testing.assert_array_equal(y[0, 0], [[8, 12], [20, 24]])


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        (dict(kernel_size=3), (2, 2, 6, 7)),
        (dict(kernel_size=(3, 2), stride=2, padding=1), (2, 2, 7, 8)),
        (dict(kernel_size=(2, 3), stride=(2, 3), padding=(1, 2), dilation=(2, 1)), (1, 2, 9, 10)),
        (dict(kernel_size=4, padding="same"), (2, 2, 5, 6)),
        (dict(kernel_size=2, padding="same", dilation=2), (1, 2, 5, 5)),
        (dict(kernel_size=3, padding="valid", bias=False), (1, 2, 5, 5)),
    ],
)
@pytest.mark.parametrize("training", [True, False])
def test_conv2d_gradcheck(kwargs, shape, training):
    rng = np.random.default_rng(0)
    layer = nn.Conv2d(shape[1], 3, rng=rng, dtype=np.float64, **kwargs)
    check_layer(layer, rng.standard_normal(shape), training=training)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(kernel_size=3),
        dict(kernel_size=4, stride=3, padding=2, dilation=2),
        dict(kernel_size=4, padding="same"),
    ],
)
def test_conv1d_gradcheck(kwargs):
    rng = np.random.default_rng(0)
    layer = nn.Conv1d(2, 3, rng=rng, dtype=np.float64, **kwargs)
    check_layer(layer, rng.standard_normal((2, 2, 11)))


TORCH_CASES = [
    (3, 8, 3, 1, 1, 1),
    (2, 4, (5, 3), (2, 1), (2, 0), (1, 2)),
    (4, 6, 4, 1, "same", 1),
    (4, 6, 3, 1, "same", 3),
    (2, 3, 3, 3, "valid", 1),
]


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")  # torch's own note
@pytest.mark.parametrize("c, o, k, s, p, d", TORCH_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_matches_torch(c, o, k, s, p, d, bias):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    ours = nn.Conv2d(c, o, k, s, p, d, bias=bias, rng=rng)
    ref = torch.nn.Conv2d(c, o, k, s, p, d, bias=bias)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(ours.weight.data))
        if bias:
            ref.bias.copy_(torch.from_numpy(ours.bias.data))
    x = rng.standard_normal((3, c, 11, 10)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    y = ours(x, training=True)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    g = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    dx = ours.backward(g)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.weight.grad, ref.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    if bias:
        np.testing.assert_allclose(ours.bias.grad, ref.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_conv1d_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    ours = nn.Conv1d(3, 5, 7, stride=2, padding=3, dilation=2, rng=rng)
    ref = torch.nn.Conv1d(3, 5, 7, stride=2, padding=3, dilation=2)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(ours.weight.data))
        ref.bias.copy_(torch.from_numpy(ours.bias.data))
    x = rng.standard_normal((2, 3, 40)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = ref(xt)
    y = ours(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-5, atol=1e-5)
    g = rng.standard_normal(y.shape).astype(np.float32)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(ours.backward(g), xt.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.weight.grad, ref.weight.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_default_init_matches_torch_distribution():
    torch = pytest.importorskip("torch")
    ours = nn.Conv2d(16, 64, 3, rng=np.random.default_rng(0))
    ref = torch.nn.Conv2d(16, 64, 3)
    bound = 1 / np.sqrt(16 * 9)
    for a, b in [
        (ours.weight.data, ref.weight.detach().numpy()),
        (ours.bias.data, ref.bias.detach().numpy()),
    ]:
        assert a.shape == b.shape
        assert np.abs(a).max() <= bound and np.abs(b).max() <= bound
        assert np.abs(a).max() > 0.9 * bound
    assert abs(ours.weight.data.std() - ref.weight.detach().numpy().std()) < 0.05 * bound


def test_gradients_accumulate_until_cleared():
    rng = np.random.default_rng(0)
    layer = nn.Conv2d(1, 2, 3, rng=rng)
    x = rng.standard_normal((1, 1, 5, 5)).astype(np.float32)
    g = np.ones((1, 2, 3, 3), np.float32)
    layer(x, training=True)
    layer.backward(g)
    first = layer.weight.grad.copy()
    layer(x, training=True)
    layer.backward(g)
    np.testing.assert_allclose(layer.weight.grad, 2 * first, rtol=1e-6)
    layer.zero_grad()
    assert layer.weight.grad is None


def test_float64_in_float64_out_and_mixed():
    layer = nn.Conv2d(1, 2, 3, rng=np.random.default_rng(0))
    x64 = np.random.default_rng(1).standard_normal((1, 1, 5, 5))
    assert layer(x64).dtype == np.float64
    assert layer(x64.astype(np.float32)).dtype == np.float32
    layer.backward(np.ones((1, 2, 3, 3)))
    assert layer.weight.grad.dtype == np.float32


def test_same_padding_keeps_size_and_output_shape_agrees():
    for k in (1, 2, 3, 4, 5):
        layer = nn.Conv2d(2, 3, k, padding="same")
        x = np.zeros((1, 2, 7, 6), np.float32)
        assert layer(x).shape == (1, 3, 7, 6) == layer.output_shape(x.shape)


def test_im2row_row2im_are_adjoint():
    # <im2row(x), r> == <x, row2im(r)>: the scatter is the exact transpose.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    pads = ((1, 2), (0, 1))
    k, s, d = (3, 2), (2, 1), (1, 2)
    oh = F.out_size(7, 3, 2, 3, 1)
    ow = F.out_size(6, 2, 1, 1, 2)
    xpad = F.pad_nhwc(x, pads)  # (N, Hp, Wp, C)
    rows = F.im2row(xpad, k, s, d, (oh, ow))
    r = rng.standard_normal(rows.shape)
    back = np.zeros_like(xpad)
    F.row2im_add(r, back, k, s, d, (oh, ow))
    assert np.isclose(np.sum(rows * r), np.sum(xpad * back))


def test_im2col_and_im2row_gather_the_same_fields():
    # Channel-major columns (for NCHW inputs) hold the rows' values, reordered.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 7, 6))
    pads, k, s, d = ((1, 0), (2, 1)), (2, 3), (1, 2), (2, 1)
    oh, ow = F.out_size(7, 2, 1, 1, 2), F.out_size(6, 3, 2, 3, 1)
    cols = F.im2col(F.pad2d(x, pads), k, s, d, (oh, ow))  # (C*kH*kW, N*OH*OW)
    rows = F.im2row(F.pad_nhwc(x, pads), k, s, d, (oh, ow))  # (N*OH*OW, kH*kW*C)
    as_rows = cols.reshape(3, 2, 3, -1).transpose(3, 1, 2, 0).reshape(rows.shape)
    np.testing.assert_array_equal(as_rows, rows)


@pytest.mark.parametrize(
    "make, shape, message",
    [
        (
            lambda: nn.Conv2d(3, 8, kernel_size=3),
            (1, 2, 5, 5),
            r"Conv2d\(3, 8, kernel_size=3\) expected input of shape \(N, 3, H, W\), "
            r"got \(1, 2, 5, 5\)",
        ),
        (
            lambda: nn.Conv2d(3, 8, 3),
            (3, 5, 5),
            r"expected input of shape \(N, 3, H, W\), got \(3, 5, 5\)",
        ),
        (lambda: nn.Conv2d(1, 1, 5), (1, 1, 3, 3), r"smaller than the dilated kernel"),
        (lambda: nn.Conv1d(2, 1, 3), (1, 3, 9), r"expected input of shape \(N, 2, L\)"),
    ],
)
def test_bad_input_shapes(make, shape, message):
    with pytest.raises(ValueError, match=message):
        make()(np.zeros(shape, np.float32))


def test_bad_input_types():
    layer = nn.Conv2d(1, 1, 3)
    with pytest.raises(TypeError, match=r"float32 or float64.*got dtype uint8"):
        layer(np.zeros((1, 1, 5, 5), np.uint8))
    with pytest.raises(TypeError, match="expected an array"):
        layer([[1.0]])


@pytest.mark.parametrize(
    "kwargs, exc, message",
    [
        (dict(kernel_size=0), ValueError, r"kernel_size must be >= 1, got 0"),
        (dict(kernel_size=3, stride=0), ValueError, r"stride must be >= 1, got 0"),
        (dict(kernel_size=3, padding=-1), ValueError, r"padding must be >= 0, got -1"),
        (dict(kernel_size=3, padding="full"), ValueError, r"'same' or 'valid', got 'full'"),
        (dict(kernel_size=3, padding="same", stride=2), ValueError, r"not supported for strided"),
        (dict(kernel_size=2.5), TypeError, r"kernel_size must be an int or a sequence of 2 ints"),
        (dict(kernel_size=(1, 2, 3)), TypeError, r"kernel_size"),
        (dict(kernel_size=3, dtype=np.int32), TypeError, r"dtype must be float32 or float64"),
        (dict(kernel_size=3, rng=0), TypeError, r"rng must be a numpy.random.Generator"),
        (dict(kernel_size=3, bias="yes"), TypeError, r"bias must be True or False"),
    ],
)
def test_bad_constructor_arguments(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        nn.Conv2d(2, 3, **kwargs)


def test_parameter_assignment_checks_shape():
    layer = nn.Conv2d(1, 2, 3)
    with pytest.raises(ValueError, match=r"keep its shape \(2, 1, 3, 3\), got \(2, 1, 2, 2\)"):
        layer.weight.data = np.zeros((2, 1, 2, 2), np.float32)


def test_repr_shows_non_defaults():
    assert repr(nn.Conv2d(3, 8, 3)) == "Conv2d(3, 8, kernel_size=3)"
    assert (
        repr(nn.Conv2d(3, 8, (3, 5), stride=2, padding=1, bias=False))
        == "Conv2d(3, 8, kernel_size=(3, 5), stride=2, padding=1, bias=False)"
    )


def test_skipping_the_input_gradient_keeps_parameter_gradients():
    rng = np.random.default_rng(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3, rng=rng), nn.ReLU(), nn.Conv2d(3, 2, 3, rng=rng))
    x = rng.standard_normal((2, 1, 7, 7)).astype(np.float32)
    g = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    net(x, training=True)
    dx = net.backward(g)
    full = [p.grad.copy() for p in net.parameters()]
    net.zero_grad()
    net(x, training=True)
    with no_input_grad(net):
        assert dx is not None and net.backward(g) is None
    assert net.needs_input_grad  # given back on leaving
    for a, b in zip(full, [p.grad for p in net.parameters()]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("block_bytes", [1, 700, 1 << 30])
def test_cache_blocks_do_not_change_results(block_bytes):
    # One sample per block, a few per block, and the whole batch in one block.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 3, 9, 8))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    pads, s, d = ((1, 2), (0, 1)), (2, 1), (1, 2)
    eng = DEFAULT.with_tuning(Tuning(block_bytes=block_bytes))
    y = F.conv2d_forward(x, w, b, s, pads, d, eng=eng)
    ref = conv2d_loops(x, w, b, s, pads, d)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    dx, dw, db = F.conv2d_backward(g, x, w, s, pads, d, True, eng=eng)
    # against the chain rule by loops, not another call of the same function
    # (for the one-block case that would compare a result with itself)
    ref_dx, ref_dw = conv2d_grads_loops(x, w, g, s, pads, d)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, ref_dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, g.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)


def test_blocks_are_cut_for_threads_only_with_enough_work():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    big = 1 << 30  # cache room for the whole batch
    like = np.zeros(1)

    def size(block_bytes, threads, work):
        eng = DEFAULT.with_tuning(Tuning(min_parallel_work=1000, block_bytes=block_bytes))
        with threadpoolctl.threadpool_limits(threads, user_api="blas"):
            return F.block_size(64, 26, 784, 4, like, work, eng)

    # One thread: as large as the cache allows.
    assert size(big, threads=1, work=10**9) == 64
    # Two threads, plenty of work: two blocks per thread.
    assert size(big, threads=2, work=10**9) == 16
    # Two pieces' worth of work: two blocks; under one piece: one block.
    assert size(big, threads=2, work=2500) == 32
    assert size(big, threads=2, work=999) == 64
    # The cache bound still holds whatever the work.
    assert size(26 * 784 * 4 * 3, threads=2, work=999) == 3


@pytest.mark.parametrize("batch", [2, 64])
def test_a_small_batch_stays_in_one_thread(batch, threads, monkeypatch):
    # LeNet-5's first layer: two images are a few microseconds of work, less
    # than a hand-over to the second thread; 64 are worth sharing out (one
    # thread takes them in two blocks that fit the cache).
    cuts = []
    eng = DEFAULT.with_tuning(Tuning())
    real = eng.map
    monkeypatch.setattr(
        eng, "map", lambda fn, items, like: cuts.append(len(items)) or real(fn, items, like)
    )
    rng = np.random.default_rng(3)
    x = rng.standard_normal((batch, 1, 28, 28)).astype(np.float32)
    w = rng.standard_normal((6, 1, 5, 5)).astype(np.float32)
    pads = ((2, 2), (2, 2))
    y = F.conv2d_forward(x, w, None, (1, 1), pads, (1, 1), eng=eng)
    F.conv2d_backward(np.ones_like(y), x, w, (1, 1), pads, (1, 1), True, False, eng=eng)
    # The forward's blocks (none for one block: its product in row slices) and dW's.
    expected = {2: [1], 64: [4, 4] if threads == 2 else [2, 2]}
    assert cuts == expected[batch]


def _channels_last(a):
    """The same (N, C, H, W) values stored channels-last, as layers hand them on."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """The engine's threads: blocks run in the caller, or shared between two threads."""
    threadpoolctl = pytest.importorskip("threadpoolctl")  # the cli extra; test installs have it
    with threadpoolctl.threadpool_limits(request.param, user_api="blas"):
        yield request.param


@pytest.mark.parametrize("per_sample", [0, 1 << 30])  # products per block or per sample
@pytest.mark.parametrize("out_last_from", [1, 1 << 30])  # outputs channels-last or not
@pytest.mark.parametrize("layout", ["nchw-cols", "nchw-rows", "channels_last"])
@pytest.mark.parametrize("block_bytes", [1, 2000, 1 << 30])
@pytest.mark.parametrize(
    ("pads", "stride", "dilation", "kernel"),
    [
        (((1, 1), (1, 1)), (1, 1), (1, 1), (3, 3)),  # the 'same' 3x3 of most nets
        (((0, 0), (0, 0)), (1, 1), (1, 1), (5, 5)),  # 'valid', LeNet's second layer
        (((2, 0), (1, 3)), (1, 1), (2, 3), (3, 2)),  # uneven pads, dilation, non-square
        (((1, 1), (1, 1)), (2, 2), (1, 1), (3, 3)),  # strided: the col2im path
        (((2, 0), (0, 1)), (1, 1), (1, 1), (2, 2)),  # a pad past the kernel's reach
    ],
)
def test_backward_matches_loops(
    pads,
    stride,
    dilation,
    kernel,
    block_bytes,
    layout,
    out_last_from,
    per_sample,
    threads,
    monkeypatch,
):
    # Stride 1 computes the input gradient as a convolution of dY, or for few
    # channel-major channels scatters it on the padded grid; other strides and
    # pads past the kernel's reach scatter by row2im / col2im. All of them, in
    # one block or many, from inputs gathered as columns or rows (NCHW inputs
    # either way, channels-last as rows), with the products made per block or
    # per sample, must equal the chain rule by loops.
    eng = DEFAULT.with_tuning(
        Tuning(
            block_bytes=block_bytes,
            channels_last_min=out_last_from,
            per_sample_dw_max=per_sample,
            per_sample_inner_max=per_sample,
        )
    )
    monkeypatch.setattr(F, "_rows_pay", lambda *args: layout == "nchw-rows")  # a rule, not a number
    assert eng.threads_for(np.zeros(1)) == threads
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 2, 9, 8))
    w = rng.standard_normal((4, 2, *kernel))
    if layout == "channels_last":
        x = _channels_last(x)
    y = F.conv2d_forward(x, w, None, stride, pads, dilation, eng=eng)
    np.testing.assert_allclose(y, conv2d_loops(x, w, None, stride, pads, dilation), atol=1e-12)
    assert F.channels_last(y) == (out_last_from == 1)
    # The gradient in the output's own memory order, as the layers above leave
    # it, or in plain NCHW order.
    g = np.empty_like(y) if layout != "nchw-cols" else np.empty(y.shape)
    g[...] = rng.standard_normal(y.shape)
    dx, dw, db = F.conv2d_backward(g, x, w, stride, pads, dilation, True, eng=eng)
    ref_dx, ref_dw = conv2d_grads_loops(x, w, g, stride, pads, dilation)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, ref_dw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db, g.sum(axis=(0, 2, 3)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("c", "kw", "stride", "dilation", "ow", "rows"),
    [
        (6, 5, (1, 1), (1, 1), 10, True),  # LeNet-5's second layer: runs of 30 against 10
        (3, 3, (1, 1), (1, 1), 32, False),  # RGB 3x3 'same': 9 against 32
        (32, 3, (1, 1), (1, 1), 28, True),  # an NCHW input with many channels
        (3, 3, (2, 2), (1, 1), 16, True),  # strided: columns copy single values
        (8, 3, (1, 1), (1, 2), 24, False),  # dilated: rows copy runs of C
    ],
)
def test_fields_are_gathered_where_runs_are_longer(c, kw, stride, dilation, ow, rows):
    assert F._rows_pay(c, kw, stride, dilation, (7, ow)) is rows
    x = np.zeros((2, c, 9, ow + kw - 1), np.float32)  # NCHW: channel-major
    w = np.zeros((4, c, 3, kw), np.float32)
    fields = F._Fields(x, w, stride, ((0, 0), (0, 0)), dilation, (7, ow))
    assert fields.rows is rows


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("channels", [4, 40])  # outputs channel-major or channels-last
def test_results_outlive_the_reused_work_buffers(layout, channels):
    # The gathered fields and padded copies live in per-thread buffers reused by
    # every call (Engine.scratch); what a call returns must not.
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, channels, 7, 6)).astype(np.float32)
    x = _channels_last(x) if layout == "channels_last" else x
    w = rng.standard_normal((channels, channels, 3, 3)).astype(np.float32)
    b = rng.standard_normal(channels).astype(np.float32)
    pads, s, d = ((1, 1), (1, 1)), (1, 1), (1, 1)
    y = F.conv2d_forward(x, w, b, s, pads, d)
    dx, dw, db = F.conv2d_backward(y, x, w, s, pads, d, True)
    kept = [a.copy() for a in (y, dx, dw, db)]
    other = rng.standard_normal((2, channels, 9, 9)).astype(np.float32)
    F.conv2d_backward(F.conv2d_forward(other, w, b, s, pads, d), other, w, s, pads, d, True)
    for a, k in zip((y, dx, dw, db), kept):
        np.testing.assert_array_equal(a, k)
    ref = conv2d_loops(x.astype(np.float64), w, b, s, pads, d)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
