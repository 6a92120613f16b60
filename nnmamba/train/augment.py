"""Spatial and intensity augmentation, from MONAI (imported only when training).

Why MONAI: it is the field's maintained toolkit (Project MONAI, NVIDIA + King's College), its
core needs only torch and numpy (no second torch, no SimpleITK/nibabel pins), and its affine
resampling runs on whatever device the tensor is on, so augmentation happens on the GPU beside the
network instead of starving it from the CPU.

Spatial: a random affine (rotation, scaling, translation) that also crops/pads to the patch (when
the patch is smaller than the volume, the translation reaches its borders), then
for classification random flips and 90-degree turns (scan-type routing must not depend on
orientation). Intensity: gamma, scaling, shift, Gaussian noise and blur, applied to the image only,
after normalisation.

Example:
    >>> spatial = spatial_transform("segmentation", (96, 112, 96), device="cpu")   # doctest: +SKIP
    >>> sample = spatial({"image": image, "label": label})                       # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

TASK_KEYS = {"segmentation": ("image", "label"), "landmarks": ("image", "heatmap"),
             "classification": ("image",)}


def _monai():
    try:
        import monai.transforms as transforms
    except ImportError as e:
        raise RuntimeError("training needs MONAI for augmentation: pip install 'nnmamba[train]' "
                           "(or pip install monai)") from e
    return transforms


def spatial_transform(task: str, patch_kji: Sequence[int], device: Optional[torch.device] = None,
                      rotate_degrees: float = 15.0, scale: float = 0.15, translate_voxels: float = 8.0):
    """Random affine to `patch_kji` (prob 1) on (C, k, j, i) tensors of `task`'s keys."""
    T = _monai()
    keys = TASK_KEYS[task]
    modes = {"image": "bilinear", "label": "nearest", "heatmap": "bilinear"}
    padding = {"image": "border", "label": "zeros", "heatmap": "zeros"}
    rotate = math.radians(rotate_degrees)
    steps = [T.RandAffined(keys=list(keys), spatial_size=list(patch_kji), prob=1.0,
                           rotate_range=(rotate, rotate, rotate), scale_range=(scale, scale, scale),
                           translate_range=(translate_voxels,) * 3,
                           mode=[modes[k] for k in keys], padding_mode=[padding[k] for k in keys],
                           device=device)]
    if task == "classification":
        steps += [T.RandFlipd(keys=list(keys), prob=0.5, spatial_axis=axis) for axis in (0, 1, 2)]
        steps += [T.RandRotate90d(keys=list(keys), prob=0.5, max_k=3, spatial_axes=axes)
                  for axes in ((0, 1), (1, 2))]
    return T.Compose(steps)


def intensity_transform():
    """Random intensity changes of the normalised image (key "image")."""
    T = _monai()
    return T.Compose([
        T.RandAdjustContrastd(keys=["image"], prob=0.3, gamma=(0.7, 1.5)),
        T.RandScaleIntensityd(keys=["image"], factors=0.15, prob=0.3),
        T.RandShiftIntensityd(keys=["image"], offsets=0.15, prob=0.3),
        T.RandGaussianNoised(keys=["image"], prob=0.2, std=0.1),
        T.RandGaussianSmoothd(keys=["image"], prob=0.2, sigma_x=(0.3, 1.0), sigma_y=(0.3, 1.0),
                              sigma_z=(0.3, 1.0)),
    ])


def seed_transforms(*transforms, seed: int) -> None:
    for n, t in enumerate(transforms):
        t.set_random_state(seed=seed + 7919 * n)
