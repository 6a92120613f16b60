"""A models folder of the user's own, for the tests of a folder chosen in the panel: the shipped
scan-type classifier copied under a new name (a real card with real weights, found only there)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

SHIPPED_CLASSIFIER = Path(__file__).resolve().parents[2] / "models" / "scan-type-cls"


def copyShippedClassifier(folder: Path, name: str) -> Path:
    """Write folder/mine/ holding the shipped classifier's card renamed `name` and its weights; returns folder/mine."""
    card = json.loads((SHIPPED_CLASSIFIER / "model.json").read_text())
    card["name"] = name
    mine = folder / "mine"
    mine.mkdir()
    (mine / "model.json").write_text(json.dumps(card))
    shutil.copy(SHIPPED_CLASSIFIER / "weights.safetensors", mine)
    return mine
