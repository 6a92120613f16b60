"""A run that the machine takes away mid-way keeps its record: every periodic checkpoint names this
run's device, steps and time, and `scripts/ship_model.py --state` writes that record into the card
of a model shipped from such a checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from train_helpers import tiny_card

REPO = Path(__file__).resolve().parents[2]


def _killed_mid_run(data: Path, tmp_path: Path) -> Path:
    """`nnmamba train` started with a checkpoint every step, killed (SIGKILL) once one is on disk;
    returns the run folder."""
    (tmp_path / "card.json").write_text(json.dumps(tiny_card()))
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "nnmamba", "train", "--card", str(tmp_path / "card.json"), "--data", str(data),
         "--out", str(run), "--steps", "100000", "--device", "cpu", "--scan-backend", "torch", "--no-progress",
         "--checkpoint-every", "0", "--log-every", "1"], env=env, cwd=REPO,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "weights_state" / "checkpoint.json"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            if state.is_file() and json.loads(state.read_text() or "{}").get("step", 0) >= 3:
                break
            time.sleep(0.2)
    finally:
        process.kill()
        process.wait()
    assert state.is_file(), "the run wrote no checkpoint"
    return run


def test_a_run_killed_mid_way_keeps_its_device_and_steps_and_ships_with_them(tiny_data, tmp_path):
    run = _killed_mid_run(tiny_data, tmp_path)
    state = json.loads((run / "weights_state" / "checkpoint.json").read_text())
    assert not (run / "tiny-head-seg" / "model.json").exists()      # cut off before its card
    [(device, first, last, seconds, *_)] = state["hardware_log"]
    assert device.startswith("CPU") and first == 0 and last == state["step"] and seconds > 0

    card = {**tiny_card(), "trained": True, "training": {"recipe": {"steps": 0, "augmentation": "old"}}}
    (tmp_path / "resumed_from.json").write_text(json.dumps(card))
    (tmp_path / "eval.json").write_text(json.dumps({"model": "tiny-head-seg", "task": "segmentation",
                                                    "groups": {}}))
    models = tmp_path / "models"
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "ship_model.py"), "--card", str(tmp_path / "resumed_from.json"),
         "--weights", str(run / "weights_state" / "checkpoint.safetensors"), "--evaluation",
         str(tmp_path / "eval.json"), "--models", str(models), "--state",
         str(run / "weights_state" / "checkpoint.json"), "--augmentation", "new"],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    training = json.loads((models / "tiny-head-seg" / "model.json").read_text(encoding="utf-8"))["training"]
    assert training["recipe"] == {"steps": state["step"], "augmentation": "new"}
    assert training["hardware"].startswith(f"CPU") and f"steps 0-{state['step']}" in training["hardware"]
    assert training["loss_curve"] and training["final_loss"] == state["losses"][-1][1]
