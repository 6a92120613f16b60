"""`nnmamba models` and `nnmamba import-checkpoint` through the command line."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from nnmamba.cli import main
from nnmamba.model_card import find_model, validate_card_dict
from nnmamba.models import build_for_card, load_model

import tiny_models as tiny  # on the path through conftest.py


def test_models_lists_the_shipped_cards_with_their_training_state(monkeypatch, capsys):
    monkeypatch.delenv("NNMAMBA_MODELS_DIR", raising=False)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("brain-structures-seg", "afids-landmarks", "scan-type-cls"):
        assert name in out
    assert main(["models", "--json", "--task", "landmarks"]) == 0
    cards = json.loads(capsys.readouterr().out)
    assert [c["task"] for c in cards] == ["landmarks"] * len(cards)
    assert any(len(c["landmarks"]) == 32 for c in cards)


@pytest.fixture
def template(tmp_path) -> Path:
    path = tmp_path / "template.json"
    card = copy.deepcopy(tiny.SEG_CARD)
    card["name"] = "imported-seg"
    card["trained"] = True
    path.write_text(json.dumps(card))
    return path


def upstream_state(seed=0) -> dict:
    torch.manual_seed(seed)
    net = build_for_card(validate_card_dict(copy.deepcopy(tiny.SEG_CARD)), scan_backend="reference")
    return net.state_dict()


@pytest.mark.parametrize("wrap", ["plain", "network_weights", "state_dict", "data_parallel"])
def test_an_upstream_checkpoint_becomes_a_card_and_safetensors_that_load_strictly(wrap, template, tmp_path,
                                                                                     monkeypatch, capsys):
    state = upstream_state()
    if wrap == "plain":
        payload = state
    elif wrap == "data_parallel":
        payload = {"state_dict": {"module." + k: v for k, v in state.items()}}
    else:
        payload = {wrap: state, "optimizer_state": {"lr": 0.002}, "epoch": 300}
    checkpoint = tmp_path / "model_best.model"
    torch.save(payload, checkpoint)
    out = tmp_path / "models"
    assert main(["import-checkpoint", str(checkpoint), "--card", str(template), "--output", str(out)]) == 0
    assert "imported-seg" in capsys.readouterr().out
    monkeypatch.setenv("NNMAMBA_MODELS_DIR", str(out))
    card = find_model("imported-seg")
    assert card.provenance["imported_from"] == "model_best.model"
    loaded = load_model(card, "cpu").state_dict()
    for key, value in state.items():
        torch.testing.assert_close(loaded[key], value)


def test_a_checkpoint_for_another_network_is_refused_and_nothing_is_written(template, tmp_path, capsys):
    state = upstream_state()
    state["conv8.conv.3.weight"] = torch.zeros(5, 5, 3, 3, 3)
    checkpoint = tmp_path / "wrong.pth"
    torch.save(state, checkpoint)
    out = tmp_path / "models"
    rc = main(["import-checkpoint", str(checkpoint), "--card", str(template), "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 3 and "shape mismatches" in err and "conv8.conv.3.weight" in err
    assert not out.exists() or not list(out.iterdir())


class Payload:
    """Not a tensor container: unpickling it would run code, which weights_only refuses."""


def test_a_checkpoint_holding_arbitrary_objects_is_not_unpickled(template, tmp_path, capsys):
    checkpoint = tmp_path / "evil.pth"
    torch.save({"state_dict": upstream_state(), "hook": Payload()}, checkpoint)
    rc = main(["import-checkpoint", str(checkpoint), "--card", str(template), "--output", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert rc == 3 and "weights_only" in err and "Traceback" not in err


def test_a_file_that_is_not_a_checkpoint_is_refused(template, tmp_path, capsys):
    checkpoint = tmp_path / "notes.pth"
    checkpoint.write_text("hello")
    rc = main(["import-checkpoint", str(checkpoint), "--card", str(template), "--output", str(tmp_path / "m")])
    assert rc == 3 and "not a readable PyTorch file" in capsys.readouterr().err
