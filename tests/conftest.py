"""Shared test setup: one BLAS thread (fast and deterministic on 2 cores), and in
CI no oracle, browser or data test may vanish as a skip."""

import os
import re

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import pytest
from hypothesis import settings

# CI draws the same examples on every run, so that whether a change lands does not
# hang on a draw; a run anywhere else draws new ones and may find new failures.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# -- in CI, a skipped oracle is a failure -----------------------------------------
# The parity tests skip when torch or onnxruntime cannot be imported, the browser
# test when Chromium or Playwright is missing, the real-data tests when
# ../shared/datasets is absent, the MPI tests without mpi4py or mpiexec: right on
# a laptop, but in CI (which installs all of them, see .ci/run) a skip would hide a
# broken install behind a green run.
# So when $CI is set, a skip whose reason names one of them fails.
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
PROVIDED_IN_CI = re.compile(
    r"torch|onnx|playwright|chromium|PIL|pillow|starlette|uvicorn|httpx|multipart"
    r"|matplotlib|threadpoolctl|hypothesis|librosa|scipy|MNIST|shared/datasets|CLEARCONV_DATA"
    r"|mpi4py|mpiexec",  # the `mpi` extra (.ci/run installs it, CLEARCONV_REQUIRE_MPI=1)
    re.IGNORECASE,
)


def _skip_reason(report) -> str:
    """The reason of a skipped report (its longrepr is (path, line, reason))."""
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)


def vanished_in_ci(report) -> str | None:
    """Why a skipped report must fail in CI, or None where a skip is fine."""
    if not (IN_CI and report.skipped) or hasattr(report, "wasxfail"):
        return None
    reason = _skip_reason(report)
    if PROVIDED_IN_CI.search(reason) or "tests/browser/" in report.nodeid:
        return f"skipped in CI, where it must run (CI=true; see .ci/run): {reason}"
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    why = vanished_in_ci(report)
    if why:
        report.outcome, report.longrepr = "failed", why


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # A module-level skip: failing the collect report would stop the session
    # (a collection error), so the skip is kept, listed and the exit code set.
    report = (yield).get_result()
    why = vanished_in_ci(report)
    if why:
        collector.config.stash.setdefault(_VANISHED, []).append(f"{report.nodeid}: {why}")


_VANISHED = pytest.StashKey[list]()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    vanished = config.stash.get(_VANISHED, [])
    if vanished:
        terminalreporter.section("skipped in CI, counted as failures", red=True)
        for line in vanished:
            terminalreporter.line(line)


def pytest_sessionfinish(session, exitstatus):
    if session.config.stash.get(_VANISHED, []) and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_configure(config):
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
