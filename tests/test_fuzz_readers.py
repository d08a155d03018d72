"""A short, bounded, seeded fuzz run over every reader of outside bytes.

The long run is ``python -m fuzz.run --target NAME --seconds 600`` (RELIABILITY.md).
Here each target gets up to 200 mutants of its seeds (at most 2.5 s), in a child
process whose address space is capped 1 GiB above its size after warm-up: any
exception other than the target's documented refusal type, any input over 2 s,
or a peak-RSS growth over 300 MB fails the test.
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
    # 200 inputs per target is the run; 8 s is only a ceiling, so that a slow
    # moment of a shared machine cannot end a target before it has 50 inputs.
    cmd = [sys.executable, "-m", "fuzz.run", "--engine", "mutate", "--target", "all",
           "--seconds", "8", "--max-inputs", "200", "--crashes", str(tmp_path)]  # fmt: skip
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert [x["target"] for x in results] == list(TARGETS), r.stderr[-2000:]
    for x in results:
        assert x["findings"] == [], x
        assert x["inputs"] >= 50 and x["max_input_s"] < 2.0, x
        assert x["rss_growth_mb"] < 300, x
        if x["target"] != "upload":  # the page answers 4xx instead of raising
            assert x["refused"] > 0, x
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.mark.parametrize("path", sorted((ROOT / "fuzz" / "regressions").glob("*.bin")), ids=str)
def test_saved_findings_are_now_refused_cleanly(path, tmp_path):
    target = TARGETS[path.name.split("-")[0]]
    try:
        target.run(path.read_bytes(), tmp_path)
    except Exception as exc:
        assert target.allowed(exc), repr(exc)
