#!/usr/bin/env python
"""Make a trained model the shipped one: models/<name>/ gets its weights and card, with the held-out
figures of `nnmamba evaluate` and the shipped card's vocabulary decorations kept.

Only for a model that `nnmamba evaluate` showed better than both the shipped model and the trivial
baseline (docs/training.md says how each shipped model was judged). Usage:

    python scripts/ship_model.py --card runs/seg/brain-structures-seg/model.json \
        --weights runs/seg/weights_state/checkpoint.safetensors --evaluation eval_seg.json

The weights may be a model's weights.safetensors or a (weights-only) training checkpoint. A run cut
off before it wrote its card ships from its checkpoint: `--card` is then the card it resumed from and
`--state` the checkpoint's checkpoint.json, whose steps, loss curve, time, hardware and held-out
checks replace the card's (`--augmentation` the recipe text, when it changed since). Kept
from the shipped card: each label's colour and terminology codes (by name), and the card's
`license`, `provenance` and `quality`; new names get `--terminology` entries if given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nnmamba.commands.evaluate import update_card_accuracy  # noqa: E402
from nnmamba.models import save_model  # noqa: E402
from nnmamba.train.checkpoint import model_tensors  # noqa: E402
from nnmamba.train.training_record import from_checkpoint_state  # noqa: E402

KEPT_FIELDS = ("license", "provenance", "quality")

# SNOMED CT codes of the structures the recipe has and the November card lacked (the same
# category / type / laterality scheme as Slicer's terminology files)
EXTRA_TERMINOLOGY = {
    "Pallidum": ["SCT", "14738005", "Globus pallidus"],
    "Amygdala": ["SCT", "4958002", "Amygdaloid structure"],
}
SIDES = {"Left": ["SCT", "7771000", "Left"], "Right": ["SCT", "24028007", "Right"]}


def _decorate_labels(card: dict, shipped: dict) -> None:
    known = {item["name"]: item for item in shipped.get("labels", [])}
    for label in card.get("labels", []):
        old = known.get(label["name"])
        if old is not None:
            label["color"] = old["color"]
            if "terminology" in old:
                label["terminology"] = old["terminology"]
            continue
        side, _, structure = label["name"].partition(" ")
        entry = EXTRA_TERMINOLOGY.get(structure.capitalize())
        if entry and side in SIDES:
            label["terminology"] = {"category": ["SCT", "123037004", "Anatomical Structure"], "type": entry,
                                    "type_modifier": SIDES[side]}


def _record_progress(card: dict, state: dict, augmentation) -> None:
    progress = from_checkpoint_state(state)
    training = card.setdefault("training", {})
    training.setdefault("recipe", {})["steps"] = progress.pop("steps")
    training.update(progress)
    if augmentation:
        training["recipe"]["augmentation"] = augmentation


def _state(path: Path) -> dict:
    from safetensors.torch import load_file

    return model_tensors(load_file(str(path)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--card", type=Path, required=True, help="the trained card (nnmamba train's model.json)")
    parser.add_argument("--weights", type=Path, required=True, help="weights or a weights-only checkpoint")
    parser.add_argument("--evaluation", type=Path, required=True, help="nnmamba evaluate --json output")
    parser.add_argument("--models", type=Path, default=ROOT / "models")
    parser.add_argument("--description", help="the card's description (default: the trained card's)")
    parser.add_argument("--state", type=Path, help="checkpoint.json of the weights: its progress replaces the card's")
    parser.add_argument("--augmentation", help="with --state: the recipe's augmentation text, if it changed")
    args = parser.parse_args(argv)

    card = json.loads(args.card.read_text())
    report = json.loads(args.evaluation.read_text())
    if report.get("model") != card["name"]:
        print(f"ship_model: the evaluation is of {report.get('model')!r}, not {card['name']!r}", file=sys.stderr)
        return 2
    shipped_path = args.models / card["name"] / "model.json"
    shipped = json.loads(shipped_path.read_text()) if shipped_path.is_file() else {}
    _decorate_labels(card, shipped)
    for key in KEPT_FIELDS:
        if key in shipped:
            card[key] = shipped[key]
    if args.description:
        card["description"] = args.description
    if args.state:
        _record_progress(card, json.loads(args.state.read_text()), args.augmentation)
    saved = save_model(card, _state(args.weights), args.models, overwrite=True)
    update_card_accuracy(saved.path, report)
    print(f"shipped {card['name']}: {saved.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
