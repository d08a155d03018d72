"""Convolution as windowed views plus matrix products (im2row + GEMM).

Layout: arrays are NCHW in shape and weights ``(O, C, kH, kW)``, as in
PyTorch; in memory a convolution's result is the matrix its GEMM writes and
the NCHW array handed on is a transposed view of it. With ``O >= 32`` output
channels (``Tuning.channels_last_min``) that matrix is channels-last ("NHWC"),
one row per output position: the forward pass gathers every receptive field
into a row

    rows[(n, oh, ow), (i, j, c)] = x_pad[n, oh*sH + i*dH, ow*sW + j*dW, c]

of shape ``(N*OH*OW, kH*kW*C)`` with one strided-view copy (runs of
``kW*C`` contiguous values when the input is channels-last), then computes

    out = rows @ W.transpose(2, 3, 1, 0).reshape(kH*kW*C, O) + b    # the GEMM

``(N*OH*OW, O)``: positions by channels. The bias rides in the GEMM: the
rows get a last column of ones and the weight matrix a last row ``b``
(``K+1``), which saves a pass over the output (the first layer of the 4-conv
net, ``K = 9``, ran 1.9x faster at batch 128) and, in the backward pass,
makes ``db`` a row of the weight-gradient GEMM instead of a sum over ``dY``.
For the 3x3 layers of a small CNN this orientation (long side first, fields
gathered from channels-last memory) ran the forward pass 1.2-1.7x faster
than the channel-major ``W @ cols`` on this engine's 4-conv net. With fewer output channels the
result is channel-major, ``(O, N*OH*OW)``, whose rows of ``OH*OW`` values
suit the pooling and ReLU after it better than runs of a few channels. An
input that is not channels-last in memory (the images a user passes, NCHW)
is gathered into channel-major columns instead (:func:`im2col`, runs of
``OW`` values), which copy faster from that order.

The backward pass is a GEMM per block for the weights, ``dW += rows.T @ dY``,
and the input gradient. With stride 1 that gradient is itself a
convolution (:func:`_dx_as_conv`): ``dY``, zero-padded by ``d*(k-1) - pad``,
correlated with the kernels flipped and with in and out channels swapped,
one gather and one GEMM like the forward pass. Otherwise ``drows = dY @ W2``
is scattered back to the input one strided slice-add per kernel offset
(:func:`row2im_add`; ``kH*kW`` adds over whole arrays, no ``np.add.at``).
Channel-major inputs with fewer than ``Tuning.channels_last_min`` channels
(LeNet's 6) keep a scatter for stride 1 too, on the padded grid
(:func:`_grid_scatter_cols`): a GEMM writing only a few output channels runs
slowly, and there the kernel offsets' shifted contributions are summed in one
reduction over a strided view.

Cache blocking: the row matrix is ``kH*kW`` times the size of the input
(nine times for a 3x3 kernel), too large to stay in the CPU cache between the
copy that writes it and the product that reads it. So the batch is taken in
blocks of samples whose rows fit in ``Tuning.block_bytes`` (4 MiB by default): each
block is one gather into a reused buffer and one GEMM (two backward), all
whole-array work; the loop runs over a handful of blocks, never over single
samples or pixels for their own sake. The backward pass gathers each block
again instead of keeping the forward's matrix, which is cheaper than reading
it back from memory and keeps training memory near the size of the
activations.

Threads: the blocks are independent (each writes its own rows of the output,
its own samples of the input gradient, its own partial ``dW``), so
:meth:`Engine.map <clearconv.engine.Engine.map>` shares them among the engine's threads,
each gathering and multiplying its block on one core with BLAS held at one
thread, and the partial ``dW`` are summed in block order, the same sum
whichever thread made each. Each block pads its own samples: the work
buffers for the padded samples and their fields are per thread
(:meth:`Engine.scratch <clearconv.engine.Engine.scratch>`).
"""

from __future__ import annotations

from collections.abc import Iterator

from clearconv.backend import Array, as_strided, quiet_products, xp_of
from clearconv.engine.core import DEFAULT, Engine
from clearconv.engine.threads import sum_in_order

Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))


def out_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    """Output length along one axis: ``floor((size + pad - d*(k-1) - 1) / s) + 1``."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def channels_last(x: Array) -> bool:
    """True when the channels of ``x`` (N, C, H, W) are innermost in memory.

    A single channel never counts: its rows of ``W`` values are the longer runs.
    """
    return x.shape[1] > 1 and abs(x.strides[1]) < abs(x.strides[3])


def _fill_padded(out: Array, x: Array, pads: Pads, value: float) -> Array:
    """Write ``x`` into the middle of ``out`` and ``value`` into its border only.

    Shape: ``out`` (..., H+t+b, W+l+r), ``x`` (..., H, W) -> ``out``.
    """
    (t, b), (lf, r) = pads
    h, w = x.shape[-2:]
    out[..., :t, :] = value
    out[..., t + h :, :] = value
    out[..., t : t + h, :lf] = value
    out[..., t : t + h, lf + w :] = value
    out[..., t : t + h, lf : lf + w] = x
    return out


def pad2d(
    x: Array, pads: Pads, value: float = 0.0, scratch: bool = False, *, eng: Engine = DEFAULT
) -> Array:
    """Pad the last two axes of ``x`` (N, C, H, W) -> (N, C, H+t+b, W+l+r).

    The result keeps the memory order of ``x``; ``x`` itself when every pad is
    zero (no copy). With ``scratch`` it lives in this thread's reused
    ``"pad"`` work buffer (:meth:`Engine.scratch`), valid only until
    the next scratch pad: for a padded copy used and dropped inside one call.
    """
    (t, b), (lf, r) = pads
    if t == b == lf == r == 0:
        return x
    n, c, h, w = x.shape
    shape = (n, c, h + t + b, w + lf + r)
    buf = eng.scratch("pad", n * c * shape[2] * shape[3], x) if scratch else None
    return _fill_padded(eng.empty_like(shape, x, buffer=buf), x, pads, value)


def pad_nhwc(x: Array, pads: Pads, scratch: bool = False, *, eng: Engine = DEFAULT) -> Array:
    """Zero-pad ``x`` (N, C, H, W) into a channels-last (N, H+t+b, W+l+r, C).

    A transposed view of ``x`` (no copy) when every pad is zero and ``x`` is
    channels-last in memory already (or has one channel); ``scratch`` as in
    :func:`pad2d`.
    """
    (t, b), (lf, r) = pads
    xl = x.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C): a view
    if t == b == lf == r == 0 and (channels_last(x) or x.shape[1] == 1):
        return xl
    n, h, w, c = xl.shape
    shape = (n, c, h + t + b, w + lf + r)  # NCHW; stored as NHWC below
    size = n * c * shape[2] * shape[3]
    buf = eng.scratch("pad", size, x) if scratch else xp_of(x).empty(size, dtype=x.dtype)
    out = buf.reshape(n, shape[2], shape[3], c).transpose(0, 3, 1, 2)  # an NCHW view
    return _fill_padded(out, x, pads, 0.0).transpose(0, 2, 3, 1)


def block_size(
    n: int, rows: int, positions: int, itemsize: int, like: Array, work: int, eng: Engine
) -> int:
    """Samples per block so that a block's ``rows x positions`` matrix fits ``Tuning.block_bytes``.

    With more than one engine thread, also small enough for as many blocks
    as :meth:`Engine.slice_count` cuts ``work`` into (values or
    multiply-adds in all; two a thread, none under
    ``Tuning.min_parallel_work`` each), so that :meth:`Engine.map` can share
    them out evenly and a small batch is not handed to another thread for
    less than the hand-over costs.
    """
    blk = max(1, min(n, eng.tuning.block_bytes // max(1, rows * positions * itemsize)))
    if eng.threads_for(like) < 2:
        return blk
    return max(1, min(blk, -(-n // eng.slice_count(n, like, work))))


def _work(n: int, positions: int, k: int, o: int, eng: Engine) -> int:
    """The work of a convolution's blocks, as :func:`block_size` counts it.

    ``n*positions*k`` gathered values, and ``o`` times as many multiply-adds
    at ``Tuning.macs_per_value`` to a value.
    """
    values = n * positions * k
    return values + values * o // eng.tuning.macs_per_value


def _gather(xpad: Array, shape6, strides6, out: Array | None, matrix: tuple[int, int]) -> Array:
    """The one copy of a gather: a 6-axis window view of ``xpad`` into a matrix.

    The view overlaps itself (neighbouring windows share values) and costs
    nothing; copying it, into ``out`` when given, is the im2row / im2col.
    """
    view = as_strided(xpad, shape6, strides6)
    xp = xp_of(xpad)
    if out is None:
        return xp.ascontiguousarray(view).reshape(matrix)
    xp.copyto(out.reshape(shape6), view)
    return out


def _taps(kernel, stride, dilation, out_hw) -> Iterator[tuple[int, int, slice, slice]]:
    """``(i, j, rows, cols)`` per kernel offset: the padded input's rows and columns it reads."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    for i in range(kh):  # loops over kernel offsets only
        for j in range(kw):
            yield (
                i,
                j,
                slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
                slice(j * dw, j * dw + sw * (ow - 1) + 1, sw),
            )


def im2row(
    xpad: Array,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
    out: Array | None = None,
) -> Array:
    """Gather the receptive fields of a padded channels-last input into rows.

    Shape: ``xpad`` (N, Hp, Wp, C) -> ``(N*OH*OW, kH*kW*C)``, written into
    ``out`` (a contiguous buffer of that shape) when given.
    """
    n, c = xpad.shape[0], xpad.shape[3]
    kh, kw = kernel
    oh, ow = out_hw
    s_n, s_h, s_w, s_c = xpad.strides
    # Gathered through a (N, OH, OW, kH, kW, C) view.
    shape6 = (n, oh, ow, kh, kw, c)
    strides6 = (s_n, stride[0] * s_h, stride[1] * s_w, dilation[0] * s_h, dilation[1] * s_w, s_c)
    return _gather(xpad, shape6, strides6, out, (n * oh * ow, kh * kw * c))


def row2im_add(
    drows: Array,
    dxpad: Array,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> None:
    """``dxpad`` += the scatter of ``drows`` (the adjoint of :func:`im2row`).

    Shape: ``drows`` (N*OH*OW, kH*kW*C), ``dxpad`` (N, Hp, Wp, C).
    """
    d6 = drows.reshape(dxpad.shape[0], *out_hw, *kernel, dxpad.shape[3])  # (N, OH, OW, kH, kW, C)
    for i, j, rows, cols in _taps(kernel, stride, dilation, out_hw):
        dxpad[:, rows, cols] += d6[:, :, :, i, j]


def im2col(
    xpad: Array,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
    out: Array | None = None,
) -> Array:
    """Gather the receptive fields of a padded channel-major input into columns.

    For inputs that are not channels-last in memory (a user's NCHW images):
    each copied run is a row of ``OW`` values rather than ``kW`` of them.

    Shape: ``xpad`` (N, C, Hp, Wp) -> ``(C*kH*kW, N*OH*OW)``, written into
    ``out`` (a buffer of that shape) when given.
    """
    n, c = xpad.shape[:2]
    kh, kw = kernel
    oh, ow = out_hw
    s_n, s_c, s_h, s_w = xpad.strides
    # Gathered through a (C, kH, kW, N, OH, OW) view.
    shape6 = (c, kh, kw, n, oh, ow)
    strides6 = (s_c, dilation[0] * s_h, dilation[1] * s_w, s_n, stride[0] * s_h, stride[1] * s_w)
    return _gather(xpad, shape6, strides6, out, (c * kh * kw, n * oh * ow))


def col2im_add(
    dcols: Array,
    dxpad: Array,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> None:
    """``dxpad`` += the scatter of ``dcols`` (the adjoint of :func:`im2col`).

    Shape: ``dcols`` (C*kH*kW, N*OH*OW), ``dxpad`` (C, N, Hp, Wp).
    """
    d6 = dcols.reshape(dxpad.shape[0], *kernel, dxpad.shape[1], *out_hw)  # (C, kH, kW, N, OH, OW)
    for i, j, rows, cols in _taps(kernel, stride, dilation, out_hw):
        dxpad[:, :, rows, cols] += d6[:, i, j]


def _rows_pay(c: int, kw: int, stride, dilation, out_hw) -> bool:
    """Whether a channel-major input's fields are better gathered as rows.

    A gather copies runs of values that lie together in both the input and
    the fields: ``kW*C`` for rows of a channels-last copy (``C`` with
    dilation), ``OW`` for columns of the channel-major input (1 with a
    stride). NumPy's copy pays per run, so the longer runs win, and the
    channels-last copy of a block's samples costs far less than the gather.
    Measured (batch 64, two threads, forward / weight gradient, columns ->
    rows): LeNet-5's Conv2d(6, 16, 5) on 14x14 (30 against 10) 0.54 / 0.62
    -> 0.47 / 0.57 ms; NCHW Conv2d(32, 32, 3, padding=1) on 28x28 8.4 / 8.0
    -> 7.2 / 7.7; Conv2d(64, 64, 3, padding=1) on 14x14 7.6 / 7.6 -> 6.2 /
    6.5; Conv2d(3, 32, 3, padding=1) on 32x32 (9 against 32) 1.05 / 1.07 ->
    1.5 / 1.44, which stays columns.
    """
    rows = c if dilation[1] > 1 else kw * c
    cols = out_hw[1] if stride[1] == 1 else 1
    return rows > cols


class _Fields:
    """The receptive fields of one convolution's input, gathered block by block.

    Rows (:func:`im2row`) when the input is channels-last in memory or
    rows copy longer runs (:func:`_rows_pay`; each block's samples are then
    copied channels-last into the padding buffer first), columns
    (:func:`im2col`) otherwise; either way :meth:`block` hands back a
    ``(nb*OH*OW, K)`` matrix (a transposed view for columns), with ``K``
    running over ``(i, j, c)`` for rows and ``(c, i, j)`` for columns.

    With ``ones`` the matrix has one more column, all ones, and the weight
    matrix one more row, the bias: the GEMM adds the bias on its way (no pass
    over the output), and the weight-gradient GEMM sums ``dY`` into that
    row (no pass over ``dY`` for the bias gradient). ``kb`` counts it.
    """

    def __init__(
        self,
        x: Array,
        weight: Array,
        stride,
        pads: Pads,
        dilation,
        out_hw,
        ones: bool = False,
        eng: Engine = DEFAULT,
    ) -> None:
        kw = weight.shape[3]
        self.eng = eng
        self.rows = channels_last(x) or _rows_pay(x.shape[1], kw, stride, dilation, out_hw)
        self.x, self.pads = x, pads
        self.geometry = ((weight.shape[2], weight.shape[3]), stride, dilation, out_hw)
        self.k = weight[0].size
        self.kb = self.k + int(ones)
        self.p = out_hw[0] * out_hw[1]
        self.wshape = weight.shape

    def weight_matrix(self, weight: Array, bias: Array | None = None) -> Array:
        """``W`` (O, C, kH, kW) as the ``(K, O)`` matrix the fields multiply.

        ``(K+1, O)`` with ``bias`` as its last row when the fields have ones.
        """
        xp = xp_of(weight)
        o, c, kh, kw = weight.shape
        k = self.k
        if not self.rows and self.kb == k:
            return weight.reshape(o, k).T  # a view
        wb = xp.empty((self.kb, o), dtype=weight.dtype)
        if self.rows:  # (O, C, kH, kW) -> (kH, kW, C, O) -> (K, O), one strided copy
            wb[:k].reshape(kh, kw, c, o)[...] = weight.transpose(2, 3, 1, 0)
        else:
            wb[:k] = weight.reshape(o, k).T
        if self.kb > k:
            wb[k] = bias
        return wb

    def block(self, n0: int, nb: int, buf: Array) -> Array:
        """The fields of samples ``n0 .. n0+nb``: ``(nb*OH*OW, kb)``, in ``buf``'s memory."""
        k, kb, m = self.k, self.kb, nb * self.p
        pad = pad_nhwc if self.rows else pad2d
        # Each block pads its own samples, in its thread's work buffer: the
        # copy is shared among the threads and read back from cache.
        src = pad(self.x[n0 : n0 + nb], self.pads, scratch=True, eng=self.eng)
        if self.rows:
            mat = buf[: m * kb].reshape(m, kb)
            im2row(src, *self.geometry, out=mat[:, :k])  # each row's first K values
        else:
            mat = buf[: kb * m].reshape(kb, m)
            im2col(src, *self.geometry, out=mat[:k])  # the first K rows
            mat = mat.T
        if kb > k:
            mat[:, k] = 1
        return mat

    def to_weight(self, dwt: Array) -> Array:
        """``dW`` as ``(K, O)`` -> (O, C, kH, kW) (a ``(K+1, O)`` one's last row dropped)."""
        o, c, kh, kw = self.wshape
        dwt = dwt[: self.k]
        if self.rows:
            return dwt.reshape(kh, kw, c, o).transpose(3, 2, 0, 1)
        return dwt.reshape(c, kh, kw, o).transpose(3, 0, 1, 2)


def product(a: Array, b: Array, out: Array, nb: int, samples: str, eng: Engine) -> Array:
    """``a @ b`` into ``out`` for a block of ``nb`` samples, per sample when it pays.

    ``samples="rows"``: the samples run along the rows of ``a`` and ``out``,
    ``(nb*P, K) @ (K, O)``; ``"cols"``: along the columns of ``b`` and ``out``,
    ``(O, K) @ (K, nb*P)``. With an inner dimension ``K`` of at most
    ``Tuning.per_sample_inner_max`` it is taken as ``nb`` products of ``P``
    rows or columns each (one batched matmul).
    """
    xp = xp_of(a)
    if nb > 1 and a.shape[1] <= eng.tuning.per_sample_inner_max:
        rows = samples == "rows"
        out_s = _by_sample(out, nb, rows)
        if xp.may_share_memory(out_s, out):  # a view of out, not a copy
            a_s = _by_sample(a, nb, rows) if rows else a
            b_s = b if rows else _by_sample(b, nb, rows)
            xp.matmul(a_s, b_s, out=out_s)
            return out
    return xp.matmul(a, b, out=out)


def _by_sample(m: Array, nb: int, rows: bool) -> Array:
    """``(nb*P, X)`` as ``(nb, P, X)`` (``rows``), or ``(X, nb*P)`` as ``(nb, X, P)``."""
    if rows:
        return m.reshape(nb, m.shape[0] // nb, m.shape[1])
    return m.reshape(m.shape[0], nb, m.shape[1] // nb).transpose(1, 0, 2)


def conv2d_forward(
    x: Array,
    weight: Array,
    bias: Array | None,
    stride: tuple[int, int],
    pads: Pads,
    dilation: tuple[int, int],
    *,
    eng: Engine = DEFAULT,
) -> Array:
    """2-D cross-correlation, PyTorch's ``conv2d`` (groups=1).

    ``y[n, o] = b[o] + sum_{c,i,j} W[o, c, i, j] * x_pad[n, c, s*oh + d*i, s*ow + d*j]``

    Shape: ``x`` (N, C, H, W), ``weight`` (O, C, kH, kW), ``bias`` (O,) ->
    ``y`` (N, O, OH, OW) with ``OH = floor((H + t + b - dH*(kH-1) - 1)/sH) + 1``;
    channels-last in memory when ``O >= Tuning.channels_last_min``, else channel-major.
    """
    xp = xp_of(x)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh = out_size(h, kh, stride[0], sum(pads[0]), dilation[0])
    ow = out_size(w, kw, stride[1], sum(pads[1]), dilation[1])
    fields = _Fields(x, weight, stride, pads, dilation, (oh, ow), bias is not None, eng)
    wmat = fields.weight_matrix(weight, bias)  # (K, O), or (K+1, O) with the bias
    p = oh * ow
    last = o >= eng.tuning.channels_last_min
    out = eng.fresh((n * p, o) if last else (o, n * p), x.dtype, x)
    work = _work(n, p, fields.kb, o, eng)
    blk = block_size(n, fields.kb, p, x.dtype.itemsize, x, work, eng)

    def block(n0: int) -> None:  # a block of the batch that fits in cache: one gather, one GEMM
        nb = min(blk, n - n0)
        with quiet_products():
            f = fields.block(n0, nb, eng.scratch("fields", blk * p * fields.kb, x))  # (nb*P, kb)
            if last:
                product(f, wmat, out[n0 * p : (n0 + nb) * p], nb, "rows", eng)  # (nb*OH*OW, O)
            else:
                product(wmat.T, f.T, out[:, n0 * p : (n0 + nb) * p], nb, "cols", eng)

    if n > blk:
        eng.map(block, range(0, n, blk), x)
    else:  # one block (a small batch): its product shared out in slices of its rows
        with quiet_products():
            f = fields.block(0, n, eng.scratch("fields", n * p * fields.kb, x))  # (N*OH*OW, kb)

        def rows(sl: slice) -> None:
            with quiet_products():
                if last:
                    xp.matmul(f[sl], wmat, out=out[sl])
                else:
                    xp.matmul(wmat.T, f[sl].T, out=out[:, sl])

        eng.slices(rows, n * p, x, n * p * fields.kb * o // eng.tuning.macs_per_value)
    # Views, no copy: (N*OH*OW, O) -> (N, OH, OW, O) -> (N, O, OH, OW), or
    # (O, N*OH*OW) -> (O, N, OH, OW) -> (N, O, OH, OW). The layers after work in
    # this memory order and the next convolution gathers from it as it is.
    if last:
        return out.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)
    return out.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)


def conv2d_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    stride: tuple[int, int],
    pads: Pads,
    dilation: tuple[int, int],
    need_bias: bool,
    input_grad: bool = True,
    *,
    eng: Engine = DEFAULT,
) -> tuple[Array | None, Array, Array | None]:
    """Gradients of :func:`conv2d_forward`, block by block.

    ``dW += F.T @ dY`` per block of the batch, with the block's fields ``F``
    (``(nb*OH*OW, K)``, and a column of ones whose row of the product is
    ``db``) gathered again in cache; then the input gradient:
    :func:`_dx_as_conv` for stride 1, else a scatter: channels-last
    (:func:`_dx_rows`) when ``x`` is or has at least
    ``Tuning.channels_last_min`` channels, else channel-major (:func:`_dx_cols`).

    Shape: ``grad_out`` (N, O, OH, OW), ``x`` (N, C, H, W) -> ``dx``
    (N, C, H, W) or None when not ``input_grad``; ``dW`` (O, C, kH, kW),
    ``db`` (O,) or None.
    """
    xp = xp_of(grad_out)
    n, o, oh, ow = grad_out.shape
    dt = grad_out.dtype
    fields = _Fields(x, weight, stride, pads, dilation, (oh, ow), need_bias, eng)
    k, kb, p = fields.k, fields.kb, oh * ow
    # dY as (N*OH*OW, O), a view of the memory the layers above leave it in:
    # channels-last (N, OH, OW, O) or channel-major (O, N, OH, OW), copied to
    # one of them only when it is in neither.
    if channels_last(grad_out):
        g = xp.ascontiguousarray(grad_out.transpose(0, 2, 3, 1)).reshape(n * p, o)
    else:
        g = xp.ascontiguousarray(grad_out.transpose(1, 0, 2, 3)).reshape(o, n * p).T
    tpads = _transposed_pads(weight.shape[2:], pads, dilation)
    # dx channels-last like x, or for many channels (then, whatever x's layout,
    # row2im's adds run over C values where col2im's run over OW, or over
    # every other value with a stride).
    dx_last = channels_last(x) or x.shape[1] >= eng.tuning.channels_last_min
    as_conv = input_grad and stride == (1, 1) and tpads is not None and dx_last
    (t, bo), (lf, r) = pads
    hp, wp = x.shape[2] + t + bo, x.shape[3] + lf + r
    grid = input_grad and stride == (1, 1) and not dx_last  # _grid_scatter_cols
    per_sample = hp * wp if grid else p  # the tallest matrix a block makes
    work = _work(n, p, kb, o, eng)  # the weight gradient's (the input gradient's is alike)
    blk = block_size(n, kb, per_sample, dt.itemsize, grad_out, work, eng)

    starts = range(0, n, blk)
    parts = xp.empty((len(starts), kb, o), dtype=dt)  # each block's dW, allocated here
    per_sample = kb * o <= eng.tuning.per_sample_dw_max  # a tiny dW: a product per sample

    def block_dw(i: int) -> None:  # the block's fields gathered again, in cache
        n0 = starts[i]
        nb = min(blk, n - n0)
        with quiet_products():
            f = fields.block(n0, nb, eng.scratch("fields", blk * p * kb, grad_out))
            gb = g[n0 * p : (n0 + nb) * p]
            if per_sample:  # (nb, kb, P) @ (nb, P, O) -> (nb, kb, O), summed over the samples
                prods = xp.matmul(
                    _by_sample(f, nb, True).transpose(0, 2, 1), _by_sample(gb, nb, True)
                )
                xp.sum(prods, axis=0, out=parts[i])
            else:
                xp.matmul(f.T, gb, out=parts[i])  # (kb, nb*P) @ (nb*P, O)

    eng.map(block_dw, range(len(starts)), grad_out)
    dwt = sum_in_order(parts)  # dW as (K, O), summed in block order; with need_bias, db as row K
    db = dwt[k].copy() if need_bias else None  # the ones column's products: sum of dY
    dw = fields.to_weight(dwt)
    if not input_grad:
        return None, dw, db
    if as_conv and tpads is not None:  # (as_conv implies it; said again for the type checker)
        return _dx_as_conv(grad_out, weight, tpads, dilation, eng), dw, db
    scatter = _dx_rows if dx_last else _dx_cols
    return scatter(g, weight, x.shape, pads, stride, dilation, (oh, ow), blk, eng), dw, db


def _transposed_pads(kernel, pads: Pads, dilation) -> Pads | None:
    """The pads of the stride-1 convolution that maps ``dY`` to ``dx``.

    ``d*(k-1) - pad`` on each side; None when one is negative (a pad wider
    than the kernel's reach, whose rows and columns of ``x`` no output sees).
    """
    full = tuple(
        (d * (kn - 1) - lo, d * (kn - 1) - hi)
        for kn, (lo, hi), d in zip(kernel, pads, dilation, strict=True)
    )
    if min(full[0] + full[1]) < 0:
        return None
    return full  # type: ignore[return-value]


def _dx_as_conv(grad_out: Array, weight: Array, tpads: Pads, dilation, eng: Engine) -> Array:
    """The input gradient of a stride-1 convolution, computed as a convolution.

    Input position ``h`` receives ``W[.., i]`` from output ``h + pad - d*i``
    for every kernel offset ``i``: a correlation of ``dY``, padded by
    ``d*(k-1) - pad`` (:func:`_transposed_pads`), with the kernel flipped
    and its in and out channels swapped,

        dx = conv2d(pad(dY), W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))

    so it costs one gather and one GEMM per block, as the forward pass, and
    no scatter. On the 4-conv net's 3x3 layers this took the input gradient
    from 40-100 ms to 28-49 ms (batch 128, 2 threads) against the padded
    grid scatter it replaced.

    Shape: ``grad_out`` (N, O, OH, OW), ``weight`` (O, C, kH, kW) -> ``dx``
    (N, C, H, W), channels-last in memory when ``C >= Tuning.channels_last_min``.
    """
    flipped = weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)  # (C, O, kH, kW): a view
    return conv2d_forward(grad_out, flipped, None, (1, 1), tpads, dilation, eng=eng)


def _dx_rows(g, weight, x_shape, pads, stride, dilation, out_hw, blk, eng: Engine) -> Array:
    """The input gradient, channels-last: ``drows = dY @ W2`` scattered per block.

    ``W2`` is ``W`` as ``(O, kH*kW*C)``; the scatter is :func:`row2im_add`.

    Shape: ``g`` (N*OH*OW, O) -> ``dx`` (N, C, H, W), channels-last in memory.
    """
    xp = xp_of(g)
    n, c, h, w = x_shape
    o, kernel = weight.shape[0], weight.shape[2:]
    (t, bo), (lf, r) = pads
    p, k = out_hw[0] * out_hw[1], weight[0].size
    w2 = xp.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(o, k)
    dxpad = eng.fresh((n, h + t + bo, w + lf + r, c), g.dtype, g)  # each block zeroes its own

    def block(n0: int) -> None:  # its samples of dxpad are its own
        nb = min(blk, n - n0)
        buf = eng.scratch("fields", nb * p * k, g).reshape(nb * p, k)
        with quiet_products():
            drows = product(g[n0 * p : (n0 + nb) * p], w2, buf, nb, "rows", eng)
        dxpad[n0 : n0 + nb] = 0
        row2im_add(drows, dxpad[n0 : n0 + nb], kernel, stride, dilation, out_hw)

    eng.map(block, range(0, n, blk), g)
    # (N, Hp, Wp, C) -> (N, C, H, W): crop the padding; a view, kept channels-last.
    return dxpad[:, t : t + h, lf : lf + w].transpose(0, 3, 1, 2)


def _dx_cols(g, weight, x_shape, pads, stride, dilation, out_hw, blk, eng: Engine) -> Array:
    """The input gradient, channel-major: ``dcols = W2.T @ dY.T`` scattered per block.

    ``W2`` is ``W`` as ``(O, C*kH*kW)``. Stride 1 scatters on the padded grid
    (:func:`_grid_scatter_cols`), other strides by :func:`col2im_add`.

    Shape: ``g`` (N*OH*OW, O) -> ``dx`` (N, C, H, W), channel-major in memory.
    """
    n, c, h, w = x_shape
    o, kernel = weight.shape[0], weight.shape[2:]
    (t, bo), (lf, r) = pads
    oh, ow = out_hw
    p, k = oh * ow, weight[0].size
    w2 = weight.reshape(o, k)
    hp, wp = h + t + bo, w + lf + r
    dxpad = eng.fresh((c, n, hp, wp), g.dtype, g)  # each block writes its samples'

    def block(n0: int) -> None:  # its samples of dxpad are its own
        nb = min(blk, n - n0)
        gb = g[n0 * p : (n0 + nb) * p].T  # (O, nb*OH*OW)
        with quiet_products():
            if stride == (1, 1):  # dY on the padded grid, zeros where no output is
                g_grid = eng.scratch("grid", o * nb * hp * wp, g).reshape(o, nb, hp, wp)
                g_grid[:, :, oh:] = 0
                g_grid[:, :, :oh, ow:] = 0
                g_grid[:, :, :oh, :ow] = gb.reshape(o, nb, oh, ow)
                _grid_scatter_cols(g_grid, w2, dxpad[:, n0 : n0 + nb], kernel, dilation, eng)
            else:
                buf = eng.scratch("fields", k * nb * p, g).reshape(k, -1)
                dcols = product(w2.T, gb, buf, nb, "cols", eng)
                dxpad[:, n0 : n0 + nb] = 0
                col2im_add(dcols, dxpad[:, n0 : n0 + nb], kernel, stride, dilation, out_hw)

    eng.map(block, range(0, n, blk), g)
    # (C, N, Hp, Wp) -> (N, C, H, W): crop the padding; a view, kept channel-major.
    return dxpad[:, :, t : t + h, lf : lf + w].transpose(1, 0, 2, 3)


def _grid_scatter_cols(
    g_grid: Array,
    w2: Array,
    dxpad: Array,
    kernel: tuple[int, int],
    dilation: tuple[int, int],
    eng: Engine,
) -> None:
    """``dxpad`` = the input gradient of a stride-1 convolution, on the padded grid.

    With stride 1, output position ``(oh, ow)`` reads padded input position
    ``(oh + i*dH, ow + j*dW)`` for kernel offset ``(i, j)``. With ``dY`` laid
    out on the padded input's grid (zeros where no output is) and each
    sample's ``Hp x Wp`` positions flattened, every kernel offset is one fixed
    shift ``i*dH*Wp + j*dW`` along that flat axis:

        dcols = W2.T @ dY_grid                       # (C*kH*kW, nb*Hp*Wp)
        dx_flat[c, q] = sum_{i,j} dcols[(c, i, j), q - shift(i, j)]

    Grid positions with no output hold zeros in ``dY_grid``, so their
    columns are zero and add nothing, and no shift leaves its sample's grid.
    Each row of ``dcols`` starts after ``S`` zeros (``S``, the largest shift,
    so that ``q - shift`` never falls before its row), and the sum over the
    kernel offsets is one reduction over a strided view, whose offset ``(i,
    j)`` steps back by its shift: one NumPy call, in tap order as ``kH*kW``
    shifted adds would make it (0.22 against 0.40 ms for LeNet-5's second
    layer at batch 64, one thread), and one that releases the GIL for its
    whole length, so the blocks of two threads do not wait on each other
    (25 short adds, which hold it between calls, ran 0.72x as fast on two
    threads as on one).

    Shape: ``g_grid`` (O, nb, Hp, Wp), ``w2`` (O, C*kH*kW), ``dxpad``
    (C, nb, Hp, Wp) contiguous per channel, all written; ``dcols`` lives in
    this thread's ``"fields"`` work buffer.
    """
    xp = xp_of(g_grid)
    o, nb, hp, wp = g_grid.shape
    c = dxpad.shape[0]
    kh, kw = kernel
    k, lb = w2.shape[1], nb * hp * wp
    lead = (kh - 1) * dilation[0] * wp + (kw - 1) * dilation[1]  # the largest shift
    row = lead + lb
    buf = eng.scratch("fields", k * row, g_grid)
    dcols = buf.reshape(k, row)
    dcols[:, :lead] = 0
    product(w2.T, g_grid.reshape(o, lb), dcols[:, lead:], nb, "cols", eng)
    # (C, kH, kW, nb*Hp*Wp): element (c, i, j, q) is dcols[(c, i, j), lead + q - shift(i, j)]
    steps = (kh * kw * row, kw * row - dilation[0] * wp, row - dilation[1], 1)  # in values
    shifted = as_strided(buf[lead:], (c, kh, kw, lb), tuple(st * buf.itemsize for st in steps))
    xp.sum(shifted, axis=(1, 2), out=dxpad.reshape(c, lb))
