"""The textbook: every layer's forward and backward in plain NumPy, written to be read.

Names, arguments, order and defaults are ``torch.nn.functional``'s, so the
two can be read side by side; each backward sits beside its forward and
returns the input's gradient (and the parameters', for layers that have
them). No threads, no buffers, no tuning: the fast versions of the same
functions are in :mod:`clearconv.engine`, and the tests prove the two equal.
Layers run on the engine; ``clearconv.nn.use_textbook(net)`` runs them on
these functions instead (for a debugger, or for teaching).

Start with :mod:`clearconv.functional.conv`.
"""

# fmt: off
from clearconv.functional.activation import (leaky_relu, leaky_relu_backward, log_softmax,
    log_softmax_backward, relu, relu_backward, sigmoid, sigmoid_backward, softmax,
    softmax_backward, tanh, tanh_backward)
from clearconv.functional.conv import (col2im, conv1d, conv1d_backward, conv2d, conv2d_backward,
    conv_padding, windows)
from clearconv.functional.dropout import dropout, dropout_mask
from clearconv.functional.linear import linear, linear_backward
from clearconv.functional.loss import (cross_entropy, cross_entropy_backward, mse_loss,
    mse_loss_backward)
from clearconv.functional.norm import batch_norm, batch_norm_backward
from clearconv.functional.pool import (adaptive_avg_pool2d, adaptive_avg_pool2d_backward,
    avg_pool1d, avg_pool1d_backward, avg_pool2d, avg_pool2d_backward, max_pool1d,
    max_pool1d_backward, max_pool2d, max_pool2d_backward, pool_out_size)
from clearconv.functional.transposed import (conv_transpose2d, conv_transpose2d_backward,
    upsample, upsample_backward)
# fmt: on

# Every public name above: the functions and their backwards (a re-export module,
# so the imports are listed once, here, rather than again in a literal __all__).
__all__ = sorted(n for n, v in dict(globals()).items() if callable(v) and not n.startswith("_"))
