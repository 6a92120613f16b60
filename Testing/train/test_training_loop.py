"""The training loop on a tiny real problem (the embedded sample MR's head mask at 8 mm)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnmamba.model_card import read_card

from nnmamba.models import load_model
from nnmamba.train.loop import TrainConfig, train

from train_helpers import tiny_card

REPO = Path(__file__).resolve().parents[2]


def config(data, out, **kw):
    base = dict(card=tiny_card(), data_dir=data, out_dir=out, time_budget_s=120, max_steps=60,
                learning_rate=3e-2, seed=0, log_every=4, progress_bar=False, device="cpu", scan_backend="torch")
    base.update(kw)
    return TrainConfig(**base)


def test_training_lowers_the_loss_and_writes_a_loadable_trained_card(tiny_data, tmp_path):
    result = train(config(tiny_data, tmp_path))
    assert result.steps == 60
    assert result.last_loss < 0.85 * result.first_loss
    card = read_card(result.card_path)
    assert card.trained and card.training["recipe"]["steps"] == 60
    assert card.training["data"]["train"][0]["case"] == "sample"
    assert card.training["hardware"].startswith("CPU")
    load_model(card, "cpu")  # weights match the card's network


def test_resume_continues_from_the_checkpoint_step(tiny_data, tmp_path):
    train(config(tiny_data, tmp_path, max_steps=8))
    resumed = train(config(tiny_data, tmp_path, max_steps=12, resume=True))
    assert resumed.steps == 12
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert state["step"] == 12
    assert [row[0] for row in state["losses"]] == [4, 8, 12]


def test_same_seed_gives_the_same_weights(tiny_data, tmp_path):
    a = train(config(tiny_data, tmp_path / "a", max_steps=4))
    b = train(config(tiny_data, tmp_path / "b", max_steps=4))
    digest = lambda r, d: json.loads((d / "rank0.json").read_text())["parameter_sha256"]  # noqa: E731
    assert a.last_loss == b.last_loss
    assert digest(a, tmp_path / "a") == digest(b, tmp_path / "b")


@pytest.mark.slow
def test_two_process_ddp_on_gloo_trains_in_sync_and_lowers_the_loss(tiny_data, tmp_path):
    card_path = tmp_path / "card.json"
    card_path.write_text(json.dumps(tiny_card()))
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "nnmamba", "train", "--card", str(card_path), "--data", str(tiny_data), "--out", str(out),
               "--steps", "60", "--lr", "3e-2", "--device", "cpu", "--scan-backend", "torch", "--no-progress",
               "--log-every", "4"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    assert all(r["steps"] == 60 for r in ranks)
    assert ranks[0]["parameter_sha256"] == ranks[1]["parameter_sha256"]
    assert ranks[0]["last_loss"] < 0.85 * ranks[0]["first_loss"]
    card = read_card(out / "tiny-head-seg" / "model.json")
    assert card.training["recipe"]["processes"] == 2
    # What DDP wrote serves single-process CPU inference: strict load, then the pipeline runs it.
    from nnmamba.inference import InferenceOptions, Predictor
    from nnmamba.volume import Geometry, Volume
    load_model(card, "cpu")
    volume = Volume(np.random.default_rng(0).normal(size=(1, 20, 24, 28)).astype(np.float32),
                    Geometry.identity(spacing=[card.spacing_mm[0]] * 3))
    result = Predictor(InferenceOptions(device="cpu")).run(volume, ["segmentation"], {"segmentation": card})
    assert result["segmentation"].labelmap.shape == (20, 24, 28)
