"""The committed training state becomes a run folder that training resumes from."""

import json

import pytest
import torch
from safetensors.torch import save_file

from nnmamba.networks import build_network
from nnmamba.train.checkpoint import load_checkpoint, save_weights_checkpoint
from nnmamba.models import sha256_of
from nnmamba.train.training_state import restore

from train_helpers import tiny_card


def _network():
    card = tiny_card()
    return build_network(card["network"], **card["hyperparameters"])


def test_a_state_that_names_the_shipped_weights_resumes_from_them(tmp_path):
    shipped = _network()
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in shipped.state_dict().items()}, str(weights))
    state = tmp_path / "state"
    state.mkdir()
    (state / "checkpoint.json").write_text(json.dumps({"step": 1234, "elapsed_s": 60.0, "weights_only": True,
                                                       "shipped_weights_sha256": sha256_of(weights)}))
    restore(state, weights, tmp_path / "run")
    resumed = _network()
    record = load_checkpoint(tmp_path / "run", resumed, torch.optim.AdamW(resumed.parameters()))
    assert record["step"] == 1234 and record["optimizer_restored"] is False
    for name, value in shipped.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name


def test_a_state_whose_shipped_weights_changed_is_refused(tmp_path):
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in _network().state_dict().items()}, str(weights))
    state = tmp_path / "state"
    state.mkdir()
    (state / "checkpoint.json").write_text(json.dumps({"step": 5, "shipped_weights_sha256": "0" * 64}))
    with pytest.raises(ValueError, match="is not the weights"):
        restore(state, weights, tmp_path / "run")


def test_a_state_with_its_own_weights_is_copied(tmp_path):
    network = _network()
    save_weights_checkpoint(tmp_path / "state", network, {"step": 7, "elapsed_s": 1.0})
    restore(tmp_path / "state", tmp_path / "absent.safetensors", tmp_path / "run")
    assert load_checkpoint(tmp_path / "run", _network(), torch.optim.AdamW(network.parameters()))["step"] == 7
