"""The trainer plans how it trains (a scan backend with gradients), logs the plan and records it."""

import json
import logging
import math

from nnmamba.model_card import read_card
from nnmamba.ssm import backends
from nnmamba.train.loop import TrainConfig, train

from train_helpers import tiny_card


def test_training_with_auto_plans_a_backend_that_trains_and_records_the_plan(tiny_data, tmp_path, caplog,
                                                                           monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    config = TrainConfig(card=tiny_card(), data_dir=tiny_data, out_dir=tmp_path, max_steps=2, seed=0,
                         log_every=1, progress_bar=False, device="cpu", scan_backend="auto")
    with caplog.at_level(logging.INFO, logger="nnmamba.execution_plan"):
        result = train(config)
    logged = [r.getMessage() for r in caplog.records if r.name == "nnmamba.execution_plan"]
    assert len(logged) == 1 and "on cpu, float32, training" in logged[0]
    plan = read_card(result.card_path).training["execution_plan"]
    assert plan["mode"] == "training" and plan["scan_backend"] == "torch"
    assert backends.get_backend(plan["scan_backend"]).supports_grad
    assert json.loads((tmp_path / "rank0.json").read_text())["execution_plan"] == plan


def test_training_with_channels_last_records_it_in_the_plan_and_still_learns(tiny_data, tmp_path, monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    config = TrainConfig(card=tiny_card(), data_dir=tiny_data, out_dir=tmp_path, max_steps=2, seed=0,
                         log_every=1, progress_bar=False, device="cpu", scan_backend="torch", channels_last=True)
    result = train(config)
    plan = read_card(result.card_path).training["execution_plan"]
    assert plan["channels_last"] is True
    assert result.steps == 2 and math.isfinite(result.last_loss)


def test_the_train_command_leaves_channels_last_to_the_plan_unless_asked():
    import argparse

    from nnmamba.commands import train as train_command

    parser = argparse.ArgumentParser()
    train_command.add_arguments(parser)
    assert parser.parse_args(["--card", "c.json", "--out", "o"]).channels_last is None
    assert parser.parse_args(["--card", "c.json", "--out", "o", "--channels-last"]).channels_last is True
