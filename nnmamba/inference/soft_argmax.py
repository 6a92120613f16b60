"""Landmark positions from score maps: the expected position under each map's spatial softmax.

Training and inference read a landmark the same way. Training (`soft_argmax`) takes the expectation
over the whole map, so probability anywhere else in the patch costs millimetres and is pushed away.
Inference (`local_soft_argmax`) takes it inside a window around the arg-max, so a far blob that still
holds some probability cannot pull the point off the anatomy; the share of the probability inside the
window is the detection's confidence.

Example (scores: (landmarks, Z, Y, X) on a 4 mm grid):
    >>> ijk, mass = local_soft_argmax(scores, radius_voxels=(3, 3, 3))   # doctest: +SKIP
    >>> ijk.shape, mass.shape                                           # doctest: +SKIP
    ((32, 3), (32,))
"""

from __future__ import annotations

from typing import Sequence

import torch


def _expected_ijk(probabilities: torch.Tensor) -> torch.Tensor:
    """probabilities: (..., Z, Y, X), each map summing to 1 -> expected (i, j, k) index (..., 3).

    Reads each axis from the map's marginal along it (no coordinate grids of the map's size)."""
    z, y, x = probabilities.shape[-3:]
    device, dtype = probabilities.device, probabilities.dtype
    marginal_k = probabilities.sum(dim=(-2, -1))
    marginal_j = probabilities.sum(dim=(-3, -1))
    marginal_i = probabilities.sum(dim=(-3, -2))
    i = (marginal_i * torch.arange(x, device=device, dtype=dtype)).sum(-1)
    j = (marginal_j * torch.arange(y, device=device, dtype=dtype)).sum(-1)
    k = (marginal_k * torch.arange(z, device=device, dtype=dtype)).sum(-1)
    return torch.stack([i, j, k], dim=-1)


def spatial_softmax(scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """scores: (..., Z, Y, X) -> probabilities of the same shape, each map summing to 1 (float32)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    flat = (scores.float() / temperature).flatten(-3)
    return flat.softmax(dim=-1).reshape(scores.shape)


def soft_argmax(scores: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """scores: (..., Z, Y, X) -> expected (i, j, k) voxel index (..., 3) under the whole map's
    spatial softmax (differentiable; what the training loss scores in millimetres)."""
    return _expected_ijk(spatial_softmax(scores, temperature))


def local_soft_argmax(scores: torch.Tensor, radius_voxels: Sequence[int], temperature: float = 1.0) -> tuple:
    """scores: (n, Z, Y, X) -> (ijk (n, 3) float64 numpy, mass (n,) float64 numpy).

    ijk: the expected (i, j, k) index under the spatial softmax restricted to the box of
    `radius_voxels` (i, j, k) voxels either side of each map's arg-max (clipped at the border);
    mass: the share of the whole map's softmax inside that box (1: all of it near the peak; near
    1 / number of boxes that fit: no preferred place), the detection's confidence.
    """
    if scores.dim() != 4:
        raise ValueError(f"scores must be (n, Z, Y, X), got shape {tuple(scores.shape)}")
    radius = [int(r) for r in radius_voxels]
    if len(radius) != 3 or min(radius) < 0:
        raise ValueError(f"radius_voxels must be three integers >= 0 (i, j, k), got {list(radius_voxels)}")
    n, z, y, x = scores.shape
    probabilities = spatial_softmax(scores, temperature)
    best = probabilities.reshape(n, -1).argmax(dim=1)
    peak = (best // (y * x), (best // x) % y, best % x)            # (k, j, i), each (n,)
    windows = []
    for size, centre, r in zip((z, y, x), peak, radius[::-1]):
        axis = torch.arange(size, device=scores.device)
        windows.append(((axis[None, :] - centre[:, None]).abs() <= r).to(probabilities.dtype))  # (n, size)
    inside = probabilities * windows[0][:, :, None, None] * windows[1][:, None, :, None] * windows[2][:, None, None, :]
    mass = inside.sum(dim=(1, 2, 3))
    ijk = _expected_ijk(inside / mass.clamp_min(1e-30)[:, None, None, None])
    return ijk.double().cpu().numpy(), mass.double().cpu().numpy()
