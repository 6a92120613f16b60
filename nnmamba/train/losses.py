"""Training losses: Dice + cross-entropy (segmentation), spatial-softmax divergence + soft-argmax
distance in mm (landmarks), cross-entropy (classification). Stateless tensor functions.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from nnmamba.inference.soft_argmax import soft_argmax


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5,
                 ignore_index: Optional[int] = None) -> torch.Tensor:
    """logits: (B, C, k, j, i); target: (B, k, j, i) integer labels in 0..C-1 -> scalar.

    Cross-entropy plus (1 - soft Dice) averaged over the foreground classes present in the batch,
    with the Dice sums taken over the whole batch ("batch Dice", as nnU-Net does for small batches).
    A class absent from the batch would score Dice 1 for predicting nothing and dilute the small
    structures' gradient, so it is left out of the mean (no host sync: a masked mean). Voxels
    labelled `ignore_index` (what a label map leaves unknown) count in neither term.
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
    truth = one_hot.sum(dims)
    denominator = probabilities.sum(dims) + truth
    dice = (2 * intersection + smooth) / (denominator + smooth)
    present = (truth[1:] > 0).to(dice.dtype)
    mean_dice = (dice[1:] * present).sum() / present.sum().clamp_min(1)
    return ce + (1 - mean_dice) * (present.sum() > 0).to(dice.dtype)


# nnU-Net's deep-supervision weights: halved per level, the coarsest left out, normalised to sum 1
DEEP_SUPERVISION_WEIGHTS = (1.0, 0.5, 0.25, 0.125)


def deep_supervision_loss(output, target: torch.Tensor, ignore_index: Optional[int] = None) -> torch.Tensor:
    """output: logits (B, C, k, j, i), or (those, [logits at 1/2, 1/4, 1/8 ...]) from a network with
    deep supervision; target (B, k, j, i) -> the weighted sum of `dice_ce_loss` at each resolution
    (the target subsampled by striding, nearest, so ignored voxels stay ignored)."""
    if isinstance(output, torch.Tensor):
        return dice_ce_loss(output, target, ignore_index=ignore_index)
    main, auxiliary = output
    levels = [main] + list(auxiliary)
    weights = DEEP_SUPERVISION_WEIGHTS[:len(levels)]
    total = 0.0
    for logits, weight in zip(levels, weights):
        step = target.shape[-1] // logits.shape[-1]
        subsampled = target[:, ::step, ::step, ::step] if step > 1 else target
        total = total + weight * dice_ce_loss(logits, subsampled, ignore_index=ignore_index)
    return total / sum(weights)


def gaussian_distributions(points_ijk: torch.Tensor, shape_kji: Sequence[int], sigma_voxels: float) -> tuple:
    """points (B, N, 3) (i, j, k) -> (Gaussians (B, N, k, j, i) each summing to 1, their entropies (B, N)).

    A product of 1-D Gaussians, each normalised over its own axis of the patch, so the product sums
    to 1 and its entropy is the sum of the three 1-D entropies.
    """
    factors, entropy = [], 0.0
    for size, c in zip(shape_kji, (2, 1, 0)):
        axis = torch.arange(size, device=points_ijk.device, dtype=torch.float32)
        log_density = -0.5 * ((axis - points_ijk[..., c, None].float()) / sigma_voxels) ** 2
        log_density = log_density - log_density.logsumexp(-1, keepdim=True)
        density = log_density.exp()
        factors.append(density)
        entropy = entropy - (density * log_density).sum(-1)
    gk, gj, gi = factors
    return gk[..., :, None, None] * gj[..., None, :, None] * gi[..., None, None, :], entropy


def landmark_loss(scores: torch.Tensor, points_ijk: torch.Tensor, spacing_mm: Sequence[float],
                  sigma_voxels: float, mm_weight: float = 0.05) -> torch.Tensor:
    """scores: (B, N, k, j, i) raw network scores; points_ijk: (B, N, 3) true (i, j, k) positions in
    patch voxels -> scalar.

    Per landmark: the cross-entropy between the spatial softmax of its scores and a Gaussian of
    `sigma_voxels` at the true point (normalised to sum 1), less that Gaussian's entropy (so the
    term's floor is 0: a KL divergence with the same gradient), plus `mm_weight` x the L1 distance
    in mm between the soft-argmax of the whole map and the true point. The first term shapes a
    peak at the point and draws probability there from the first step; the second makes
    probability anywhere far from the point cost in proportion to its distance. Landmarks whose
    point lies outside the patch (moved out by the augmentation) count in neither term.
    """
    scores = scores.float()
    shape = scores.shape[2:]
    points = points_ijk.float()
    target, target_entropy = gaussian_distributions(points, shape, sigma_voxels)
    log_probabilities = scores.flatten(2).log_softmax(-1)
    divergence = -(target.flatten(2) * log_probabilities).sum(-1) - target_entropy       # (B, N)
    expected = soft_argmax(scores)                                                      # (B, N, 3)
    spacing = torch.as_tensor([float(s) for s in spacing_mm], device=scores.device)
    distance_mm = ((expected - points).abs() * spacing).sum(-1)                          # (B, N)
    upper = torch.as_tensor([float(s - 1) for s in reversed(shape)], device=scores.device)  # (i, j, k)
    inside = ((points >= 0) & (points <= upper)).all(-1).float()
    per_landmark = divergence + mm_weight * distance_mm
    return (per_landmark * inside).sum() / inside.sum().clamp_min(1.0)


def describe_landmark_loss(sigma_mm: float, mm_weight: float = 0.05) -> str:
    """The card's words for `landmark_loss` with these settings."""
    return (f"spatial-softmax cross-entropy against a normalised Gaussian at each point (sigma {sigma_mm:g} mm), "
            f"less its entropy, + {mm_weight:g} x L1 distance (mm) between the soft-argmax of the whole map and "
            f"the point")


def classification_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """logits: (B, classes); target: (B,) class indices -> scalar cross-entropy, the target spread
    `label_smoothing` of its mass evenly over all classes (a few training volumes are easy to be
    over-confident on)."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    return F.cross_entropy(logits.float(), target.long(), label_smoothing=float(label_smoothing))
