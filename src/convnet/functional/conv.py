"""Convolution as windowed views plus matrix products (im2col + GEMM).

Layout: activations NCHW, weights ``(O, C, kH, kW)`` as in PyTorch. The
forward pass gathers every receptive field into a column matrix

    cols[(c, i, j), (n, oh, ow)] = x_pad[n, c, oh*sH + i*dH, ow*sW + j*dW]

of shape ``(C*kH*kW, N*OH*OW)`` with one strided-view copy, then computes

    out = W.reshape(O, C*kH*kW) @ cols + b          # the GEMM

The backward pass is two GEMMs, ``dW = dY @ cols.T`` and ``dcols = W.T @ dY``,
and a scatter of ``dcols`` back to the input: for stride 1 on the padded grid
(each kernel offset one fixed shift along the flattened maps, see
:func:`_grid_scatter`), otherwise ``col2im`` with one strided slice-add per
kernel offset (``kH*kW`` adds over whole arrays, no ``np.add.at``).

Cache blocking: the column matrix is ``kH*kW`` times the size of the input
(nine times for a 3x3 kernel), too large to stay in the CPU cache between the
copy that writes it and the product that reads it. So the batch is taken in
blocks of samples whose columns fit in ``block_bytes`` (4 MiB by default):
each block is one im2col into a reused buffer and one GEMM (two backward),
all whole-array work; the loop runs over a handful of blocks, never over
single samples or pixels for their own sake. The backward pass rebuilds each
block's columns instead of keeping the forward's, which is cheaper than
reading them back from memory and keeps training memory near the size of the
activations.

Memory order: results are NCHW arrays (shape and indexing as PyTorch) stored
channel-major, the order the GEMM writes them in, so no step copies an
activation just to transpose it.
"""

from __future__ import annotations

from convnet.backend import Array, as_strided, empty_like_layout, xp_of

Pads = tuple[tuple[int, int], tuple[int, int]]  # ((top, bottom), (left, right))

#: Bytes of column matrix per block: sized to stay in a core's L2/L3 cache.
BLOCK_BYTES = 1 << 22


def out_size(size: int, kernel: int, stride: int, pad_total: int, dilation: int) -> int:
    """Output length along one axis: ``floor((size + pad - d*(k-1) - 1) / s) + 1``."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def pad2d(x: Array, pads: Pads, value: float = 0.0) -> Array:
    """Pad the last two axes of ``x`` (N, C, H, W) -> (N, C, H+t+b, W+l+r).

    Returns ``x`` itself when every pad is zero (no copy).
    """
    (t, b), (lf, r) = pads
    if t == b == lf == r == 0:
        return x
    n, c, h, w = x.shape
    out = empty_like_layout((n, c, h + t + b, w + lf + r), x)  # same memory order as x
    out[...] = value
    out[:, :, t : t + h, lf : lf + w] = x
    return out


def block_size(n: int, rows: int, positions: int, itemsize: int, block_bytes: int) -> int:
    """Samples per block so that a block's ``rows x positions`` columns fit ``block_bytes``."""
    return max(1, min(n, block_bytes // max(1, rows * positions * itemsize)))


def im2col(
    xpad: Array,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
    out: Array | None = None,
) -> Array:
    """Gather receptive fields of a padded input into columns.

    Shape: ``xpad`` (N, C, Hp, Wp) -> ``(C*kH*kW, N*OH*OW)``, written into
    ``out`` (a buffer of that shape) when given.
    """
    n, c = xpad.shape[:2]
    kh, kw = kernel
    oh, ow = out_hw
    s_n, s_c, s_h, s_w = xpad.strides
    # A (C, kH, kW, N, OH, OW) view: no copy yet; the copy below is the im2col.
    shape6 = (c, kh, kw, n, oh, ow)
    view = as_strided(
        xpad,
        shape6,
        (s_c, dilation[0] * s_h, dilation[1] * s_w, s_n, stride[0] * s_h, stride[1] * s_w),
    )
    xp = xp_of(xpad)
    if out is None:
        return xp.ascontiguousarray(view).reshape(c * kh * kw, n * oh * ow)
    xp.copyto(out.reshape(shape6), view)
    return out


def col2im(
    dcols: Array,
    x_shape: tuple[int, int, int, int],
    pads: Pads,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_hw: tuple[int, int],
) -> Array:
    """Scatter-add columns back to an input-shaped array (the adjoint of im2col).

    Shape: ``dcols`` (C*kH*kW, N*OH*OW) -> (N, C, H, W).
    """
    xp = xp_of(dcols)
    n, c, h, w = x_shape
    (t, b), (lf, r) = pads
    dxpad = xp.zeros((c, n, h + t + b, w + lf + r), dtype=dcols.dtype)
    _col2im_add(dcols, dxpad, kernel, stride, dilation, out_hw)
    # (C, N, Hp, Wp) -> (N, C, H, W): crop the padding; a view, kept channel-major.
    return dxpad[:, :, t : t + h, lf : lf + w].transpose(1, 0, 2, 3)


def _col2im_add(dcols: Array, dxpad: Array, kernel, stride, dilation, out_hw) -> None:
    """``dxpad`` (C, N, Hp, Wp) += the scatter of ``dcols`` (C*kH*kW, N*OH*OW)."""
    c, n = dxpad.shape[:2]
    kh, kw = kernel
    oh, ow = out_hw
    sh, sw = stride
    dh, dw = dilation
    d6 = dcols.reshape(c, kh, kw, n, oh, ow)
    for i in range(kh):  # loops over kernel offsets only
        r0 = i * dh
        for j in range(kw):
            c0 = j * dw
            dxpad[:, :, r0 : r0 + sh * (oh - 1) + 1 : sh, c0 : c0 + sw * (ow - 1) + 1 : sw] += d6[
                :, i, j
            ]


def conv2d_forward(
    x: Array,
    weight: Array,
    bias: Array | None,
    stride: tuple[int, int],
    pads: Pads,
    dilation: tuple[int, int],
    block_bytes: int = BLOCK_BYTES,
) -> Array:
    """2-D cross-correlation, PyTorch's ``conv2d`` (groups=1).

    ``y[n, o] = b[o] + sum_{c,i,j} W[o, c, i, j] * x_pad[n, c, s*oh + d*i, s*ow + d*j]``

    Shape: ``x`` (N, C, H, W), ``weight`` (O, C, kH, kW), ``bias`` (O,) ->
    ``y`` (N, O, OH, OW) with ``OH = floor((H + t + b - dH*(kH-1) - 1)/sH) + 1``.
    """
    xp = xp_of(x)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    oh = out_size(h, kh, stride[0], sum(pads[0]), dilation[0])
    ow = out_size(w, kw, stride[1], sum(pads[1]), dilation[1])
    xpad = pad2d(x, pads)
    rows, p = c * kh * kw, oh * ow
    w2 = weight.reshape(o, rows)
    out = xp.empty((o, n, oh, ow), dtype=x.dtype)
    blk = block_size(n, rows, p, x.dtype.itemsize, block_bytes)
    buf = xp.empty((rows, blk * p), dtype=x.dtype)
    for n0 in range(0, n, blk):  # blocks of the batch that fit in cache, one GEMM each
        nb = min(blk, n - n0)
        cols = im2col(xpad[n0 : n0 + nb], (kh, kw), stride, dilation, (oh, ow), buf[:, : nb * p])
        xp.matmul(w2, cols, out=out[:, n0 : n0 + nb].reshape(o, nb * p))
    if bias is not None:
        out += bias[:, None, None, None]
    # (O, N, OH, OW) -> (N, O, OH, OW): a view. The output stays channel-major
    # ("CNHW") in memory; the next layers work in that order and the next
    # convolution's im2col reads it as it is, so no transposing copy is made.
    return out.transpose(1, 0, 2, 3)


def conv2d_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    stride: tuple[int, int],
    pads: Pads,
    dilation: tuple[int, int],
    need_bias: bool,
    input_grad: bool = True,
    block_bytes: int = BLOCK_BYTES,
) -> tuple[Array | None, Array, Array | None]:
    """Gradients of :func:`conv2d_forward`, block by block.

    Per block of the batch, columns rebuilt in cache: ``dW += cols @ dY.T``
    (``dW`` transposed, the orientation OpenBLAS runs fastest when ``O`` is
    small) and ``dcols = W.T @ dY`` scattered back into the block's samples
    of ``dx``: on the padded grid for stride 1 (:func:`_grid_scatter`), by
    :func:`_col2im_add` otherwise.

    Shape: ``grad_out`` (N, O, OH, OW), ``x`` (N, C, H, W) -> ``dx`` (N, C, H, W)
    or None when not ``input_grad``, ``dW`` (O, C, kH, kW), ``db`` (O,) or None.
    """
    xp = xp_of(grad_out)
    n, o, oh, ow = grad_out.shape
    c, h, w = x.shape[1:]
    kh, kw = weight.shape[2:]
    rows, p = c * kh * kw, oh * ow
    dt = grad_out.dtype
    xpad = pad2d(x, pads)
    hp, wp = xpad.shape[2:]
    w2 = weight.reshape(o, rows)
    # (N, O, OH, OW) -> (O, N, OH, OW): the layout of the forward's GEMM output,
    # a free view when grad_out is channel-major, as the layers above leave it.
    g = grad_out.transpose(1, 0, 2, 3)
    grid = input_grad and stride == (1, 1)
    per_sample = hp * wp if grid else p  # the widest matrix a block makes
    blk = block_size(n, rows, per_sample, dt.itemsize, block_bytes)
    dxpad = xp.zeros((c, n, hp, wp), dtype=dt) if input_grad else None
    dwt = xp.zeros((rows, o), dtype=dt)  # dW transposed, (C*kH*kW, O)
    tmp = xp.empty((rows, o), dtype=dt)
    buf = xp.empty((rows, blk * per_sample), dtype=dt)
    gbuf = xp.zeros((o, blk, hp, wp), dtype=dt) if grid else None
    for n0 in range(0, n, blk):  # the forward's blocks, columns rebuilt in cache
        nb = min(blk, n - n0)
        cols = im2col(xpad[n0 : n0 + nb], (kh, kw), stride, dilation, (oh, ow), buf[:, : nb * p])
        gb = g[:, n0 : n0 + nb].reshape(o, nb * p)
        dwt += xp.matmul(cols, gb.T, out=tmp)
        if dxpad is None:
            continue
        if gbuf is not None:
            gbuf[:, :nb, :oh, :ow] = g[:, n0 : n0 + nb]  # its borders stay zero
            _grid_scatter(gbuf[:, :nb], w2, dxpad[:, n0 : n0 + nb], (kh, kw), dilation, buf)
        else:
            dcols = xp.matmul(w2.T, gb, out=buf[:, : nb * p])
            _col2im_add(dcols, dxpad[:, n0 : n0 + nb], (kh, kw), stride, dilation, (oh, ow))
    db = g.sum(axis=(1, 2, 3)) if need_bias else None
    dw = dwt.T.reshape(weight.shape)
    if dxpad is None:
        return None, dw, db
    (t, _), (lf, _) = pads
    # (C, N, Hp, Wp) -> (N, C, H, W): crop the padding; a view, kept channel-major.
    return dxpad[:, :, t : t + h, lf : lf + w].transpose(1, 0, 2, 3), dw, db


def _grid_scatter(
    g_grid: Array,
    w2: Array,
    dxpad: Array,
    kernel: tuple[int, int],
    dilation: tuple[int, int],
    buf: Array,
) -> None:
    """``dxpad`` += the input gradient of a stride-1 convolution, on the padded grid.

    With stride 1, output position ``(oh, ow)`` reads padded input position
    ``(oh + i*dH, ow + j*dW)`` for kernel offset ``(i, j)``. With ``dY`` laid
    out on the padded input's grid (zeros where no output is) and each
    sample's ``Hp x Wp`` grid flattened, every kernel offset is one fixed
    shift ``i*dH*Wp + j*dW`` along that flat axis:

        dcols = W.T @ dY_grid                       # (C*kH*kW, nb*Hp*Wp)
        dx_flat[c, q + shift(i, j)] += dcols[(c, i, j), q]

    so the scatter is ``kH*kW`` adds over long contiguous runs instead of
    short strided rows. Grid positions with no output hold zeros in
    ``dY_grid``, so their columns are zero and add nothing, and no shift
    leaves its sample's grid.

    Shape: ``g_grid`` (O, nb, Hp, Wp), ``w2`` (O, C*kH*kW), ``dxpad``
    (C, nb, Hp, Wp) contiguous per channel, ``buf`` at least (C*kH*kW, nb*Hp*Wp).
    """
    xp = xp_of(g_grid)
    o, nb, hp, wp = g_grid.shape
    c = dxpad.shape[0]
    kh, kw = kernel
    rows, lb = w2.shape[1], nb * hp * wp
    out = buf.reshape(-1)[: rows * lb].reshape(rows, lb)  # contiguous, in buf's memory
    dcols = xp.matmul(w2.T, g_grid.reshape(o, lb), out=out)
    d3 = dcols.reshape(c, kh * kw, lb)
    dx = dxpad.reshape(c, lb)  # a view: the block's samples are adjacent in memory
    for i in range(kh):  # loops over kernel offsets only
        for j in range(kw):
            shift = i * dilation[0] * wp + j * dilation[1]
            dx[:, shift:] += d3[:, i * kw + j, : lb - shift]
