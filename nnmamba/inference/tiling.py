"""Pure geometry of sliding-window inference: tile positions, padding, Gaussian importance.

Worked example: an axis of 100 voxels, patch 64, overlap 0.5 -> step 32 -> ceil((100-64)/32)+1 = 3
tiles starting at 0, 18, 36 (spread evenly so the last one ends exactly at 100).
"""

from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np


def tile_starts(size: int, patch: int, overlap: float) -> list:
    """Start indices along one axis; tiles of `patch` cover [0, size) (needs size >= patch)."""
    if size < patch:
        raise ValueError(f"axis of {size} voxels is smaller than the patch ({patch}); pad it first")
    if size == patch:
        return [0]
    step = max(1.0, patch * (1.0 - overlap))
    count = math.ceil((size - patch) / step) + 1
    return sorted({int(round(x)) for x in np.linspace(0, size - patch, count)})


def tile_slices(shape: Sequence[int], patch: Sequence[int], overlap: float) -> list:
    """All tiles of a volume of `shape` as tuples of slices (one per axis)."""
    axes = [[slice(s, s + p) for s in tile_starts(n, p, overlap)] for n, p in zip(shape, patch)]
    return list(itertools.product(*axes))


def padding_for(shape: Sequence[int], patch: Sequence[int], multiple: int = 16) -> list:
    """(before, after) per axis so each axis is >= the patch and a multiple of `multiple`."""
    pads = []
    for n, p in zip(shape, patch):
        target = max(n, p)
        target = int(math.ceil(target / multiple) * multiple)
        extra = target - n
        pads.append((extra // 2, extra - extra // 2))
    return pads


def gaussian_importance(patch: Sequence[int], sigma_scale: float = 1.0 / 8) -> np.ndarray:
    """Gaussian weights over a patch (peak 1 at the centre; no zeros so every voxel counts)."""
    grids = np.meshgrid(*[np.arange(p, dtype=np.float64) for p in patch], indexing="ij")
    exponent = np.zeros(tuple(patch), dtype=np.float64)
    for grid, p in zip(grids, patch):
        sigma = max(p * sigma_scale, 1e-3)
        exponent += ((grid - (p - 1) / 2.0) / sigma) ** 2
    weights = np.exp(-0.5 * exponent)
    weights /= weights.max()
    floor = weights[weights > 0].min()
    weights[weights < floor] = floor
    return weights.astype(np.float32)


def mirror_combinations(axes: Sequence[int]) -> list:
    """Every subset of `axes` (the empty one first): the flips of mirror test-time augmentation."""
    axes = list(axes)
    return [tuple(c) for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]
