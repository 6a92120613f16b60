"""`nnmamba demo` with the shipped models on the embedded sample, through the installed command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import SimpleITK as sitk

from nnmamba.model_card import default_model

REPO = Path(__file__).resolve().parent.parent.parent


@pytest.mark.slow
def test_demo_runs_all_three_tasks_on_the_sample_and_writes_every_output(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NNMAMBA_MODELS_DIR"}
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "nnmamba", "demo", "--output", str(out), "--device", "cpu"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task in ("segmentation", "landmarks", "classification", "total"):
        assert any(line.startswith(task) for line in proc.stdout.splitlines()), proc.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "sample_brain_mr.mrk.json", "sample_brain_mr.probabilities.json", "sample_brain_mr.probabilities.tsv",
        "sample_brain_mr.seg.nrrd", "sample_brain_mr.summary.png", "sample_brain_mr.volumes.tsv"]
    seg = sitk.ReadImage(str(out / "sample_brain_mr.seg.nrrd"))
    assert seg.GetSize() == (256, 256, 25)
    untrained = [default_model(t) for t in ("segmentation", "landmarks", "classification")
                 if not default_model(t).trained]
    assert ("UNTRAINED" in proc.stderr) == bool(untrained)

    rerun = subprocess.run([sys.executable, "-m", "nnmamba", "demo", "--output", str(out), "--device", "cpu"],
                           capture_output=True, text=True, env=env, cwd=REPO, timeout=600)
    assert rerun.returncode == 4 and "--overwrite" in rerun.stderr
