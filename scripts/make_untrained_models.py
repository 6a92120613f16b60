"""Write the three shipped model cards with deterministic random-init (UNTRAINED) weights.

The cards say `"trained": false`, and `nnmamba demo` / `predict` print a loud warning for such
models. Training (`nnmamba train`) replaces the weights and fills the cards' `training` and
`accuracy` fields through `nnmamba.models.save_model`; names, vocabularies and preprocessing
stay as defined here.

    .venv/bin/python scripts/make_untrained_models.py [--output models] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

AFIDS_SOURCE = ("afids-utils 0.2.0 wheel (MIT, Copyright 2023 AFIDs Project), "
                "afids_utils/resources/afids_descs.json, key 'human', in file order")
# (name = AFIDs acronym, description), verbatim from afids_descs.json (see AFIDS_SOURCE).
AFIDS = [
    ("AC", "AC"), ("PC", "PC"), ("ICS", "infracollicular sulcus"), ("PMJ", "PMJ"),
    ("SIPF", "superior interpeduncular fossa"), ("RSLMS", "R superior LMS"), ("LSLMS", "L superior LMS"),
    ("RILMS", "R inferior LMS"), ("LILMS", "L inferior LMS"), ("CUL", "Culmen"),
    ("IMS", "Intermammillary sulcus"), ("RMB", "R MB"), ("LMB", "L MB"), ("PG", "pineal gland"),
    ("RLVAC", "R LV at AC"), ("LLVAC", "L LV at AC"), ("RLVPC", "R LV at PC"), ("LLVPC", "L LV at PC"),
    ("GENU", "Genu of CC"), ("SPLE", "Splenium of CC"), ("RALTH", "R AL temporal horn"),
    ("LALTH", "L AL temporal horn"), ("RSAMTH", "R superior AM temporal horn"),
    ("LSAMTH", "L superior AM temporal horn"), ("RIAMTH", "R inferior AM temporal horn"),
    ("LIAMTH", "L inferior AM temporal horn"), ("RIGO", "R indusium griseum origin"),
    ("LIGO", "L indusium griseum origin"), ("RVOH", "R ventral occipital horn"),
    ("LVOH", "L ventral occipital horn"), ("ROSF", "R olfactory sulcal fundus"),
    ("LOSF", "L olfactory sulcal fundus"),
]

ANATOMY = ["SCT", "123037004", "Anatomical Structure"]
LEFT, RIGHT = ["SCT", "7771000", "Left"], ["SCT", "24028007", "Right"]
# (structure, SNOMED CT type code, colour 0..255 (Slicer's recommended colour where it has one),
#  lateralised). Codes from Slicer's terminology files (SlicerGeneralAnatomy / DICOM master list).
STRUCTURES = [
    ("lateral ventricle", ["SCT", "66720007", "Lateral ventricle"], (88, 106, 215), True),
    ("thalamus", ["SCT", "119406000", "Thalamus"], (122, 101, 38), True),
    ("caudate", ["SCT", "11000004", "Caudate nucleus"], (30, 111, 85), True),
    ("putamen", ["SCT", "89278009", "Putamen"], (210, 157, 166), True),
    ("hippocampus", ["SCT", "5366008", "Hippocampus"], (220, 216, 20), True),
    ("brainstem", ["SCT", "119238007", "Brain stem"], (119, 159, 176), False),
]


def segmentation_labels() -> list:
    labels = []
    for structure, code, rgb, lateral in STRUCTURES:
        sides = [("Left", LEFT), ("Right", RIGHT)] if lateral else [("", None)]
        for side, modifier in sides:
            terminology = {"category": ANATOMY, "type": code}
            if modifier:
                terminology["type_modifier"] = modifier
            name = f"{side} {structure}".strip()
            labels.append({"value": len(labels) + 1, "name": name[0].upper() + name[1:],
                           "color": [round(c / 255, 4) for c in rgb], "terminology": terminology})
    return labels


UNTRAINED_NOTE = "UNTRAINED: random-init weights from scripts/make_untrained_models.py; outputs are meaningless."


def cards() -> list:
    seg_labels = segmentation_labels()
    return [
        {
            "schema_version": 1, "name": "brain-structures-seg", "task": "segmentation",
            "description": "Subcortical brain structures (Harvard-Oxford atlas vocabulary) on T1w/T2w brain MR. "
                           + UNTRAINED_NOTE,
            "network": "nnMambaSeg",
            "hyperparameters": {"in_ch": 1, "channels": 8, "blocks": 2, "number_classes": len(seg_labels) + 1},
            "weights": "brain-structures-seg.safetensors", "trained": False,
            "input": {"channels": [{"name": "T1w or T2w", "modality": "MR"}], "spacing_mm": [2.0, 2.0, 2.0],
                      "orientation": "LPS", "patch_size": [112, 128, 112],
                      "normalization": {"method": "zscore", "mask": "nonzero"}},
            # Labels are lateralised: never mirror left-right (axis 0 in LPS).
            "inference": {"mirror_axes": [1, 2]},
            "labels": seg_labels,
            "training": None, "accuracy": None,
            "provenance": {"labels": "Harvard-Oxford subcortical atlas structure names; SNOMED CT codes and "
                                     "colours from 3D Slicer's terminology files"},
            "license": "Apache-2.0",
        },
        {
            "schema_version": 1, "name": "afids-landmarks", "task": "landmarks",
            "description": "The 32 AFIDs anatomical fiducials on T1w brain MR, one heatmap each. " + UNTRAINED_NOTE,
            "network": "nnMambaLandmark",
            "hyperparameters": {"in_ch": 1, "channels": 8, "blocks": 2, "number_landmarks": len(AFIDS)},
            "weights": "afids-landmarks.safetensors", "trained": False,
            "input": {"channels": [{"name": "T1w", "modality": "MR"}], "spacing_mm": [2.0, 2.0, 2.0],
                      "orientation": "LPS", "patch_size": [112, 128, 112],
                      "normalization": {"method": "zscore", "mask": "nonzero"}},
            "inference": {"mirror_axes": [1, 2], "heatmap_activation": "none"},
            "landmarks": [{"name": n, "description": d} for n, d in AFIDS],
            "training": None, "accuracy": None,
            "provenance": {"landmarks": AFIDS_SOURCE},
            "license": "Apache-2.0",
        },
        {
            "schema_version": 1, "name": "scan-type-cls", "task": "classification",
            "description": "Scan type for series routing: CT or MR, from the whole volume at 4 mm. " + UNTRAINED_NOTE,
            "network": "nnMambaEncoder",
            "hyperparameters": {"in_ch": 1, "channels": 8, "blocks": 2, "number_classes": 2},
            "weights": "scan-type-cls.safetensors", "trained": False,
            "input": {"channels": [{"name": "any", "modality": "any"}], "spacing_mm": [4.0, 4.0, 4.0],
                      "orientation": "LPS", "patch_size": [64, 64, 64],
                      "normalization": {"method": "zscore", "mask": "all"}},
            "inference": {"mirror_axes": [0, 1, 2]},
            "classes": [{"name": "CT", "description": "computed tomography"},
                        {"name": "MR", "description": "magnetic resonance imaging"}],
            "training": None, "accuracy": None,
            "provenance": {"classes": "DICOM modality codes CT and MR"},
            "license": "Apache-2.0",
        },
    ]


def main(argv=None) -> int:
    import torch

    from nnmamba.model_card import card_path
    from nnmamba.model_card import validate_card_dict
    from nnmamba.models import build_for_card, save_model

    parser = argparse.ArgumentParser(description="write the shipped cards with untrained weights")
    parser.add_argument("--output", type=Path, default=ROOT / "models")
    parser.add_argument("--overwrite", action="store_true", help="replace existing untrained models")
    parser.add_argument("--replace-trained", action="store_true",
                        help="also replace models whose card says they are trained (normally kept)")
    args = parser.parse_args(argv)
    for n, card in enumerate(cards()):
        existing = card_path(args.output, card["name"])
        if existing.is_file() and json.loads(existing.read_text()).get("trained") and not args.replace_trained:
            print(f"kept {existing}: it holds trained weights (pass --replace-trained to replace them)")
            continue
        torch.manual_seed(1000 + n)
        network = build_for_card(validate_card_dict(card, card["name"]), scan_backend="reference")
        written = save_model(json.loads(json.dumps(card)), network, args.output, overwrite=args.overwrite)
        print(f"wrote {written.path} and {written.weights_path.name}: {written.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
