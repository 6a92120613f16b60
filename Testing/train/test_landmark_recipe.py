"""The shipped landmark recipe trains coarse whole-head score maps with a head whose scores can be
negative, and its settings win over those of the card already in models/ (whose wording it keeps)."""

import json
from pathlib import Path

import numpy as np

from nnmamba.model_card import validate_card_dict
from nnmamba.train.recipes import shipped_card

REPO = Path(__file__).resolve().parents[2]


def _manifest_of(card: dict) -> dict:
    return {"landmarks": {"names": [lm["name"] for lm in card["landmarks"]],
                          "descriptions": [lm["description"] for lm in card["landmarks"]]}}


def test_the_landmark_recipe_sees_the_whole_head_on_a_4_mm_grid_with_a_linear_head():
    existing = json.loads((REPO / "models" / "afids-landmarks" / "model.json").read_text())
    card = shipped_card("afids-landmarks", _manifest_of(existing), existing)
    assert card["input"]["spacing_mm"] == [4.0, 4.0, 4.0]
    patch = card["input"]["patch_size"]
    assert all(p % 16 == 0 for p in patch) and min(p * 4.0 for p in patch) >= 256
    assert card["hyperparameters"]["head"] == "linear"
    assert 8 <= card["hyperparameters"]["channels"] <= 16 and card["hyperparameters"]["blocks"] == 2
    # the existing card's wording and provenance stay; its training record does not
    assert card["landmarks"] == existing["landmarks"]
    assert existing["provenance"].items() <= card["provenance"].items()
    assert card["trained"] is False and "training" not in card and "2 mm" not in card["description"]


def test_the_landmark_card_carries_the_afids_template_in_its_own_landmark_order():
    existing = json.loads((REPO / "models" / "afids-landmarks" / "model.json").read_text())
    card = shipped_card("afids-landmarks", _manifest_of(existing), existing)
    fit = card["inference"]["landmark_fit"]
    template = np.array(fit["template_lps_mm"])
    assert template.shape == (32, 3) and 0 <= fit["accept_mm"] <= 8
    names = [lm["name"] for lm in card["landmarks"]]
    # AC lies in front of PC (LPS: anterior is -y), both on the midline; the left lateral ventricle
    # landmark is on the left (+x)
    ac, pc = template[names.index("AC")], template[names.index("PC")]
    assert ac[1] < pc[1] - 20 and abs(ac[0]) < 2 and abs(pc[0]) < 2
    assert template[names.index("LLVAC"), 0] > 10 > -10 > template[names.index("RLVAC"), 0]
    assert "CC-BY-4.0" in card["provenance"]["landmark_template"]
    assert card["inference"]["landmark_decoding"]["method"] == "soft-argmax"
    validated = validate_card_dict(card, where="recipe")
    assert validated.landmark_fit is not None and len(validated.landmark_fit.template_lps_mm) == 32
