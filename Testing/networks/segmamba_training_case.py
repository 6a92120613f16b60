"""A small real training case for the network tests: the embedded brain MR sample and its tumour mask
(pyradiomics brain1, see data/README.md), cropped around the tumour and reduced to 16 x 16 x 32 voxels."""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from nnmamba.data import sample_volume_path

LABEL_PATH = Path(__file__).parent / "data" / "brain1_label.nrrd"
# [k, j, i] crop of the 25 x 256 x 256 volume around the tumour (k 11..17, j 84..153, i 162..208)
CROP = (slice(6, 22), slice(88, 152), slice(121, 249))
POOL = 4  # in-plane reduction: 0.78 mm -> 3.1 mm voxels


def tumour_patch() -> Tuple[torch.Tensor, torch.Tensor]:
    """x: (1, 1, 16, 16, 32) z-scored MR intensities; target: (1, 16, 16, 32) long, 1 = tumour."""
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(sample_volume_path()))).astype(np.float32)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(LABEL_PATH))).astype(np.float32)
    if image.shape != label.shape:
        raise RuntimeError(f"sample {image.shape} and mask {label.shape} do not share a grid")
    image = torch.from_numpy(image[CROP])[None, None]
    label = torch.from_numpy(label[CROP])[None, None]
    image = F.avg_pool3d(image, (1, POOL, POOL))
    label = F.avg_pool3d(label, (1, POOL, POOL)) >= 0.5
    foreground = image[image > 0]
    x = (image - foreground.mean()) / foreground.std()
    return x, label[:, 0].long()


def dice_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + (1 - soft Dice of the foreground classes)."""
    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(dim=1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].to(probs.dtype)
    dice = (2 * (probs * onehot).sum() + 1e-5) / (probs.sum() + onehot.sum() + 1e-5)
    return ce + 1 - dice


def train_steps(net: torch.nn.Module, steps: int = 4, lr: float = 2e-3) -> List[float]:
    """Adam on the tumour patch for `steps` steps; the loss before each step."""
    x, target = tumour_patch()
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    losses = []
    for _ in range(steps):
        loss = dice_ce(net(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses
