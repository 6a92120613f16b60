"""Model cards: the shipped ones against the JSON schema, discovery, and wording of bad cards."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import jsonschema
import pytest

from nnmamba.errors import InputError, ModelError
from nnmamba.model_card import (SCHEMA_PATH, default_model, find_model, list_models, models_dirs, read_card,
                                validate_card_dict)

REPO = Path(__file__).resolve().parent.parent
SHIPPED = sorted((REPO / "models").glob("*/model.json"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "inference"))
from tiny_models import SEG_CARD  # noqa: E402


def test_the_three_shipped_cards_validate_against_the_schema_and_by_hand():
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert {p.parent.name for p in SHIPPED} >= {"brain-structures-seg", "afids-landmarks", "scan-type-cls"}
    tasks = set()
    for path in SHIPPED:
        d = json.loads(path.read_text())
        jsonschema.validate(d, schema)
        card = read_card(path)
        tasks.add(card.task)
        assert card.weights_path.is_file()
    assert tasks == {"segmentation", "landmarks", "classification"}


def test_the_landmark_card_lists_the_32_afids_with_provenance():
    card = read_card(REPO / "models" / "afids-landmarks" / "model.json")
    assert len(card.landmarks) == 32
    assert card.landmarks[0].name == "AC" and card.landmarks[2].description == "infracollicular sulcus"
    assert "afids_descs.json" in card.provenance["landmarks"]


def test_the_segmentation_card_has_terminology_codes_and_distinct_labels():
    card = read_card(REPO / "models" / "brain-structures-seg" / "model.json")
    assert len(card.labels) >= 5
    assert all(s.terminology and s.terminology["category"][0] == "SCT" for s in card.labels)
    assert len({s.label for s in card.labels}) == len(card.labels)


def test_the_shipped_models_are_found_without_torch(monkeypatch):
    monkeypatch.delenv("NNMAMBA_MODELS_DIR", raising=False)
    import subprocess
    code = ("import sys, nnmamba.model_card as m, nnmamba.models, nnmamba.io, nnmamba.inference;"
            "names = [c.name for c in m.list_models()];"
            "assert 'torch' not in sys.modules, 'torch was imported';"
            "print(','.join(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert {"brain-structures-seg", "afids-landmarks", "scan-type-cls"} <= set(out.stdout.strip().split(","))


def test_cards_in_nnmamba_models_dir_come_first(tmp_path, monkeypatch):
    card = copy.deepcopy(SEG_CARD)
    card["name"] = "my-seg"
    (tmp_path / "my-seg.json").write_text(json.dumps(card))
    (tmp_path / "notes.json").write_text('{"not": "a card"}')
    monkeypatch.setenv("NNMAMBA_MODELS_DIR", str(tmp_path))
    assert models_dirs()[0] == tmp_path.resolve()
    assert default_model("segmentation").name == "my-seg"
    assert find_model("my-seg").path == (tmp_path / "my-seg.json").resolve()
    assert find_model(str(tmp_path / "my-seg.json")).name == "my-seg"
    assert "my-seg" in [c.name for c in list_models()]


def broken(**changes):
    card = copy.deepcopy(SEG_CARD)
    for dotted, value in changes.items():
        target = card
        *path, last = dotted.split("__")
        for key in path:
            target = target[key]
        if value is KeyError:
            del target[last]
        else:
            target[last] = value
    return card


@pytest.mark.parametrize("card,message", [
    (broken(schema_version=2), "schema_version 2 is not supported"),
    (broken(task="tumour"), "'task' must be one of"),
    (broken(network="UNet"), "'network' must be one of"),
    (broken(network="nnMambaEncoder"), "does classification, but the card's task is segmentation"),
    (broken(name="../evil"), "file-name-safe"),
    (broken(weights=KeyError), "missing required field 'weights'"),
    (broken(input__spacing_mm=[1.0, 0.0, 1.0]), "'spacing_mm' must be positive"),
    (broken(input__patch_size=[30, 32, 32]), "divisible by 16"),
    (broken(input__normalization={"method": "minmax"}), "normalization.method must be one of"),
    (broken(input__normalization={"method": "ct", "clip": [-1000, 1000]}), "needs 'mean'"),
    (broken(hyperparameters__in_ch=2), "in_ch is 2 but input.channels lists 1"),
    (broken(hyperparameters__number_classes=5), "number_classes is 5 but the labels need 3"),
    (broken(inference__mirror_axes=[3]), "mirror_axes must be a subset"),
    (broken(inference__mirror_pairs=[[1]]), "mirror_pairs must be a list of [a, b] pairs"),
    (broken(inference__mirror_pairs=[[1, 1]]), "mirror_pairs must be a list of [a, b] pairs"),
    (broken(inference__mirror_pairs=[[1, 2], [2, 0]]), "mirror_pairs names a channel twice"),
    (broken(inference__mirror_pairs=[[1, 7]]), "beyond the model's 3"),
    (broken(inference__mirror_always="yes"), "mirror_always must be true or false"),
    (broken(inference__mirror_axes=[], inference__mirror_always=True), "true needs mirror_axes"),
    (broken(trained="yes"), "field 'trained' must be bool"),
])
def test_a_bad_card_names_the_field_and_what_was_expected(card, message):
    with pytest.raises(ModelError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        validate_card_dict(card, "test-card")


def test_mirror_pairs_give_the_channel_order_after_a_left_right_mirror():
    card = validate_card_dict(broken(inference__mirror_pairs=[[1, 2]]), "test-card")
    assert card.mirror_order(3) == [0, 2, 1]
    assert validate_card_dict(broken(), "test-card").mirror_order(3) is None


def test_unknown_models_and_tasks_say_what_is_known(monkeypatch):
    monkeypatch.delenv("NNMAMBA_MODELS_DIR", raising=False)
    with pytest.raises(ModelError, match="known models: .*brain-structures-seg"):
        find_model("nonexistent-model")
    with pytest.raises(InputError, match="unknown task 'tumour'"):
        default_model("tumour")


def test_a_model_folder_with_model_json_is_found_by_name_and_by_folder(tmp_path, monkeypatch):
    card = json.loads((REPO / "models" / "scan-type-cls" / "model.json").read_text())
    card["name"] = "my-cls"
    (tmp_path / "my-cls").mkdir()
    (tmp_path / "my-cls" / "model.json").write_text(json.dumps(card))
    monkeypatch.setenv("NNMAMBA_MODELS_DIR", str(tmp_path))
    assert find_model("my-cls").path == (tmp_path / "my-cls" / "model.json").resolve()
    assert find_model(str(tmp_path / "my-cls")).name == "my-cls"


def test_a_card_states_its_quality_and_one_that_does_not_counts_as_unvalidated():
    stated = validate_card_dict({**copy.deepcopy(SEG_CARD), "quality": "research"})
    assert stated.quality == "research" and "not for clinical use" in stated.quality_note
    silent = {k: v for k, v in copy.deepcopy(SEG_CARD).items() if k != "quality"}
    assert validate_card_dict(silent).quality == "unvalidated"
    with pytest.raises(ModelError, match=r"'quality' must be one of \['unvalidated', 'research'\], got 'clinical'"):
        validate_card_dict({**copy.deepcopy(SEG_CARD), "quality": "clinical"})


def test_the_shipped_cards_say_they_are_unvalidated_and_the_command_line_warns_of_it():
    from nnmamba.commands._pipeline import untrained_warning
    cards = [read_card(path) for path in SHIPPED]
    assert {card.quality for card in cards} == {"unvalidated"}
    warning = untrained_warning(cards)
    assert "UNVALIDATED" in warning and all(card.name in warning for card in cards)
