"""Trivial baselines a model must beat, answering in the model's own terms on the same cases.

- segmentation: an atlas placed by coordinates: a FreeSurfer-coded label map in MNI space (the
  training label map cvs_avg35 aseg) resampled nearest-neighbour onto the case's grid through
  physical (= MNI) coordinates, its codes mapped to the card's labels by name. It knows where
  structures are in MNI space and nothing about the image, so it is good at the native pose of an
  MNI-space scan and fails as soon as the head moves.
- landmarks: the template's AFIDs coordinates (MNI2009c ground truth), answered unchanged.
- classification: the majority class of the training cases, whatever the image.

Each returns what the model's result gives: a label map [k, j, i] in card label values, points (n, 3)
LPS mm, or class probabilities (classes,).

    labels = atlas_labels(atlas_case, heldout_case, atlas_code_to_card_label(card))
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import SimpleITK as sitk

from nnmamba.io.volumes import image_from_array
from nnmamba.model_card import ModelCard
from nnmamba.train.data import PreparedCase, class_of_case

ATLAS_CASE = "cvs_avg35_aparc_aseg"     # scripts/prepare_data.py's name for the MNI-space training label map
TEMPLATE_CASE = "mni2009c_t1w"          # the template whose AFIDs the landmark model was trained on

DESCRIPTIONS = {
    "segmentation": "atlas placed by coordinates: {atlas} (FreeSurfer codes, MNI space) resampled nearest-neighbour "
                    "onto each case's grid through physical (MNI) coordinates, codes mapped to the card's labels",
    "landmarks": "template AFIDs coordinates: {template}'s ground-truth points answered unchanged",
    "classification": "majority class of the training cases ({majority}), whatever the image",
}


def atlas_code_to_card_label(card: ModelCard) -> dict:
    """FreeSurfer code -> the card's label value, for the card's structures FreeSurfer names alike."""
    from nnmamba.train.synth.labels import BRAIN_STRUCTURES

    by_name = {segment.name: segment.label for segment in card.labels}
    return {code: by_name[name] for code, name in BRAIN_STRUCTURES if name in by_name}


def atlas_labels(atlas: PreparedCase, case: PreparedCase, code_to_label: dict) -> np.ndarray:
    """The atlas's codes on the case's grid (by physical coordinates), as card labels [k, j, i] uint8."""
    if atlas.codes is None:
        raise ValueError(f"atlas case {atlas.name} has no label codes (prepare it as a label map)")
    resampled = sitk.GetArrayFromImage(sitk.Resample(
        image_from_array(atlas.codes.astype(np.int16), atlas.geometry),
        image_from_array(np.zeros(case.shape_kji, np.int16), case.geometry),
        sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    out = np.zeros(case.shape_kji, np.uint8)
    for code, label in code_to_label.items():
        out[resampled == code] = label
    return out


def template_landmarks(template: PreparedCase, card: ModelCard) -> np.ndarray:
    """The template's ground-truth points (n, 3) LPS, in the card's landmark order."""
    if template.landmarks_lps is None or len(template.landmarks_lps) != len(card.landmarks):
        got = None if template.landmarks_lps is None else len(template.landmarks_lps)
        raise ValueError(f"template case {template.name} has {got} landmarks, the card {len(card.landmarks)}")
    return np.asarray(template.landmarks_lps, dtype=float)


def majority_class(training_cases: list, class_names: list) -> int:
    """The index of the most frequent class among the (real) training cases; ties go to the first class."""
    if not training_cases:
        raise ValueError("the classification split has no real training cases to take a majority class from")
    counts = Counter(class_of_case(case, class_names) for case in training_cases)
    best = max(counts.values())
    return min(c for c, n in counts.items() if n == best)


def one_hot(index: int, classes: int) -> np.ndarray:
    """A baseline's class answer as probabilities (classes,)."""
    probabilities = np.zeros(classes)
    probabilities[index] = 1.0
    return probabilities
