"""The engine: clearconv's forward and backward functions made fast.

The layers in :mod:`clearconv.nn` call these functions; each takes arrays and
settings and returns arrays, and keeps no state of its own. What they share
(threads, buffer pools, tuning) lives in one visible object, an
:class:`Engine`; every function takes it as its last keyword, ``eng``, and by
default uses :data:`DEFAULT`, the engine of the layers and containers.

Map:

- ``core.py``: :class:`Engine` (tuning, threads and buffer pools in one
  object; work cut into slices; result arrays laid out like their inputs)
  and :data:`DEFAULT`.
- ``tuning.py``: :class:`Tuning`, every constant the fast paths choose by,
  with what it means and what it bought.
- ``threads.py``: :class:`~clearconv.engine.threads.ThreadPool`, helper
  threads and the hold on BLAS's own threads.
- ``memory.py``: :class:`~clearconv.engine.memory.Workspace` (per-thread
  scratch buffers) and :class:`~clearconv.engine.memory.ResultPool` (the
  memory of dropped results, reused).
- ``fork.py``: the one at-fork hook that resets both pools in a forked child.
- ``plan.py``: the planner the containers call: which layers run in place,
  ReLU moved after max pooling, the first layer's unused input gradient
  skipped; :class:`~clearconv.engine.plan.Traits` declares what a layer
  allows.
- ``conv.py``: convolution as blocked im2row/im2col gathers and GEMMs; four
  input-gradient strategies.
- ``pool.py``: max and average pooling, separable or tap by tap, in slices.
- ``activation.py``: ReLU (in slices, against a row of zeros), the other
  activations, softmax.
- ``linear.py``: the affine map as sliced GEMMs.
- ``norm.py``: batch normalisation in slices of the batch.
- ``loss.py``: cross-entropy and mean squared error.
"""

from clearconv.engine.core import DEFAULT, Engine
from clearconv.engine.tuning import Tuning

__all__ = ["DEFAULT", "Engine", "Tuning"]
