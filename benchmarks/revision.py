"""Another git revision of the library, checked out beside this tree for ``run --against``.

:func:`checkout` adds a detached ``git worktree`` of the revision in a
temporary folder and removes it afterwards; the benchmark workers of that side
get its ``src/`` on ``PYTHONPATH`` and import its package, which is
``clearconv``, or ``convnet`` for revisions from before the rename
(:func:`package_name`). Only the library comes from the revision: the
benchmark code (rows, models, timing) is this tree's, so both sides time
exactly the same work.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

#: Import names the library has had, newest first.
PACKAGES = ("clearconv", "convnet")


class RevisionError(ValueError):
    """A revision that cannot be checked out or holds no library."""


def package_name(src: Path) -> str:
    """The import name of the library under ``src``: ``"clearconv"`` or, before the rename,
    ``"convnet"``.

    Raises
    ------
    RevisionError
        When ``src`` holds neither package.
    """
    for name in PACKAGES:
        if (Path(src) / name / "__init__.py").is_file():
            return name
    raise RevisionError(f"{src} holds none of the packages {', '.join(PACKAGES)}")


def _git(repo: Path, *args: str) -> str:
    """``git -C repo args``'s stdout; RevisionError with git's own message on failure."""
    try:
        res = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise RevisionError("comparing against a revision needs git on PATH") from None
    if res.returncode != 0:
        err = res.stderr.strip()
        why = err.splitlines()[-1] if err else f"exit {res.returncode}"
        raise RevisionError(f"git {' '.join(args)}: {why}")
    return res.stdout.strip()


def resolve(repo: Path, rev: str) -> str:
    """The full commit hash ``rev`` names in ``repo`` (a branch, tag, ``HEAD~1``, a hash).

    Raises
    ------
    RevisionError
        When ``repo`` is not a git checkout or ``rev`` names no commit there.
    """
    if not rev or rev.startswith("-"):
        raise RevisionError(f"--against expects a git revision, got {rev!r}")
    _git(repo, "rev-parse", "--git-dir")  # says "not a git repository" where it is not
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except RevisionError:
        raise RevisionError(f"{rev!r} names no commit in {repo}") from None


@dataclass(frozen=True)
class Revision:
    """A checked-out revision: what the user asked for, the commit, and where it lies."""

    rev: str  # as given: "HEAD~1", "main", a hash
    sha: str
    root: Path  # the temporary worktree
    package: str  # "clearconv" or "convnet"

    @property
    def src(self) -> Path:
        return self.root / "src"

    @property
    def label(self) -> str:
        """``"HEAD~1 (7cb584c)"``: the revision as given and its short hash."""
        short = self.sha[:7]
        return short if self.rev.startswith(short) else f"{self.rev} ({short})"


def python_path(src: str | os.PathLike, base: Mapping[str, str]) -> dict[str, str]:
    """``base`` (an environment) with ``src`` first on ``PYTHONPATH``.

    >>> python_path(Path("/r/src"), {"PYTHONPATH": "/a"})["PYTHONPATH"] == f"/r/src{os.pathsep}/a"
    True
    """
    env = dict(base)
    rest = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(src) if not rest else f"{src}{os.pathsep}{rest}"
    return env


@contextlib.contextmanager
def checkout(repo: Path, rev: str) -> Iterator[Revision]:
    """``rev`` of ``repo`` in a temporary detached worktree, removed on exit.

    ``git worktree add --detach`` moves no branch and leaves ``repo``'s own
    checkout alone; on exit the worktree is removed (``--force``: the
    benchmark leaves ``__pycache__`` in it) and pruned from ``repo``'s list.

    Raises
    ------
    RevisionError
        For a revision that names no commit, or one without the library.
    """
    sha = resolve(repo, rev)
    tmp = Path(tempfile.mkdtemp(prefix="clearconv-against-"))
    root = tmp / "tree"
    try:
        _git(repo, "worktree", "add", "--detach", "--quiet", str(root), sha)
        yield Revision(rev, sha, root, package_name(root / "src"))
    finally:
        with contextlib.suppress(RevisionError):
            _git(repo, "worktree", "remove", "--force", str(root))
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(RevisionError):
            _git(repo, "worktree", "prune")
