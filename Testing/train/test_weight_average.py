"""The weight average: torch's EMA over weights and BatchNorm statistics, and what the training loop
checks, saves and resumes with it."""

import json

import pytest
import torch
from safetensors.torch import load_file

from nnmamba.model_card import read_card
from nnmamba.train.checkpoint import model_tensors
from nnmamba.train.loop import TrainConfig, train
from nnmamba.train.weight_average import PREFIX, WeightAverage

from train_helpers import tiny_card


def test_the_average_follows_the_ema_formula_for_weights_and_batchnorm_statistics():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    average = WeightAverage(model, decay=0.9)
    expected = None
    for step in range(4):
        with torch.no_grad():
            model[0].weight.fill_(float(step + 1))
            model[1].running_mean.fill_(10.0 * (step + 1))
        average.update(model)
        # first update copies, later ones move a tenth of the way
        expected = 1.0 if expected is None else 0.9 * expected + 0.1 * (step + 1)
    assert torch.allclose(average.network[0].weight, torch.full((2, 3), expected))
    assert torch.allclose(average.network[1].running_mean, torch.full((2,), 10.0 * expected))
    assert model[0].weight[0, 0].item() == 4.0      # the trained model itself is untouched


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_a_decay_outside_zero_one_is_refused(decay):
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(torch.nn.Linear(2, 2), decay)


def _config(data, out, **kw):
    base = dict(card=tiny_card(), data_dir=data, out_dir=out, time_budget_s=120, max_steps=8,
                learning_rate=3e-2, seed=0, log_every=4, progress_bar=False, device="cpu", scan_backend="torch",
                weight_average_decay=0.9)
    base.update(kw)
    return TrainConfig(**base)


def test_the_loop_saves_and_ships_the_average_not_the_last_step(tiny_data, tmp_path):
    result = train(_config(tiny_data, tmp_path))
    raw = model_tensors(load_file(str(tmp_path / "checkpoint.safetensors")))
    brought_back = model_tensors(load_file(str(tmp_path / "weights_state" / "checkpoint.safetensors")))
    shipped = load_file(str(read_card(result.card_path).weights_path))
    saved = load_file(str(tmp_path / "checkpoint.safetensors"))
    saved_average = {k[len(PREFIX):]: v for k, v in saved.items() if k.startswith(PREFIX)}
    weight = max(raw, key=lambda k: raw[k].numel() if raw[k].is_floating_point() else 0)   # the largest weight
    assert not torch.equal(raw[weight], brought_back[weight])         # the average, not the last step
    assert torch.equal(brought_back[weight], shipped[weight])
    assert torch.equal(brought_back[weight], saved_average[f"module.{weight}"])
    assert int(saved_average["n_averaged"]) == 8
    assert "decay 0.9" in read_card(result.card_path).training["recipe"]["weight_average"]


def test_an_exact_resume_continues_the_average_and_a_weights_only_resume_restarts_it(tiny_data, tmp_path):
    train(_config(tiny_data, tmp_path / "run"))
    train(_config(tiny_data, tmp_path / "run", max_steps=12, resume=True))
    assert int(load_file(str(tmp_path / "run" / "checkpoint.safetensors"))[PREFIX + "n_averaged"]) == 12

    # another machine: only the weights-only state travels; the average starts from those weights
    moved = tmp_path / "moved"
    moved.mkdir()
    for name in ("checkpoint.safetensors", "checkpoint.json"):
        (moved / name).write_bytes((tmp_path / "run" / "weights_state" / name).read_bytes())
    train(_config(tiny_data, moved, max_steps=14, resume=True))
    assert json.loads((moved / "checkpoint.json").read_text())["step"] == 14
    assert int(load_file(str(moved / "checkpoint.safetensors"))[PREFIX + "n_averaged"]) == 2
