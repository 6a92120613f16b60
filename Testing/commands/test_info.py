"""`nnmamba info` runs in a fresh process, names the scan backend it will use and shows the plans."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def run_info(*args, env_extra=None):
    env = dict(os.environ)
    env.pop("NNMAMBA_SCAN_BACKEND", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "nnmamba", "info", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_info_prints_versions_backends_and_the_backend_auto_picks_on_cpu():
    result = run_info()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "torch" in out and "numpy" in out and "SimpleITK" in out
    assert "reference  cpu      yes" in out
    assert "mamba_ssm  cpu      no" in out
    assert "scan backend that will be used (asked for: auto):\n  cpu      torch" in out


def test_info_json_follows_the_environment_override():
    result = run_info("--json", env_extra={"NNMAMBA_SCAN_BACKEND": "reference"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["scan_backend"]["cpu"] == "reference"
    assert report["requested"] == "reference"


def test_info_fails_when_the_environment_asks_for_a_backend_that_cannot_run():
    result = run_info(env_extra={"NNMAMBA_SCAN_BACKEND": "mamba_ssm"})
    assert result.returncode == 1
    assert "cannot run on cpu" in result.stdout
    assert "NNMAMBA_SCAN_BACKEND" in result.stderr


def test_info_shows_the_inference_and_training_plans_per_device_as_text_and_json(capsys, monkeypatch):
    from nnmamba.commands import info

    monkeypatch.delenv("NNMAMBA_SCAN_BACKEND", raising=False)
    assert info.run(argparse.Namespace(json=False)) == 0
    text = capsys.readouterr().out
    assert "execution plans of nnMambaSeg" in text
    assert "  cpu training (float32):\n    scan_backend    torch" in text
    assert "fold_batchnorm  yes" in text  # the inference plan folds, the training plan does not
    assert info.run(argparse.Namespace(json=True)) == 0
    plans = json.loads(capsys.readouterr().out)["plans"]["cpu"]
    assert plans["training"]["mode"] == "training" and plans["training"]["scan_backend"] == "torch"
    assert plans["inference"]["fold_batchnorm"] and not plans["training"]["fold_batchnorm"]
    assert dict(map(tuple, plans["training"]["reasons"]))["fused_miccss"].startswith("inference only")
