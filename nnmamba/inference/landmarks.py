"""Landmark coordinates from heatmaps: arg-max, then a parabola through the neighbours per axis.

`heatmap_peaks` takes numpy arrays; `heatmap_peaks_torch` finds the same peaks where the heatmaps
live (the GPU) and brings back only the peak and its six neighbours per landmark.
"""

from __future__ import annotations

import numpy as np


def heatmap_peaks(heatmaps: np.ndarray) -> tuple:
    """heatmaps: (n, Z, Y, X) -> (ijk (n, 3) continuous index [i, j, k], peak heights (n,)).

    The sub-voxel offset along each axis is the vertex of the parabola through the peak and its two
    neighbours (clamped to half a voxel; 0 at the border or where the heatmap is flat).
    """
    n = heatmaps.shape[0]
    shape = heatmaps.shape[1:]
    zyx = np.array([np.unravel_index(int(np.argmax(heatmaps[m])), shape) for m in range(n)]).reshape(n, 3)
    samples = np.zeros((n, 3, 3), dtype=np.float64)       # (landmark, axis, before / peak / after)
    for m in range(n):
        for axis in range(3):
            for s, step in enumerate((-1, 0, 1)):
                at = list(zyx[m])
                at[axis] = min(max(at[axis] + step, 0), shape[axis] - 1)
                samples[m, axis, s] = float(heatmaps[m][tuple(at)])
    return _refine(zyx, samples, shape)


def heatmap_peaks_torch(heatmaps) -> tuple:
    """heatmaps: (n, Z, Y, X) torch tensor on any device -> what `heatmap_peaks` returns (numpy)."""
    import torch

    n = heatmaps.shape[0]
    shape = tuple(heatmaps.shape[1:])
    flat = heatmaps.reshape(n, -1).float()
    best = flat.argmax(dim=1)                                                    # (n,)
    strides = torch.tensor([shape[1] * shape[2], shape[2], 1], device=heatmaps.device)
    zyx = torch.stack([best // strides[0], (best // strides[1]) % shape[1], best % shape[2]], dim=1)
    steps = torch.tensor([-1, 0, 1], device=heatmaps.device)
    limits = torch.tensor(shape, device=heatmaps.device) - 1
    offsets = torch.eye(3, dtype=torch.long, device=heatmaps.device)[:, None, :] * steps[None, :, None]
    at = torch.minimum(torch.clamp(zyx[:, None, None, :] + offsets[None], min=0), limits)  # (n, 3, 3, 3)
    index = (at * strides).sum(dim=-1).reshape(n, 9)
    samples = torch.gather(flat, 1, index).reshape(n, 3, 3)
    return _refine(zyx.cpu().numpy(), samples.double().cpu().numpy(), shape)


def _refine(zyx: np.ndarray, samples: np.ndarray, shape) -> tuple:
    """zyx (n, 3) peak voxels, samples (n, 3 axes, 3) values before / at / after -> (ijk, heights)."""
    n = zyx.shape[0]
    ijk = np.zeros((n, 3), dtype=np.float64)
    heights = samples[:, 0, 1].astype(np.float64)
    for m in range(n):
        refined = []
        for axis in range(3):
            pos = int(zyx[m, axis])
            offset = 0.0
            if 0 < pos < shape[axis] - 1:
                a, peak, b = (float(v) for v in samples[m, axis])
                curvature = a - 2.0 * peak + b
                if curvature < 0:
                    offset = float(np.clip(0.5 * (a - b) / curvature, -0.5, 0.5))
            refined.append(pos + offset)
        ijk[m] = refined[::-1]   # (z, y, x) -> (i, j, k)
    return ijk, heights
