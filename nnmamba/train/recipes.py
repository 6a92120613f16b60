"""The cards (network, preprocessing, vocabulary) of the three shipped models, built from the
prepared data's manifest, so the names / labels / landmarks / classes the model is trained with
are the ones its card ships with.

Where `models/` already holds a card of the same name (the pipeline's, with untrained weights), that
card is the template: its network, preprocessing, codes and wording are kept, after checking that its
vocabulary is the one the data was prepared with; training replaces only `trained`, `training`,
`accuracy` and the weights.

    card = shipped_card("brain-structures-seg", read_manifest("data/prepared"))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from nnmamba.model_card import CARD_SCHEMA_VERSION, card_path

SHIPPED = {
    "brain-structures-seg": {
        "task": "segmentation", "network": "nnMambaSeg",
        "hyperparameters": {"in_ch": 1, "channels": 8, "blocks": 2},
        "spacing_mm": [2.0, 2.0, 2.0], "patch_size": [112, 128, 112],
        "normalization": {"method": "zscore", "mask": "nonzero"},
        "channel": {"name": "T1w or T2w MR", "modality": "MR"},
        # left-right is lateralised (Left/Right labels): mirror only front-back and up-down
        "inference": {"mirror_axes": [1, 2]},
        "description": "Eleven subcortical brain structures (lateral ventricles, thalami, caudates, putamina, "
                       "hippocampi, brainstem) on head MR, 2 mm, small coarse nnMambaSeg.",
    },
    "afids-landmarks": {
        "task": "landmarks", "network": "nnMambaLandmark",
        "hyperparameters": {"in_ch": 1, "channels": 8, "blocks": 2},
        "spacing_mm": [2.0, 2.0, 2.0], "patch_size": [112, 128, 112],
        "normalization": {"method": "zscore", "mask": "nonzero"},
        "channel": {"name": "T1w or T2w MR", "modality": "MR"},
        "inference": {"mirror_axes": [1, 2], "heatmap_activation": "none"},
        "description": "The 32 AFIDs anatomical fiducials (AC, PC, ...) on head MR, 2 mm heatmaps, nnMambaLandmark.",
    },
    "scan-type-cls": {
        "task": "classification", "network": "nnMambaEncoder",
        "hyperparameters": {"in_ch": 1, "channels": 8, "blocks": 2},
        "spacing_mm": [4.0, 4.0, 4.0], "patch_size": [64, 64, 64],
        "normalization": {"method": "zscore", "mask": "all"},
        "channel": {"name": "any CT or MR volume", "modality": "any"},
        "inference": {"mirror_axes": [0, 1, 2]},
        "description": "Scan type for series routing: CT or MR, from a 4 mm view of the whole volume, nnMambaEncoder.",
    },
}

CLASS_DESCRIPTIONS = {"CT": "X-ray computed tomography", "MR": "magnetic resonance imaging (any weighting)"}


def shipped_card(name: str, manifest: dict, existing: Optional[dict] = None) -> dict:
    """The full card dict of shipped model `name` (untrained: `trained` false, no `training`)."""
    if name not in SHIPPED:
        raise ValueError(f"unknown shipped model {name!r}; expected one of {sorted(SHIPPED)}")
    recipe = SHIPPED[name]
    hyper = dict(recipe["hyperparameters"])
    card = {"schema_version": CARD_SCHEMA_VERSION, "name": name, "description": recipe["description"],
            "task": recipe["task"], "network": recipe["network"], "hyperparameters": hyper,
            "weights": "weights.safetensors", "trained": False,
            "input": {"channels": [dict(recipe["channel"])], "spacing_mm": list(recipe["spacing_mm"]),
                      "orientation": "LPS", "patch_size": list(recipe["patch_size"]),
                      "normalization": dict(recipe["normalization"])},
            "inference": dict(recipe["inference"]), "training": None, "accuracy": None}
    if recipe["task"] == "segmentation":
        card["labels"] = [{"value": s["label"], "name": s["name"], "color": list(s["color"])}
                          for s in manifest["segments"]]
        hyper["number_classes"] = max(s["label"] for s in manifest["segments"]) + 1
    elif recipe["task"] == "landmarks":
        lm = manifest["landmarks"]
        card["landmarks"] = [{"name": n, "description": d} for n, d in zip(lm["names"], lm["descriptions"])]
        hyper["number_landmarks"] = len(lm["names"])
    else:
        card["classes"] = [{"name": c, "description": CLASS_DESCRIPTIONS.get(c, "")} for c in manifest["classes"]]
        hyper["number_classes"] = len(manifest["classes"])
    if existing:
        _keep_existing(card, existing)
    return card


TRAINING_FIELDS = ("trained", "training", "accuracy", "weights_sha256")


def _vocabulary(card: dict) -> list:
    if card["task"] == "segmentation":
        return [(item["value"], item["name"]) for item in card.get("labels", [])]
    if card["task"] == "landmarks":
        return [item["name"] for item in card.get("landmarks", [])]
    return [item["name"] for item in card.get("classes", [])]


def _keep_existing(card: dict, existing: dict) -> None:
    """Take the shipped card as the template, after checking its vocabulary matches the data's."""
    if existing.get("task") != card["task"] or _vocabulary(existing) != _vocabulary(card):
        raise ValueError(f"models/{card['name']}/model.json names other outputs than the prepared data "
                         f"({_vocabulary(existing)[:4]}... vs {_vocabulary(card)[:4]}...); re-run "
                         f"scripts/prepare_data.py or align the card before training")
    description = card["description"]
    card.clear()
    card.update({k: v for k, v in json.loads(json.dumps(existing)).items() if k not in TRAINING_FIELDS})
    card["trained"] = False
    if "UNTRAINED" in card.get("description", ""):
        card["description"] = description


def existing_card(name: str, models_dir: Path) -> Optional[dict]:
    path = card_path(models_dir, name)
    return json.loads(path.read_text()) if path.is_file() else None
