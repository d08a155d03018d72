"""One at-fork hook for the engine's pools: a forked child resets each of them.

A forked child has only the thread that forked: the helper threads of a
:class:`~clearconv.engine.threads.ThreadPool` are gone, and a lock another
thread held (a :class:`~clearconv.engine.memory.ResultPool`'s) stays held.
``os.register_at_fork`` takes no arguments and cannot be undone, so one hook
serves every pool, each held weakly.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

_IN_CHILD: weakref.WeakSet[Any] = weakref.WeakSet()


def reset_after_fork(obj: Any) -> None:
    """Call ``obj._after_fork()`` in every forked child while ``obj`` lives."""
    _IN_CHILD.add(obj)


def _reset_in_child() -> None:
    for obj in list(_IN_CHILD):
        obj._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_reset_in_child)
