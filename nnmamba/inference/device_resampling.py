"""Resampling between voxel grids with torch, on whatever device the tensors live (GPU post-processing).

The same maps as `nnmamba.inference.resampling` (SimpleITK), reproduced exactly:
- geometry: an output voxel (i, j, k) of `target` sits at the physical point
  origin + direction @ diag(spacing) @ (i, j, k); its continuous index in `source` is the inverse map
  of that point (computed in float64, as ITK does);
- inside test: ITK's `IsInsideBuffer`: -0.5 <= index < size - 0.5 on every axis; outside voxels get
  the default value;
- linear interpolation: ITK clamps the neighbours at the border (edge replication), which is
  `grid_sample(mode="bilinear", padding_mode="border", align_corners=True)` (align_corners=True makes
  normalised -1 / +1 the centres of the first / last voxels, i.e. index 0 / size - 1).
The interpolation weights are float32 here and float64 in ITK, so values agree to ~1e-7 relative and an
arg-max can differ only where two classes are that close (a tie; ties go to the lower class in both).

The output grid is processed in slabs of k-slices so memory stays bounded for a 512 x 512 x 300 grid.

Example:
    >>> labels = resample_argmax(probabilities.cuda(), working, volume.geometry, volume.shape_kji)
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from nnmamba.volume import Geometry

SLAB_VOXELS = 1 << 22   # output voxels per slab: a (C, 4M) float32 slab of 12 classes is 200 MB


def target_to_source_index(source: Geometry, target: Geometry) -> np.ndarray:
    """(3, 4) float64 affine: target index (i, j, k, 1) -> continuous index (i, j, k) in `source`."""
    to_source = np.linalg.inv(source.direction @ np.diag(source.spacing))
    affine = np.zeros((3, 4))
    affine[:, :3] = to_source @ target.direction @ np.diag(target.spacing)
    affine[:, 3] = to_source @ (target.origin - source.origin)
    return affine


def _slabs(shape_kji: Sequence[int]) -> Iterator[tuple]:
    k, j, i = (int(n) for n in shape_kji)
    step = max(1, SLAB_VOXELS // max(1, j * i))
    for start in range(0, k, step):
        yield start, min(k, start + step)


def _source_index(affine: torch.Tensor, k_range: tuple, shape_kji: Sequence[int]) -> torch.Tensor:
    """Continuous source index (i, j, k) of every target voxel of slices k_range: (K', J, I, 3) float64."""
    device = affine.device
    k = torch.arange(*k_range, device=device, dtype=torch.float64)
    j = torch.arange(int(shape_kji[1]), device=device, dtype=torch.float64)
    i = torch.arange(int(shape_kji[2]), device=device, dtype=torch.float64)
    kk, jj, ii = torch.meshgrid(k, j, i, indexing="ij")
    ijk = torch.stack([ii, jj, kk], dim=-1)
    return ijk @ affine[:, :3].T + affine[:, 3]


def _grid_and_inside(index: torch.Tensor, source_shape_kji: Sequence[int]) -> tuple:
    """index: (K', J, I, 3) -> (normalised float32 grid (1, K', J, I, 3), inside mask (K', J, I))."""
    size = torch.tensor([float(n) for n in reversed(source_shape_kji)], dtype=torch.float64,
                        device=index.device)                                       # (i, j, k) sizes
    inside = ((index >= -0.5) & (index < size - 0.5)).all(dim=-1)
    grid = 2.0 * index / torch.clamp(size - 1.0, min=1.0) - 1.0
    return grid.to(torch.float32)[None], inside


def _sampled_slabs(channels: torch.Tensor, source: Geometry, target: Geometry,
                   target_shape_kji: Sequence[int], mode: str = "bilinear") -> Iterator[tuple]:
    """Slab by slab of `target`: (k0, k1, sampled (C, k1 - k0, Y', X') float32, inside mask); `mode`
    "bilinear" (linear) or "nearest" (label maps)."""
    affine = torch.from_numpy(target_to_source_index(source, target)).to(channels.device)
    volume = channels.float()[None]
    for k0, k1 in _slabs(target_shape_kji):
        grid, inside = _grid_and_inside(_source_index(affine, (k0, k1), target_shape_kji), channels.shape[1:])
        sampled = F.grid_sample(volume, grid, mode=mode, padding_mode="border", align_corners=True)[0]
        yield k0, k1, sampled, inside


def resample_linear(channels: torch.Tensor, source: Geometry, target: Geometry,
                    target_shape_kji: Sequence[int], default: torch.Tensor) -> torch.Tensor:
    """channels: (C, Z, Y, X) on `source` -> (C, Z', Y', X') float32 on `target`, same device.

    `default`: (C,) value of each channel outside the source grid.
    """
    return resample_linear_with_inside(channels, source, target, target_shape_kji, default)[0]


def resample_nearest(channels: torch.Tensor, source: Geometry, target: Geometry,
                     target_shape_kji: Sequence[int], default: torch.Tensor) -> torch.Tensor:
    """`resample_linear` with nearest-neighbour interpolation (label maps; values exact up to 2^24)."""
    return resample_linear_with_inside(channels, source, target, target_shape_kji, default, mode="nearest")[0]


def resample_linear_with_inside(channels: torch.Tensor, source: Geometry, target: Geometry,
                                target_shape_kji: Sequence[int], default: torch.Tensor,
                                mode: str = "bilinear") -> tuple:
    """`resample_linear`, plus the (Z', Y', X') bool mask of target voxels inside the source grid
    (the scan's field of view on the working grid, which the percentile normalisation needs)."""
    default = default.to(channels.device, torch.float32).view(-1, 1, 1, 1)
    shape = tuple(int(n) for n in target_shape_kji)
    out = torch.empty((channels.shape[0],) + shape, dtype=torch.float32, device=channels.device)
    inside_all = torch.empty(shape, dtype=torch.bool, device=channels.device)
    for k0, k1, sampled, inside in _sampled_slabs(channels, source, target, target_shape_kji, mode):
        out[:, k0:k1] = torch.where(inside, sampled, default)
        inside_all[k0:k1] = inside
    return out, inside_all


def resample_argmax(probabilities: torch.Tensor, source: Geometry, target: Geometry,
                    target_shape_kji: Sequence[int]) -> torch.Tensor:
    """probabilities: (classes, Z, Y, X) on `source` -> (Z', Y', X') int64 arg-max labels on `target`.

    Every class is resampled linearly; outside the source grid the background (class 0) wins, as in
    `resampling.probabilities_to_labels`; ties go to the lower class (torch.argmax keeps the first).
    """
    labels = torch.zeros(tuple(int(n) for n in target_shape_kji), dtype=torch.int64,
                         device=probabilities.device)
    for k0, k1, sampled, inside in _sampled_slabs(probabilities, source, target, target_shape_kji):
        labels[k0:k1] = torch.where(inside, sampled.argmax(dim=0), 0)
    return labels
