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

    from nnmamba.model_card import validate_card_dict

    from nnmamba.models import build_for_card, save_model

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


def _card(base: dict, name: str) -> dict:
    card = copy.deepcopy(base)
    card["name"] = name
    card["hyperparameters"]["channels"] = 16        # wide enough that every layer carries signal
    card["weights"] = f"{name}.safetensors"
    return card


def write_calibrated_cards(folder: Path) -> dict:
    """A segmentation and a landmark card (16 channels, BatchNorms calibrated on `oblique_head`) in
    `folder`; returns task -> card path. Their outputs vary across the volume, unlike raw random nets."""
    import torch

    from nnmamba.model_card import validate_card_dict

    from nnmamba.models import build_for_card, save_model

    paths = {}
    for n, base in enumerate((SEG_CARD, LANDMARK_CARD)):
        card = _card(base, f"calibrated-{base['task']}")
        torch.manual_seed(n)
        network = build_for_card(validate_card_dict(copy.deepcopy(card)), scan_backend="torch")
        calibrate_batchnorm(network, oblique_head_tile())
        saved = save_model(card, network, folder)
        paths[base["task"]] = str(saved.path)
    return paths


def calibrate_batchnorm(network, tile) -> None:
    """BatchNorm statistics of `tile` itself (one forward in train mode): a random network's output then
    varies across the volume instead of one class winning everywhere, so agreement means something."""
    import torch

    for m in network.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.momentum = None       # cumulative average: after one batch, exactly its statistics
            m.reset_running_stats()
    network.train()
    with torch.no_grad():
        network(tile)
    network.eval()


def oblique_head_tile():
    """(1, 1, 32, 32, 32) z-scored centre of `oblique_head`, the shape of one tile of the cards."""
    import torch

    array = oblique_head().array[14:46, 19:51, 16:48]
    return torch.from_numpy((array - array.mean()) / array.std())[None, None].float()


def oblique_head(shape_kji=(60, 70, 64)):
    """A numpy-built (no SimpleITK) head on an oblique, anisotropic grid, as a `Volume`."""
    from nnmamba.volume import Geometry, Volume

    rng = np.random.default_rng(0)
    k, j, i = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape_kji], indexing="ij")
    r = np.sqrt(i ** 2 + j ** 2 + k ** 2)
    array = np.where(r < 0.9, 300.0, 0.0) + np.where(r < 0.6, -120.0, 0.0) + rng.normal(0, 5, shape_kji)
    c, s = np.cos(0.4), np.sin(0.4)
    direction = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return Volume(array.astype(np.float32), Geometry(np.array([-60.0, -70.0, -50.0]),
                                                     np.array([2.1, 1.9, 2.3]), direction))
