"""Activations and softmax, elementwise or along one axis; each backward beside its forward.

A backward takes what the chain rule needs: the input (ReLU, LeakyReLU) or
the output, where the derivative is a function of it (sigmoid, tanh, softmax).
"""

from __future__ import annotations

import numpy as np


def relu(input):
    """``y = max(x, 0)``, as ``torch.nn.functional.relu``. Shape: any, kept.

    >>> relu(np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 2.])
    """
    return np.maximum(input, 0)


def relu_backward(grad_output, input):
    """``dx = dy`` where ``x > 0``, else 0 (the gradient at 0 is 0, as PyTorch).

    The output ``y = relu(x)`` may stand for ``input``: it is positive where ``x`` is.

    >>> relu_backward(np.ones(3), np.array([-1.0, 0.0, 2.0]))
    array([0., 0., 1.])
    """
    return grad_output * (input > 0)


def leaky_relu(input, negative_slope=0.01):
    """``y = x`` where ``x > 0``, else ``negative_slope * x``. Shape: any, kept.

    >>> leaky_relu(np.array([-2.0, 3.0]), 0.1)
    array([-0.2,  3. ])
    """
    return np.where(input > 0, input, input * negative_slope)


def leaky_relu_backward(grad_output, input, negative_slope=0.01):
    """``dx = dy`` where ``x > 0``, else ``negative_slope * dy``.

    >>> leaky_relu_backward(np.ones(2), np.array([-2.0, 3.0]), 0.1)
    array([0.1, 1. ])
    """
    return np.where(input > 0, grad_output, grad_output * negative_slope)


def sigmoid(input):
    """``y = 1 / (1 + exp(-x))``, computed as ``exp(-log(1 + exp(-x)))`` so that no exp overflows.

    >>> sigmoid(np.array([-1e4, 0.0, 1e4]))
    array([0. , 0.5, 1. ])
    """
    return np.exp(-np.logaddexp(0, -input))


def sigmoid_backward(grad_output, output):
    """``dx = dy * y * (1 - y)`` from the output ``y``.

    >>> sigmoid_backward(np.ones(1), np.array([0.5]))
    array([0.25])
    """
    return grad_output * output * (1 - output)


def tanh(input):
    """``y = tanh(x)``. Shape: any, kept.

    >>> tanh(np.array([0.0]))
    array([0.])
    """
    return np.tanh(input)


def tanh_backward(grad_output, output):
    """``dx = dy * (1 - y**2)`` from the output ``y``.

    >>> tanh_backward(np.ones(1), np.array([0.5]))
    array([0.75])
    """
    return grad_output * (1 - output * output)


def softmax(input, dim):
    """``y_i = exp(x_i - m) / sum_j exp(x_j - m)`` along ``dim``, ``m`` the max (no overflow).

    Shape: any, kept.

    >>> softmax(np.log(np.array([[1.0, 3.0]])), dim=1)
    array([[0.25, 0.75]])
    """
    e = np.exp(input - input.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def softmax_backward(grad_output, output, dim):
    """``dx = y * (dy - sum(dy * y, dim))`` from the output ``y``.

    >>> softmax_backward(np.array([[1.0, 0.0]]), np.array([[0.25, 0.75]]), 1)
    array([[ 0.1875, -0.1875]])
    """
    return output * (grad_output - (grad_output * output).sum(axis=dim, keepdims=True))


def log_softmax(input, dim):
    """``y_i = x_i - m - log(sum_j exp(x_j - m))`` along ``dim``, ``m`` the max.

    >>> np.exp(log_softmax(np.log(np.array([[1.0, 3.0]])), dim=1))
    array([[0.25, 0.75]])
    """
    z = input - input.max(axis=dim, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=dim, keepdims=True))


def log_softmax_backward(grad_output, output, dim):
    """``dx = dy - exp(y) * sum(dy, dim)`` from the output ``y``.

    >>> log_softmax_backward(np.array([[1.0, 0.0]]), np.log(np.array([[0.25, 0.75]])), 1)
    array([[ 0.75, -0.75]])
    """
    return grad_output - np.exp(output) * grad_output.sum(axis=dim, keepdims=True)
