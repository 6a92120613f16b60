"""Training losses: Dice + cross-entropy (segmentation), weighted heatmap MSE (landmarks),
cross-entropy (classification). Stateless tensor functions.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5,
                 ignore_index: Optional[int] = None) -> torch.Tensor:
    """logits: (B, C, k, j, i); target: (B, k, j, i) integer labels in 0..C-1 -> scalar.

    Cross-entropy plus (1 - soft Dice) averaged over the foreground classes, with the Dice sums
    taken over the whole batch ("batch Dice", as nnU-Net does for small batches). Voxels labelled
    `ignore_index` (what a label map leaves unknown) count in neither term.
    """
    logits = logits.float()
    target = target.long()
    valid = None
    if ignore_index is not None:
        valid = target != ignore_index
        target = torch.where(valid, target, 0)
        per_voxel = F.cross_entropy(logits, target, reduction="none")   # no host sync for "any valid?"
        ce = (per_voxel * valid).sum() / valid.sum().clamp_min(1)
    else:
        ce = F.cross_entropy(logits, target)
    probabilities = logits.softmax(dim=1)
    one_hot = F.one_hot(target, logits.shape[1]).permute(0, 4, 1, 2, 3).to(probabilities.dtype)
    if valid is not None:
        mask = valid[:, None].to(probabilities.dtype)
        probabilities, one_hot = probabilities * mask, one_hot * mask
    dims = (0, 2, 3, 4)
    intersection = (probabilities * one_hot).sum(dims)
    denominator = probabilities.sum(dims) + one_hot.sum(dims)
    dice = (2 * intersection + smooth) / (denominator + smooth)
    return ce + (1 - dice[1:].mean())


def heatmap_loss(predicted: torch.Tensor, target: torch.Tensor, foreground_weight: float = 50.0,
                 localisation_weight: float = 0.05, temperature: float = 0.05) -> torch.Tensor:
    """predicted, target: (B, N, k, j, i) heatmaps with target peaks of 1 -> scalar.

    Mean squared error with voxels weighted by 1 + foreground_weight * target (a landmark's
    Gaussian covers ~0.01% of the volume, so without the weight the net learns to output zeros),
    plus a localisation term: the cross-entropy between each channel's spatial softmax of
    predicted / temperature and the normalised target. Its gradient reaches the true position from
    the first step, so the peak moves there long before the MSE alone would shape it; both terms
    agree on where the arg-max (what inference reads) should be.
    """
    predicted, target = predicted.float(), target.float()
    weight = 1.0 + foreground_weight * target
    mse = (weight * (predicted - target) ** 2).sum() / weight.sum()
    logits = (predicted / temperature).flatten(2)
    distribution = target.flatten(2)
    distribution = distribution / distribution.sum(-1, keepdim=True).clamp_min(1e-8)
    cross_entropy = -(distribution * logits.log_softmax(-1)).sum(-1).mean()
    return mse + localisation_weight * cross_entropy


def classification_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """logits: (B, classes); target: (B,) class indices -> scalar cross-entropy, the target spread
    `label_smoothing` of its mass evenly over all classes (a few training volumes are easy to be
    over-confident on)."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    return F.cross_entropy(logits.float(), target.long(), label_smoothing=float(label_smoothing))
