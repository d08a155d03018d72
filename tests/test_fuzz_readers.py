"""A short, bounded, seeded fuzz run over every reader of outside bytes.

The long run is ``python -m fuzz.run --target NAME --seconds 600`` (RELIABILITY.md).
Here each target gets 200 mutants of its seeds, in a child process whose
address space is capped 1 GiB above its size after warm-up: any exception other
than the target's documented refusal type, an input that hangs (over 10 s), or a
peak-RSS growth over 300 MB fails the test. The run is counted in inputs, not
seconds, so that a loaded machine cannot shorten it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PIL")
pytest.importorskip("onnx")
pytest.importorskip("starlette")
pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fuzz.targets import TARGETS  # noqa: E402


def test_short_fuzz_run_of_every_reader(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env["PYTHONPATH"] = str(ROOT)
    # 200 inputs per target is the run. --seconds is set past the subprocess's
    # timeout so that time never ends a target early; the per-input limit only
    # tells a hang (a finding) from a slow moment of a shared machine.
    cmd = [sys.executable, "-m", "fuzz.run", "--engine", "mutate", "--target", "all",
           "--seconds", "3600", "--max-inputs", "200", "--timeout", "10",
           "--crashes", str(tmp_path)]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [x["target"] for x in results] == list(TARGETS), r.stderr[-2000:]
    for x in results:
        assert x["findings"] == [], x
        assert x["inputs"] == 200, x
        assert x["rss_growth_mb"] < 300, x
        if x["target"] != "upload":  # the page answers 4xx instead of raising
            assert x["refused"] > 0, x
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("path", sorted((ROOT / "fuzz" / "regressions").glob("*.bin")), ids=str)
def test_saved_findings_are_now_refused_cleanly(path, tmp_path):
    # Each saved input is bad: the reader must refuse it with its documented
    # error (accepting it, or failing any other way, is the finding back).
    target = TARGETS[path.name.split("-")[0]]
    with pytest.raises(Exception) as refusal:
        target.run(path.read_bytes(), tmp_path)
    assert target.allowed(refusal.value), repr(refusal.value)
