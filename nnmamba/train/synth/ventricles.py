"""Lateral ventricles of any adult size: they grow, per sample, into the white matter around them.

The only training map with ventricles (FreeSurfer's cvs_avg35) has a young adult's, about 7 mL a
side; an older patient's are two to four times that (atrophy, normal-pressure hydrocephalus). A
model that has only seen small ventricles draws them small. Growing them by whole voxels into the
neighbouring cerebral white matter spans that range and leaves every other structure where it was:

    >>> labels = torch.full((1, 1, 9, 9, 9), 2); labels[..., 4, 4, 4] = 4
    >>> is_ventricle = torch.zeros(5, dtype=torch.bool); is_ventricle[4] = True
    >>> is_white = torch.zeros(5, dtype=torch.bool); is_white[2] = True
    >>> int((grow_ventricles(labels, is_ventricle, is_white, torch.tensor([1]), 2) == 4).sum())
    27
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LATERAL_VENTRICLES = (4, 43)     # FreeSurfer codes
CEREBRAL_WHITE_MATTER = (2, 41)  # what a growing ventricle may take


def grow_ventricles(labels: torch.Tensor, is_ventricle: torch.Tensor, is_white: torch.Tensor,
                    steps: torch.Tensor, max_steps: int) -> torch.Tensor:
    """labels: (B, 1, k, j, i) label indices; is_ventricle, is_white: (indices,) bool lookups;
    steps: (B,) how many one-voxel (26-neighbour) shells each sample's ventricles grow by (0: none).
    A white-matter voxel next to a ventricle takes that ventricle's index (the larger one where the
    two sides meet)."""
    for step in range(max_steps):
        ventricle = torch.where(is_ventricle[labels], labels.float(), -1.0)
        neighbour = F.max_pool3d(ventricle, 3, stride=1, padding=1)
        take = (neighbour >= 0) & is_white[labels] & (step < steps).view(-1, 1, 1, 1, 1)
        labels = torch.where(take, neighbour.long(), labels)
    return labels


def random_growth_steps(batch: int, probability: float, max_steps: int, generator: torch.Generator,
                        device) -> torch.Tensor:
    """(B,) shells per sample: 0 with probability 1 - `probability`, else uniform in 1..max_steps."""
    grow = torch.rand(batch, generator=generator, device=device) < probability
    count = torch.randint(1, max(1, max_steps) + 1, (batch,), generator=generator, device=device)
    return torch.where(grow, count, torch.zeros_like(count))
