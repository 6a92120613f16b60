"""The shipped landmark recipe trains coarse whole-head score maps with a head whose scores can be
negative, and its settings win over those of the card already in models/ (whose wording it keeps)."""

import json
from pathlib import Path

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
    assert card["landmarks"] == existing["landmarks"] and card["provenance"] == existing["provenance"]
    assert card["trained"] is False and "training" not in card and "2 mm" not in card["description"]
