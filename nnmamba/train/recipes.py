"""The cards (network, preprocessing, vocabulary) of the three shipped models, built from the
prepared data's manifest, so the names / labels / landmarks / classes the model is trained with
are the ones its card ships with.

Where `models/` already holds a card of the same name, that card is the template: its codes, wording and
provenance are kept, after checking that its vocabulary is the one the data was prepared with; the
recipe's network, hyperparameters, input and inference settings replace the card's (a recipe that
changed them trains a new model); training replaces `trained`, `training`, `accuracy` and the weights.

    card = shipped_card("brain-structures-seg", read_manifest("data/prepared"))
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from nnmamba.model_card import CARD_SCHEMA_VERSION, card_path
from nnmamba.train.synth import SpatialConfig, SynthConfig
from nnmamba.train.synth.labels import (AFIDS_LEFT_RIGHT_PAIRS, BRAIN_STRUCTURES, EXTRACEREBRAL_CSF, SCALP,
                                       SCALP_FAT, SKULL, UNLABELLED_BRAIN)

log = logging.getLogger("nnmamba.train")

SHIPPED = {
    "brain-structures-seg": {
        "task": "segmentation", "network": "nnMambaSeg",
        # scores of any sign + deep supervision (the upstream head collapsed: docs/training.md)
        "hyperparameters": {"in_ch": 1, "channels": 16, "blocks": 2, "head": "linear", "deep_supervision": True},
        "spacing_mm": [2.0, 2.0, 2.0], "patch_size": [112, 128, 112],
        "normalization": {"method": "percentile", "lower": 0.5, "upper": 99.5},
        "channel": {"name": "head MR (any contrast) or CT", "modality": "any"},
        # mirror TTA left-right only, with Left/Right labels swapped (`mirror_pairs`, added from the
        # label names) as training mirrors: front-back or up-down mirrors show it heads it never saw
        # (held-out Dice 0.73 -> 0.31); left-right with the swap 0.722 -> 0.727 (docs/training.md)
        "inference": {"mirror_axes": [0]},
        "description": "Fifteen subcortical brain structures (lateral ventricles, thalami, caudates, putamina, "
                       "pallidi, hippocampi, amygdalae, brainstem) on head MR of any contrast or CT, 2 mm, "
                       "small nnMambaSeg (linear head, deep supervision) trained on generated images.",
    },
    "afids-landmarks": {
        # Coarse on purpose: one 64^3 patch of 4 mm voxels (256 mm) holds the whole head, so every
        # landmark is seen with all of its context; scores are read by a spatial softmax (the linear
        # head lets them go negative) and the points are then held together by a fit of the template.
        "task": "landmarks", "network": "nnMambaLandmark",
        "hyperparameters": {"in_ch": 1, "channels": 8, "blocks": 2, "head": "linear"},
        "spacing_mm": [4.0, 4.0, 4.0], "patch_size": [64, 64, 64],
        "normalization": {"method": "percentile", "lower": 0.5, "upper": 99.5},
        "channel": {"name": "T1w or T2w MR", "modality": "MR"},
        # decoding: a soft-argmax within 20 mm (2.5 sigma of the 8 mm training target) of each map's
        # peak; then the AFIDs template fitted to the 32 detections (its points are added from
        # nnmamba/data/afids by shipped_card), and every point answered from the fit (accept_mm 0):
        # its 7 parameters average the detections' independent errors away, so the fitted points
        # were nearer the truth than the detections they came from (held-out, docs/training.md; a
        # perfect similarity fit of the template alone is 0.84 mm from the truth on FSL MNI152,
        # 2.49 mm on MNI305).
        "inference": {"mirror_axes": [], "heatmap_activation": "none",
                      "landmark_decoding": {"method": "soft-argmax", "radius_mm": 20.0, "temperature": 1.0},
                      "landmark_fit": {"accept_mm": 0.0, "inlier_mm": 10.0, "tukey_mm": 12.0, "min_inliers": 8}},
        "landmark_template": "afids",
        "description": "The 32 AFIDs anatomical fiducials (AC, PC, ...) on head MR: 4 mm score maps of the whole "
                       "head (nnMambaLandmark, spatial softmax), held together by a robust similarity fit of "
                       "the AFIDs template.",
    },
    "scan-type-cls": {
        "task": "classification", "network": "nnMambaEncoder",
        # upstream's head (channels units, dropout 0.5) underfit (loss 1.105 -> 0.940, chance 1.10); a
        # 64-unit head without dropout fell to ~0.6 in 500 CPU steps
        "hyperparameters": {"in_ch": 1, "channels": 12, "blocks": 2, "head_width": 64, "head_dropout": 0.0},
        "spacing_mm": [4.0, 4.0, 4.0], "patch_size": [64, 64, 64],
        "normalization": {"method": "percentile", "lower": 0.5, "upper": 99.5},
        "channel": {"name": "any CT or MR volume", "modality": "any"},
        # one 64^3 forward per volume: the mean over its 8 mirrors costs ~0.4 s on 2 CPU cores, and was
        # right more often under motion and degradation (docs/training.md), so it is the model's answer
        "inference": {"mirror_axes": [0, 1, 2], "mirror_always": True},
        "description": "Scan type for series routing: CT, T1-weighted or T2-weighted MR, from a 4 mm view of the "
                       "whole volume, nnMambaEncoder.",
    },
}



@dataclass
class DataRecipe:
    """Where a task's training batches come from and how they are changed (all on the device).

    real_fraction of each batch is augmented real images (the split's `train` cases), the rest is
    generated from the split's `label_maps` cases (FreeSurfer-coded maps; for landmarks, the real
    templates' own intensities quantised into `pseudo_label_classes` classes stand in for a label map,
    so generated contrasts keep the exact landmark positions). The working voxel (`synth.voxel_mm`) is
    not the recipe's: the problem sets it from the card's spacing.
    """
    real_fraction: float = 1.0
    synth: SynthConfig = field(default_factory=SynthConfig)
    head_layers: bool = False                         # draw CSF/skull/fat/scalp around brain-only maps
    target_codes: Sequence[int] = ()                  # segmentation classes 1..n from these FreeSurfer codes
    ignore_codes: Sequence[int] = (UNLABELLED_BRAIN,)
    pseudo_label_classes: int = 0
    point_pairs: Sequence = ()                        # (right, left) landmark index pairs
    # segmentation: extra classes after the card's labels, (name, FreeSurfer codes) each; the network
    # learns them and inference maps them to background
    auxiliary_classes: Sequence = ()
    # the patch centre moves up to (volume - patch) / 2 (so crops reach the borders) plus this much
    # (and at least MIN_TRANSLATE_VOXELS)
    translate_beyond_reach_voxels: float = 8.0
    label_smoothing: float = 0.0                      # classification: share of the target spread over all classes
    description: str = ""

    def __post_init__(self) -> None:
        if not 0.0 <= self.real_fraction <= 1.0:
            raise ValueError(f"real_fraction must be in [0, 1], got {self.real_fraction}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


CORTEX_PARCELS = tuple(range(1000, 1036)) + tuple(range(2000, 2036))
# what else a brain holds, so "background" is only what is left (air, neck, ...); codes in labels.py
AUXILIARY_CLASSES = (
    ("cerebral white matter", (2, 41, 77, 85, 251, 252, 253, 254, 255)),
    ("cerebral cortex", (3, 42) + CORTEX_PARCELS),
    ("cerebellum", (7, 8, 46, 47)),
    ("other CSF", (5, 44, 14, 15, 24, 31, 63, EXTRACEREBRAL_CSF)),
    ("head outside the brain", (SKULL, SCALP_FAT, SCALP)),
)


def default_recipe(task: str) -> DataRecipe:
    """Real images only, with moderate changes (any card without a recipe of its own)."""
    # as mild as the per-sample MONAI augmentation it replaces (affine only, light intensity changes)
    rotate = 180.0 if task == "classification" else 15.0
    spatial = SpatialConfig(rotate_degrees=rotate, scale=0.15, elastic_std_voxels=0.0,
                            flip_probability=0.5 if task == "classification" else 0.0)
    synth = SynthConfig(spatial=spatial, resolution_probability=0.2, bias_std=0.2, gamma_std=0.2)
    return DataRecipe(real_fraction=1.0, synth=synth, translate_beyond_reach_voxels=0.0,
                      description=f"real images; rotation +-{rotate:.0f} deg, scale +-15 %, light bias, gamma, "
                                  f"resolution, noise")


def _data_recipes() -> dict:
    seg_spatial = SpatialConfig(rotate_degrees=20, scale=0.2, elastic_std_voxels=2.0, flip_probability=0.5)
    # 8 Newton steps move the points to within 2e-5 voxel of 16 steps' answer at this field (measured:
    # 640k points over 20k maps; 6 steps 8e-5); each step saved is ~17 launches per batch part on a GPU
    landmark_spatial = SpatialConfig(rotate_degrees=35, scale=0.15, isotropic_scale=True, elastic_std_voxels=1.0,
                                     flip_probability=0.5, point_iterations=8)
    scan_spatial = SpatialConfig(rotate_degrees=180, scale=0.2, elastic_std_voxels=1.0, flip_probability=0.5)
    return {
        "brain-structures-seg": DataRecipe(
            real_fraction=0.0, head_layers=True, target_codes=[code for code, _ in BRAIN_STRUCTURES],
            auxiliary_classes=AUXILIARY_CLASSES,
            synth=SynthConfig(spatial=seg_spatial, contrast_probabilities=(0.6, 0.15, 0.1, 0.15),
                              ventricle_growth_probability=0.5, brain_extraction_probability=0.1),
            description="generated from FreeSurfer label maps (SynthSeg recipe): any MR contrast 60 %, T1w 15 %, "
                        "T2w 10 %, CT 15 %; rotation +-20 deg, scale +-20 %, elastic, mirror with label swap, "
                        "bias, gamma, resolution up to 4 mm / 8 mm slices, noise; head layers drawn around the brain; "
                        "lateral ventricles grown by 2-4 mm into the white matter in half the samples; "
                        "brain-extracted (0 outside the brain) in 10 %"),
        "afids-landmarks": DataRecipe(
            real_fraction=0.5, pseudo_label_classes=12, point_pairs=AFIDS_LEFT_RIGHT_PAIRS,
            translate_beyond_reach_voxels=12.0,   # 48 mm at 4 mm: the points stay inside the 256 mm patch
            # the templates' intensity classes carry no tissue names: "any" contrast only
            synth=SynthConfig(spatial=landmark_spatial, contrast_probabilities=(1.0, 0.0, 0.0, 0.0)),
            description="half real templates (T1w, T2w), half generated contrasts of the templates' own "
                        "intensity classes; similarity transforms (rotation +-35 deg, scale +-15 %, the head "
                        "anywhere in the field of view), elastic, mirror with point swap, bias, gamma, "
                        "resolution, noise; points moved by the same map"),
        "scan-type-cls": DataRecipe(
            # the generated contrasts' weights are re-solved by the problem so that every class is a third of
            # the samples, real and generated together (no real T2w volume is trained on: T2w is generated only)
            real_fraction=0.5, head_layers=True, label_smoothing=0.1,
            synth=SynthConfig(spatial=scan_spatial, contrast_probabilities=(0.0, 1.0, 1.0, 1.0),
                              resolution_max_mm=6.0, thick_slice_max_mm=10.0),
            description="half real CT / MR volumes, half generated T1w / T2w / CT heads from label maps, the classes "
                        "balanced over both; any orientation, scale +-20 %, elastic, mirror, bias (MR), gamma (MR), "
                        "resolution, noise"),
    }


def data_recipe(name: str, task: str) -> DataRecipe:
    """The shipped model's data recipe, or the default one for any other card."""
    return _data_recipes().get(name) or default_recipe(task)


CLASS_DESCRIPTIONS = {"CT": "X-ray computed tomography", "MR": "magnetic resonance imaging (any weighting)",
                      "T1w MR": "T1-weighted magnetic resonance imaging",
                      "T2w MR": "T2-weighted magnetic resonance imaging"}


def left_right_pairs(names: dict) -> list:
    """{output channel: name} -> [[left, right], ...] for each "Left X" with a "Right X": the outputs a
    left-right mirror swaps."""
    channel = {name: c for c, name in names.items()}
    return [[c, channel["Right " + name[len("Left "):]]] for c, name in sorted(names.items())
            if name.startswith("Left ") and "Right " + name[len("Left "):] in channel]


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
            "inference": json.loads(json.dumps(recipe["inference"])), "training": None, "accuracy": None}
    if recipe["task"] == "segmentation":
        card["labels"] = [{"value": s["label"], "name": s["name"], "color": list(s["color"])}
                          for s in manifest["segments"]]
        auxiliary = data_recipe(name, recipe["task"]).auxiliary_classes
        first = max(s["label"] for s in manifest["segments"]) + 1
        hyper["number_classes"] = first + len(auxiliary)
        if auxiliary:
            card["auxiliary_classes"] = [{"value": first + n, "name": aux_name, "at_inference": "background"}
                                         for n, (aux_name, _) in enumerate(auxiliary)]
        if 0 in card["inference"]["mirror_axes"]:
            card["inference"]["mirror_pairs"] = left_right_pairs({s["label"]: s["name"] for s in manifest["segments"]})
    elif recipe["task"] == "landmarks":
        lm = manifest["landmarks"]
        card["landmarks"] = [{"name": n, "description": d} for n, d in zip(lm["names"], lm["descriptions"])]
        hyper["number_landmarks"] = len(lm["names"])
    else:
        card["classes"] = [{"name": c, "description": CLASS_DESCRIPTIONS.get(c, "")} for c in manifest["classes"]]
        hyper["number_classes"] = len(manifest["classes"])
    if existing and _vocabulary(existing) != _vocabulary(card):
        # The prepared data names other outputs (e.g. 15 structures where the shipped weights have 11):
        # a model trained on it replaces the shipped one, so the recipe's card is the template.
        log.warning("models/%s/model.json names other outputs than the prepared data (%s... vs %s...); "
                    "training a new card from the recipe", name, _vocabulary(existing)[:3], _vocabulary(card)[:3])
    elif existing:
        _keep_existing(card, existing)
    if recipe.get("landmark_template") == "afids":
        _add_afids_template(card)
    return card


AFIDS_TEMPLATE_NOTE = ("landmark_fit template: the AFIDs project's 32 points on MNI152NLin2009cAsym (CC-BY-4.0, "
                       "AFIDs project; afids-validator afids-templates/human, commit ed70bf6), converted RAS -> "
                       "LPS; file nnmamba/data/afids/tpl-MNI152NLin2009cAsym_afids.fcsv")


def _add_afids_template(card: dict) -> None:
    """Put the AFIDs template points into the card's landmark_fit, in the card's landmark order (matched
    by description, which the prepared data takes from afids-utils), with their provenance."""
    from nnmamba.data import afids_template_path
    from nnmamba.io.markups import read_fcsv

    points, rows = read_fcsv(afids_template_path())
    by_description = {row.get("desc", "").strip().lower(): point for row, point in zip(rows, points)}
    wanted = [item["description"].strip().lower() for item in card["landmarks"]]
    missing = [d for d in wanted if d not in by_description]
    if missing:
        raise ValueError(f"the AFIDs template has no point described {missing[:3]}; the card's landmarks are "
                         f"not the AFIDs")
    fit = card["inference"]["landmark_fit"]
    fit["template"] = "AFIDs on MNI152NLin2009cAsym (AFIDs project, CC-BY-4.0)"
    fit["template_lps_mm"] = [[round(float(v), 5) for v in by_description[d]] for d in wanted]
    card["provenance"] = {**(card.get("provenance") or {}), "landmark_template": AFIDS_TEMPLATE_NOTE}


TRAINING_FIELDS = ("trained", "training", "accuracy", "weights_sha256")
# what the recipe decides over an existing card's (the card keeps its wording, vocabulary, provenance)
RECIPE_FIELDS = ("network", "hyperparameters", "input", "inference")


def _vocabulary(card: dict) -> list:
    if card["task"] == "segmentation":
        return [(item["value"], item["name"]) for item in card.get("labels", [])]
    if card["task"] == "landmarks":
        return [item["name"] for item in card.get("landmarks", [])]
    return [item["name"] for item in card.get("classes", [])]


def _keep_existing(card: dict, existing: dict) -> None:
    """Take the shipped card's vocabulary (names, colours, terminology codes) and any field the recipe
    does not write, after checking its vocabulary matches the data's; the network, hyperparameters,
    input and inference stay the recipe's (the recipe decides how the new model is built)."""
    if existing.get("task") != card["task"] or _vocabulary(existing) != _vocabulary(card):
        raise ValueError(f"models/{card['name']}/model.json names other outputs than the prepared data "
                         f"({_vocabulary(existing)[:4]}... vs {_vocabulary(card)[:4]}...); re-run "
                         f"scripts/prepare_data.py or align the card before training")
    description = card["description"]
    recipe_fields = {k: card[k] for k in RECIPE_FIELDS}
    changed = [k for k in RECIPE_FIELDS if existing.get(k) != recipe_fields[k]]
    card.clear()
    card.update({k: v for k, v in json.loads(json.dumps(existing)).items() if k not in TRAINING_FIELDS})
    card["trained"] = False
    if changed:
        # the recipe describes another network than the shipped weights: training makes a new model
        log.info("models/%s/model.json: the recipe's %s replace the card's", card["name"], ", ".join(changed))
        card.update(recipe_fields)
    if changed or "UNTRAINED" in card.get("description", ""):
        card["description"] = description


def existing_card(name: str, models_dir: Path) -> Optional[dict]:
    path = card_path(models_dir, name)
    return json.loads(path.read_text()) if path.is_file() else None
