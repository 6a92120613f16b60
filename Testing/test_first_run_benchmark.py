"""benchmarks/predict_e2e.py runs unattended: fresh processes, every stage hooked, JSON under --out-dir.

The GPU benchmark is run by hand on the GPU machine; this runs the same script on the CPU on a tiny
volume, so a moved function (a hook target) or a broken child process is caught before that run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_end_to_end_benchmark_breaks_first_runs_down_by_stage_in_fresh_processes(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "predict_e2e.py"), "--device", "cpu",
                             "--shape", "16", "32", "32", "--patch", "32", "--out-dir", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "predict_e2e.json").read_text())
    cold, warm = report["processes"]["ours_auto_cold"], report["processes"]["ours_auto_warm"]
    assert cold["unhooked"] == [] and warm["unhooked"] == []   # every stage's function was found
    assert set(cold["runs"]) == {"first", "second", "worker"} and set(warm["runs"]) == {"first", "second"}
    first = cold["runs"]["first"]["stages"]
    for stage in ("interpreter", "import", "load", "plan", "probe", "read", "resample", "network",
                  "postprocess", "write"):
        assert first.get(stage, 0) > 0, stage
    assert cold["runs"]["first"]["total_s"] == pytest.approx(sum(first.values()), rel=1e-6)
    assert "load" not in cold["runs"]["worker"]["stages"]          # a kept predictor loads nothing again
    assert (tmp_path / "ours_auto_cold" / "first" / "ct.seg.nrrd").is_file()
    assert "ours_auto_cold first" in result.stdout
