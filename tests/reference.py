"""Readable loop implementations, kept in the tests only, as references.

They follow the textbook definitions one output element at a time: slow and
obviously right. The vectorised engine is compared against them.
"""

from __future__ import annotations

import math

import numpy as np


def conv2d_loops(x, w, b, stride, pads, dilation):
    """y[n,o,i,j] = b[o] + sum_{c,p,q} w[o,c,p,q] * xpad[n,c,i*s+p*d, j*s+q*d]."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    (t, bo), (le, r) = pads
    xp = np.zeros((n, c, h + t + bo, wd + le + r), dtype=np.float64)
    xp[:, :, t : t + h, le : le + wd] = x
    oh = (h + t + bo - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + le + r - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, o, oh, ow))
    for ni in range(n):
        for oi in range(o):
            for i in range(oh):
                for j in range(ow):
                    acc = 0.0 if b is None else float(b[oi])
                    for ci in range(c):
                        for p in range(kh):
                            for q in range(kw):
                                acc += (
                                    w[oi, ci, p, q]
                                    * xp[
                                        ni,
                                        ci,
                                        i * stride[0] + p * dilation[0],
                                        j * stride[1] + q * dilation[1],
                                    ]
                                )
                    y[ni, oi, i, j] = acc
    return y


def conv2d_grads_loops(x, w, g, stride, pads, dilation):
    """(dx, dw) of conv2d_loops by the chain rule, one output element at a time.

    Each output gradient ``g[n,o,i,j]`` flows to every input element its window
    read (times the weight) and to every weight (times the input it met).
    """
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    (t, bo), (le, r) = pads
    xp = np.zeros((n, c, h + t + bo, wd + le + r), dtype=np.float64)
    xp[:, :, t : t + h, le : le + wd] = x
    dxp = np.zeros_like(xp)
    dw = np.zeros(w.shape)
    for ni in range(n):
        for oi in range(o):
            for i in range(g.shape[2]):
                for j in range(g.shape[3]):
                    for ci in range(c):
                        for p in range(kh):
                            for q in range(kw):
                                r_ = i * stride[0] + p * dilation[0]
                                c_ = j * stride[1] + q * dilation[1]
                                dxp[ni, ci, r_, c_] += g[ni, oi, i, j] * w[oi, ci, p, q]
                                dw[oi, ci, p, q] += g[ni, oi, i, j] * xp[ni, ci, r_, c_]
    return dxp[:, :, t : t + h, le : le + wd], dw


def _pool_len(size, k, s, p, d, ceil_mode):
    span = size + 2 * p - d * (k - 1) - 1
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def pool2d_loops(x, kind, k, s, p, d=(1, 1), ceil_mode=False, count_include_pad=True):
    """Max or average pooling one window at a time, PyTorch's rules.

    Returns the output and, for max, the gradient routing of d(sum(y*g))/dx as a
    function of g (first maximum in row-major order wins).
    """
    n, c, h, w = x.shape
    oh = _pool_len(h, k[0], s[0], p[0], d[0], ceil_mode)
    ow = _pool_len(w, k[1], s[1], p[1], d[1], ceil_mode)
    y = np.zeros((n, c, oh, ow))
    winners = {}
    for ni in range(n):
        for ci in range(c):
            for i in range(oh):
                for j in range(ow):
                    best, arg, total, count = -np.inf, None, 0.0, 0
                    for a in range(k[0]):
                        for b in range(k[1]):
                            r = i * s[0] - p[0] + a * d[0]
                            q = j * s[1] - p[1] + b * d[1]
                            inside = 0 <= r < h and 0 <= q < w
                            in_pad = -p[0] <= r < h + p[0] and -p[1] <= q < w + p[1]
                            if inside:
                                val = x[ni, ci, r, q]
                                total += val
                                if val > best:
                                    best, arg = val, (r, q)
                            if inside or (count_include_pad and in_pad):
                                count += 1
                    if kind == "max":
                        y[ni, ci, i, j] = best
                        winners[(ni, ci, i, j)] = arg
                    else:
                        y[ni, ci, i, j] = total / count
    return y, winners


def maxpool_grad_loops(x_shape, winners, g):
    dx = np.zeros(x_shape)
    for (ni, ci, i, j), arg in winners.items():
        if arg is None:  # a dilated window that meets only padding: -inf, no gradient
            continue
        r, q = arg
        dx[ni, ci, r, q] += g[ni, ci, i, j]
    return dx
