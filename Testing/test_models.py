"""Loading and saving weights: the card is checked against the weights with clear messages."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nnmamba.errors import ModelError, OutputExistsError
from nnmamba.model_card import read_card, validate_card_dict
from nnmamba.models import build_for_card, load_model, save_model

sys.path.insert(0, str(Path(__file__).resolve().parent / "inference"))
from tiny_models import CLS_CARD  # noqa: E402


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    network = build_for_card(validate_card_dict(copy.deepcopy(CLS_CARD)), scan_backend="reference")
    card = save_model(copy.deepcopy(CLS_CARD), network, tmp_path)
    return card, network


def test_saved_weights_load_back_identically_in_eval_mode(saved):
    card, network = saved
    loaded = load_model(card, "cpu")
    assert not loaded.training
    for key, value in network.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    assert len(card.raw["weights_sha256"]) == 64


def test_saving_refuses_to_replace_an_existing_model_unless_asked(saved, tmp_path):
    card, network = saved
    with pytest.raises(OutputExistsError, match="tiny-cls/model.json exists"):
        save_model(copy.deepcopy(CLS_CARD), network, tmp_path)
    save_model(copy.deepcopy(CLS_CARD), network, tmp_path, overwrite=True)


def rewrite_weights(card, change):
    state = {k: v.clone() for k, v in load_model(card, "cpu").state_dict().items()}
    change(state)
    save_file(state, str(card.weights_path))
    raw = json.loads(card.path.read_text())
    raw.pop("weights_sha256")
    card.path.write_text(json.dumps(raw))
    return read_card(card.path)


def test_missing_keys_are_named(saved):
    card = rewrite_weights(saved[0], lambda s: s.pop("in_conv.conv.0.weight"))
    with pytest.raises(ModelError, match=r"1 missing keys \(e.g. in_conv.conv.0.weight\)"):
        load_model(card)


def test_unexpected_keys_are_named(saved):
    card = rewrite_weights(saved[0], lambda s: s.update({"extra.weight": torch.zeros(3)}))
    with pytest.raises(ModelError, match=r"1 unexpected keys \(e.g. extra.weight\)"):
        load_model(card)


def test_shape_mismatches_name_both_shapes(saved):
    def widen(state):
        state["in_conv.conv.0.weight"] = torch.zeros(5, 1, 3, 3, 3)

    card = rewrite_weights(saved[0], widen)
    with pytest.raises(ModelError, match=r"in_conv.conv.0.weight: weights \(5, 1, 3, 3, 3\), network \(4, 1, 3, 3, 3\)"):
        load_model(card)


def test_changed_weights_fail_the_checksum(saved):
    card = saved[0]
    data = bytearray(card.weights_path.read_bytes())
    data[-1] ^= 0xFF
    card.weights_path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="do not match the card's weights_sha256"):
        load_model(card)


def test_a_file_that_is_not_safetensors_is_refused(saved):
    card = saved[0]
    card.weights_path.write_bytes(b"not a safetensors file at all")
    raw = json.loads(card.path.read_text())
    raw.pop("weights_sha256")
    card.path.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_model(read_card(card.path))


def test_missing_weights_say_where_they_were_looked_for(saved):
    card = saved[0]
    card.weights_path.unlink()
    with pytest.raises(ModelError, match="weights of model tiny-cls not found at"):
        load_model(card)


def test_saving_a_model_does_not_need_simpleitk(tmp_path):
    # Training machines may lack SimpleITK (it is only needed for reading and writing volumes).
    import subprocess
    import sys
    shipped = Path(__file__).resolve().parent.parent / "models" / "scan-type-cls" / "model.json"
    code = (
        "import json, sys\n"
        "sys.modules['SimpleITK'] = None  # any import of it now fails\n"
        "from nnmamba.model_card import validate_card_dict\n"
        "from nnmamba.models import build_for_card, save_model\n"
        f"card = json.load(open({str(shipped)!r}))\n"
        "card['name'] = 'no-sitk'\n"
        "network = build_for_card(validate_card_dict(dict(card), 'test'))\n"
        f"save_model(card, network, {str(tmp_path)!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "no-sitk" / "weights.safetensors").is_file()
