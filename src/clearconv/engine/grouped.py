"""Grouped and depthwise convolution: one batched product over the groups.

With ``groups=G`` the input channels are cut into ``G`` groups of ``C/G``
and the outputs into ``G`` groups of ``O/G``; group ``g``'s outputs see only
group ``g``'s inputs. The receptive fields are gathered once for all
channels, channel-major (:func:`clearconv.engine.conv.im2col`, rows ordered
``(c, i, j)``), so that the rows of group ``g`` are one contiguous slab:

    cols: (C*kH*kW, N*OH*OW) -> (G, C/G*kH*kW, N*OH*OW)    # a reshape, no copy
    y = W.reshape(G, O/G, C/G*kH*kW) @ cols                # one batched matmul
      -> (G, O/G, N*OH*OW) = (O, N*OH*OW)                  # channel-major, no copy

Depthwise convolution (``G = C``) is the same product with ``C/G = 1``: no
loop over channels in Python, ``G`` small products inside one matmul call.
The result is handed on channel-major, as :func:`~clearconv.engine.conv.conv2d_forward`
does for few channels. ``groups=1`` never comes here: the blocked, threaded
path of :mod:`clearconv.engine.conv` is faster for it.
"""

from __future__ import annotations

from clearconv.backend import Array, quiet_products, xp_of
from clearconv.engine.conv import Pads, col2im_add, im2col, out_size, pad2d


def _cols(x: Array, weight_shape, stride, pads: Pads, dilation, groups: int):
    """The gathered fields per group and the output size.

    Shape: ``x`` (N, C, H, W) -> ``(G, C/G*kH*kW, N*OH*OW)``, ``(OH, OW)``.
    """
    n, c, h, w = x.shape
    _, cg, kh, kw = weight_shape
    oh = out_size(h, kh, stride[0], sum(pads[0]), dilation[0])
    ow = out_size(w, kw, stride[1], sum(pads[1]), dilation[1])
    cols = im2col(pad2d(x, pads), (kh, kw), stride, dilation, (oh, ow))  # (C*kH*kW, N*OH*OW)
    return cols.reshape(groups, cg * kh * kw, n * oh * ow), (oh, ow)


def conv2d_forward(
    x: Array,
    weight: Array,
    bias: Array | None,
    stride: tuple[int, int],
    pads: Pads,
    dilation: tuple[int, int],
    groups: int,
) -> Array:
    """PyTorch's ``conv2d`` with ``groups``: each group's outputs from its own inputs.

    Shape: ``x`` (N, C, H, W), ``weight`` (O, C/G, kH, kW), ``bias`` (O,) ->
    (N, O, OH, OW), channel-major in memory, ``OH`` as in ``conv2d_forward``.
    """
    xp = xp_of(x)
    n = x.shape[0]
    o = weight.shape[0]
    cols, (oh, ow) = _cols(x, weight.shape, stride, pads, dilation, groups)
    wmat = weight.reshape(groups, o // groups, -1)  # (G, O/G, C/G*kH*kW)
    with quiet_products():
        y = xp.matmul(wmat, cols).reshape(o, n * oh * ow)  # (G, O/G, N*P) -> (O, N*P)
    if bias is not None:
        y += bias[:, None]
    return y.reshape(o, n, oh, ow).transpose(1, 0, 2, 3)  # a view: (O, N, OH, OW) -> NCHW


def conv2d_backward(
    grad_out: Array,
    x: Array,
    weight: Array,
    stride: tuple[int, int],
    pads: Pads,
    dilation: tuple[int, int],
    groups: int,
    need_bias: bool,
    input_grad: bool = True,
) -> tuple[Array | None, Array, Array | None]:
    """Gradients of :func:`conv2d_forward`: ``(dx or None, dW, db or None)``.

    Per group ``g``: ``dW[g] = dY[g] @ cols[g].T`` and ``dcols[g] = W[g].T @ dY[g]``,
    each one batched matmul; ``dcols`` is scattered back by
    :func:`~clearconv.engine.conv.col2im_add` (one slice-add per kernel offset).

    Shape: ``grad_out`` (N, O, OH, OW) -> ``dx`` (N, C, H, W), ``dW`` (O, C/G, kH, kW), ``db`` (O,).
    """
    xp = xp_of(grad_out)
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    cols, (oh, ow) = _cols(x, weight.shape, stride, pads, dilation, groups)
    # dY: (N, O, OH, OW) -> (O, N, OH, OW) -> (G, O/G, N*OH*OW), channel-major like cols
    g = xp.ascontiguousarray(grad_out.transpose(1, 0, 2, 3)).reshape(groups, o // groups, -1)
    with quiet_products():
        dw = xp.matmul(g, cols.transpose(0, 2, 1)).reshape(weight.shape)  # (G, O/G, K)
    db = grad_out.sum(axis=(0, 2, 3)) if need_bias else None
    if not input_grad:
        return None, dw, db
    wmat = weight.reshape(groups, o // groups, -1)
    with quiet_products():
        dcols = xp.matmul(wmat.transpose(0, 2, 1), g)  # (G, C/G*kH*kW, N*P)
    (t, b), (lf, r) = pads
    dxpad = xp.zeros((c, n, h + t + b, w + lf + r), dtype=grad_out.dtype)
    col2im_add(dcols.reshape(c * kh * kw, -1), dxpad, (kh, kw), stride, dilation, (oh, ow))
    # (C, N, Hp, Wp) -> (N, C, H, W): crop the padding; a view, channel-major.
    return dxpad[:, :, t : t + h, lf : lf + w].transpose(1, 0, 2, 3), dw, db
