"""The training guards: a held-out check through the real Predictor, and a run that stops itself
when it has collapsed."""

import json
import math
import shutil

import pytest

from nnmamba.train.guards import HeldoutCheck, collapse_reason, quick_heldout_scores
from nnmamba.train.loop import TrainConfig, train

from train_helpers import tiny_card


@pytest.fixture()
def data_with_segments(tiny_data, tmp_path):
    root = tmp_path / "prepared"
    shutil.copytree(tiny_data, root)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["segments"] = [{"label": 1, "name": "Head"}]
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def _dead_head_weights(path):
    """The collapse seen in training: the head's last BatchNorm puts the foreground below its ReLU."""
    import torch
    from safetensors.torch import save_file

    from nnmamba.networks import build_network

    card = tiny_card()
    network = build_network(card["network"], **card["hyperparameters"])
    with torch.no_grad():
        network.conv8.conv[4].bias.copy_(torch.tensor([10.0, -10.0]))
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    return path


def test_a_segmentation_run_that_predicts_no_foreground_on_heldout_data_stops_itself(data_with_segments, tmp_path):
    config = TrainConfig(card=tiny_card(), data_dir=data_with_segments, out_dir=tmp_path / "run", max_steps=40,
                         learning_rate=0.0, warmup_steps=0, heldout_every=4, collapse_min_step=8, seed=0,
                         log_every=4, progress_bar=False, device="cpu", scan_backend="torch",
                         init_from=_dead_head_weights(tmp_path / "dead.safetensors"))
    result = train(config)
    state = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
    assert [entry["step"] for entry in state["heldout"]] == [4, 8]
    assert state["heldout"][-1]["summary"]["mean_dice"] == 0.0
    assert result.steps == 8 and "collapsed" in state["stopped"]


def test_the_heldout_check_scores_the_weights_as_they_are(data_with_segments, tmp_path):
    from nnmamba.networks import build_network

    card = tiny_card()
    network = build_network(card["network"], **card["hyperparameters"])
    check = HeldoutCheck(card, data_with_segments, tmp_path / "check", every=10, device="cpu")
    assert not check.due(5) and check.due(10)
    summary = check.run(10, network)
    assert set(summary) == {"mean_dice"} and 0.0 <= summary["mean_dice"] <= 1.0
    assert check.history == [{"step": 10, "summary": summary}]


def test_collapse_is_only_called_after_the_minimum_step_and_for_a_real_collapse():
    dead = {"mean_dice": 0.0}
    assert collapse_reason("segmentation", dead, 1.0, 0, step=100) is None
    assert "collapsed" in collapse_reason("segmentation", dead, 1.0, 0, step=5000)
    assert collapse_reason("segmentation", {"mean_dice": 0.4}, 1.0, 0, step=5000) is None
    assert "chance" in collapse_reason("classification", None, math.log(3), 3, step=5000)
    assert collapse_reason("classification", None, 0.5, 3, step=5000) is None
