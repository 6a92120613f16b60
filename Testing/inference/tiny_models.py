"""Tiny real model cards (real networks from `nnmamba.networks`, random weights) for fast tests."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np

SEG_CARD = {
    "schema_version": 1, "name": "tiny-seg", "task": "segmentation", "network": "nnMambaSeg",
    "hyperparameters": {"in_ch": 1, "channels": 4, "blocks": 2, "number_classes": 3},
    "weights": "tiny-seg.safetensors", "trained": False,
    "input": {"channels": [{"name": "T1w", "modality": "MR"}], "spacing_mm": [4.0, 4.0, 4.0],
              "orientation": "LPS", "patch_size": [32, 32, 32],
              "normalization": {"method": "zscore", "mask": "nonzero"}},
    "inference": {"mirror_axes": [1, 2]},
    "labels": [
        {"value": 1, "name": "Left thalamus", "color": [0.48, 0.4, 0.15],
         "terminology": {"category": ["SCT", "123037004", "Anatomical Structure"],
                         "type": ["SCT", "119406000", "Thalamus"],
                         "type_modifier": ["SCT", "7771000", "Left"]}},
        {"value": 2, "name": "Brainstem", "color": [0.47, 0.62, 0.69],
         "terminology": {"category": ["SCT", "123037004", "Anatomical Structure"],
                         "type": ["SCT", "119238007", "Brain stem"]}},
    ],
    "training": None, "accuracy": None,
}
LANDMARK_CARD = {
    "schema_version": 1, "name": "tiny-landmarks", "task": "landmarks", "network": "nnMambaLandmark",
    "hyperparameters": {"in_ch": 1, "channels": 4, "blocks": 2, "number_landmarks": 3},
    "weights": "tiny-landmarks.safetensors", "trained": False,
    "input": {"channels": [{"name": "T1w", "modality": "MR"}], "spacing_mm": [4.0, 4.0, 4.0],
              "orientation": "LPS", "patch_size": [32, 32, 32],
              "normalization": {"method": "zscore", "mask": "nonzero"}},
    "inference": {"mirror_axes": [1, 2], "heatmap_activation": "none"},
    "landmarks": [{"name": "AC", "description": "AC"}, {"name": "PC", "description": "PC"},
                  {"name": "ICS", "description": "infracollicular sulcus"}],
    "training": None, "accuracy": None,
}
CLS_CARD = {
    "schema_version": 1, "name": "tiny-cls", "task": "classification", "network": "nnMambaEncoder",
    "hyperparameters": {"in_ch": 1, "channels": 4, "blocks": 2, "number_classes": 2},
    "weights": "tiny-cls.safetensors", "trained": True,
    "input": {"channels": [{"name": "any", "modality": "any"}], "spacing_mm": [8.0, 8.0, 8.0],
              "orientation": "LPS", "patch_size": [32, 32, 32],
              "normalization": {"method": "zscore", "mask": "all"}},
    "inference": {"mirror_axes": [0, 1, 2]},
    "classes": [{"name": "CT", "description": "computed tomography"},
                {"name": "MR", "description": "magnetic resonance"}],
    "training": None, "accuracy": None,
}
CARDS = [SEG_CARD, LANDMARK_CARD, CLS_CARD]


def write_tiny_models(folder: Path) -> Path:
    """Write the three tiny cards + deterministic random weights into `folder`."""
    import torch

    from nnmamba.models import build_for_card, save_model, validate_card_dict

    for n, card in enumerate(CARDS):
        torch.manual_seed(n)
        network = build_for_card(validate_card_dict(copy.deepcopy(card)), scan_backend="reference")
        save_model(copy.deepcopy(card), network, folder)
    return folder


def head_phantom(shape_kji=(14, 18, 16), spacing=(3.0, 2.5, 4.0), direction=None, origin=(-20.0, -25.0, -30.0),
                 seed: int = 0):
    """A small ellipsoid 'head' (bright shell, darker inside, noise) as a SimpleITK image."""
    import SimpleITK as sitk   # here, so the GPU tests (no SimpleITK there) can use the cards

    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape_kji], indexing="ij")
    r = np.sqrt(i ** 2 + j ** 2 + k ** 2)
    array = np.where(r < 0.9, 300.0, 0.0) + np.where(r < 0.7, -100.0, 0.0)
    array += rng.normal(0, 5, size=array.shape) * (r < 0.9)
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(tuple(np.asarray(direction, dtype=float).ravel()))
    return image
