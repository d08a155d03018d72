"""The affine map of a fully connected layer."""

from __future__ import annotations


def linear(input, weight, bias=None):
    """``y = x @ W.T + b``, as ``torch.nn.functional.linear``.

    Shape: ``input`` (*, in), ``weight`` (out, in), ``bias`` (out,) -> (*, out).

    >>> import numpy as np
    >>> linear(np.array([[1.0, 2.0]]), np.array([[1.0, 1.0], [0.0, -1.0]]), np.array([0.5, 0.0]))
    array([[ 3.5, -2. ]])
    """
    y = input @ weight.T
    return y if bias is None else y + bias


def linear_backward(grad_output, input, weight):
    """Gradients of :func:`linear`: ``(grad_input, grad_weight, grad_bias)``.

    ``dx = dy @ W``, ``dW = dy.T @ x`` and ``db = sum(dy)``, summed over every
    leading axis (the batch, and more when the input has them).

    Shape: ``grad_output`` (*, out) -> (*, in), (out, in), (out,).

    >>> import numpy as np
    >>> x, w = np.array([[3.0]]), np.array([[1.0], [1.0]])
    >>> dx, dw, db = linear_backward(np.array([[1.0, 2.0]]), x, w)
    >>> dx.tolist(), dw.tolist(), db.tolist()
    ([[3.0]], [[3.0], [6.0]], [1.0, 2.0])
    """
    g = grad_output.reshape(-1, weight.shape[0])  # (*, out) -> (M, out)
    x = input.reshape(-1, weight.shape[1])  # (*, in) -> (M, in)
    return grad_output @ weight, g.T @ x, g.sum(axis=0)
