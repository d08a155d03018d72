"""How to install an optional extra, worded for both ways people get clearconv."""

from __future__ import annotations

__all__ = ["install_hint"]


def install_hint(extra: str) -> str:
    """The pip command for ``extra``: from PyPI, and from a source checkout.

    Only ``clearconv`` names this project on PyPI (``convnet`` there is another
    one), and a checkout installs its own folder, so both forms are given.

    Example
    -------
    >>> install_hint("cli")
    'pip install "clearconv[cli]" (in a source checkout: pip install -e ".[cli]")'
    """
    return f'pip install "clearconv[{extra}]" (in a source checkout: pip install -e ".[{extra}]")'
