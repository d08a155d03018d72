"""``benchmarks.run --against REV``'s plumbing: the temporary worktree, the package name,
and the worker's PYTHONPATH. Nothing here times anything."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from benchmarks.revision import (
    Revision,
    RevisionError,
    checkout,
    package_name,
    python_path,
    resolve,
)

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git on PATH")


def _git(repo, *args):
    cmd = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    return subprocess.run([*cmd, *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path):
    """A repository whose first commit (tag "old") has src/convnet, its second src/clearconv."""
    root = tmp_path / "repo"
    (root / "src" / "convnet").mkdir(parents=True)
    (root / "src" / "convnet" / "__init__.py").write_text("WHO = 'convnet at old'\n")
    _git(tmp_path, "init", "-q", str(root))
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "old")
    _git(root, "tag", "old")
    _git(root, "mv", "src/convnet", "src/clearconv")
    (root / "src" / "clearconv" / "__init__.py").write_text("WHO = 'clearconv at new'\n")
    _git(root, "commit", "-q", "-am", "new")
    return root


def _worktrees(repo):
    return [line for line in _git(repo, "worktree", "list", "--porcelain").splitlines()
            if line.startswith("worktree ")]  # fmt: skip


def test_checkout_before_the_rename_finds_convnet_and_cleans_up(repo):
    with checkout(repo, "old") as rev:
        assert isinstance(rev, Revision)
        assert rev.package == "convnet"
        assert rev.sha == _git(repo, "rev-parse", "old^{commit}").strip()
        assert (rev.src / "convnet" / "__init__.py").read_text() == "WHO = 'convnet at old'\n"
        assert rev.label == f"old ({rev.sha[:7]})"
        assert len(_worktrees(repo)) == 2
        # the user's checkout is untouched: still the new commit, still clearconv
        assert (repo / "src" / "clearconv").is_dir() and not (repo / "src" / "convnet").exists()
        root = rev.root
    assert not root.exists() and not root.parent.exists()
    assert _worktrees(repo) == [f"worktree {repo}"]
    assert _git(repo, "status", "--porcelain") == ""


def test_checkout_after_the_rename_finds_clearconv(repo):
    with checkout(repo, "HEAD") as rev:
        assert rev.package == "clearconv"
        assert rev.label == f"HEAD ({rev.sha[:7]})"


def test_worktree_is_removed_when_the_benchmark_fails(repo):
    with pytest.raises(RuntimeError, match="worker ended"), checkout(repo, "old") as rev:
        (rev.src / "__pycache__").mkdir()  # untracked files, as a run leaves
        root = rev.root
        raise RuntimeError("worker ended")
    assert not root.exists()
    assert _worktrees(repo) == [f"worktree {repo}"]


def test_bad_revisions_say_what_is_wrong(repo, tmp_path):
    with pytest.raises(RevisionError, match="'nope' names no commit"):
        with checkout(repo, "nope"):
            pass
    with pytest.raises(RevisionError, match="expects a git revision"):
        resolve(repo, "--all")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RevisionError, match="not a git repository"):
        resolve(tmp_path / "plain", "HEAD")
    assert _worktrees(repo) == [f"worktree {repo}"]


def test_a_revision_without_the_library_is_refused(repo):
    _git(repo, "rm", "-q", "-r", "src")
    (repo / "README").write_text("no library\n")
    _git(repo, "add", "README")
    _git(repo, "commit", "-q", "-m", "empty")
    with pytest.raises(RevisionError, match="holds none of the packages clearconv, convnet"):
        with checkout(repo, "HEAD"):
            pass
    assert _worktrees(repo) == [f"worktree {repo}"]


def test_package_name_prefers_clearconv(tmp_path):
    for name in ("convnet", "clearconv"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
        assert package_name(tmp_path) == name


def test_the_revision_side_imports_the_revision(repo):
    pytest.importorskip("threadpoolctl")  # benchmarks.run pins threads with it
    from benchmarks.run import sides

    with checkout(repo, "old") as rev:
        keys = [(s.key, s.package) for s in sides(rev, frameworks=("clearconv",))]
        assert keys == [("clearconv", "clearconv"), ("rev", "convnet")]
        side = sides(rev, frameworks=("clearconv",))[1]
        env = side.env()
        assert env["PYTHONPATH"].split(os.pathsep)[0] == str(rev.src)
        out = subprocess.run(
            [sys.executable, "-c", f"import {side.package} as p; print(p.WHO)"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.strip() == "convnet at old"


def test_python_path_puts_src_first():
    assert python_path("/r/src", {})["PYTHONPATH"] == "/r/src"
    env = python_path("/r/src", {"PYTHONPATH": "/a", "HOME": "/h"})
    assert env == {"PYTHONPATH": f"/r/src{os.pathsep}/a", "HOME": "/h"}


class _ScriptedWorkers:
    """Stands in for run.Workers: answers each side's requests from a script, in order."""

    def __init__(self, script):
        self.procs = dict.fromkeys(script)
        self.script = {k: list(v) for k, v in script.items()}
        self.order = []

    def ask(self, key, request):
        self.order.append(key)
        return self.script[key].pop(0)


def test_measure_pairs_each_round_and_rotates_the_order(monkeypatch):
    pytest.importorskip("threadpoolctl")
    from benchmarks import run

    monkeypatch.setattr(run, "PAUSE", 0.0)
    # Round by round the machine drifts (x1, x3, x2); within a round rev is 1.25x
    # slower than this tree, and torch 2x slower.
    workers = _ScriptedWorkers(
        {"clearconv": [4.0, 12.0, 8.0], "rev": [5.0, 15.0, 10.0], "torch": [8.0, 24.0, 16.0]}
    )
    out = run.measure(workers, {"task": "x"}, repeats=3)
    assert workers.order == ["clearconv", "rev", "torch", "rev", "torch", "clearconv",
                             "torch", "clearconv", "rev"]  # fmt: skip
    assert out["clearconv"] == 8.0 and out["rev"] == 10.0 and out["torch"] == 16.0
    assert out["vs_rev"] == pytest.approx(1.25)
    assert out["paired"] == pytest.approx(2.0)


def test_the_report_adds_the_revision_columns(tmp_path):
    pytest.importorskip("threadpoolctl")
    from benchmarks import run

    rev = Revision("HEAD~1", "0123456789" * 4, tmp_path, "convnet")
    one = {"clearconv": 100.0, "rev": 80.0, "vs_rev": 1.25, "torch": 50.0, "paired": 2.0}
    res = {"ceiling1": 10.0, "ceiling": 20.0, "train": {("lenet5", 64): one}, "infer": {},
           "flops": {}, "layers": [], "memory": {}, "scaling": None, "steal": [],
           "retried": 0}  # fmt: skip
    info = {"date": "d", "cpu": "c", "python": "p", "numpy": "n", "torch": "t", "clearconv": "v"}
    md = run.markdown(info, 2, res, "cmd", repeats=3, rev=rev)
    assert (
        "| model | batch | clearconv | clearconv@HEAD~1 (0123456) | vs REV | PyTorch | ratio |"
        in md
    )
    assert "| lenet5 | 64 | 100 | 80 | 1.25 | 50 | 2.00 |" in md
    assert "package `convnet`" in md
    plain = run.markdown(info, 2, res, "cmd", repeats=3)
    assert "| model | batch | clearconv | PyTorch | ratio |" in plain and "vs REV" not in plain
