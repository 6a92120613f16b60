"""Landmark coordinates from heatmaps: arg-max, then a parabola through the neighbours per axis."""

from __future__ import annotations

import numpy as np


def heatmap_peaks(heatmaps: np.ndarray) -> tuple:
    """heatmaps: (n, Z, Y, X) -> (ijk (n, 3) continuous index [i, j, k], peak heights (n,)).

    The sub-voxel offset along each axis is the vertex of the parabola through the peak and its two
    neighbours (clamped to half a voxel; 0 at the border or where the heatmap is flat).
    """
    n = heatmaps.shape[0]
    ijk = np.zeros((n, 3), dtype=np.float64)
    heights = np.zeros(n, dtype=np.float64)
    shape = heatmaps.shape[1:]
    for m in range(n):
        h = heatmaps[m]
        zyx = np.unravel_index(int(np.argmax(h)), shape)
        peak = float(h[zyx])
        heights[m] = peak
        refined = []
        for axis in range(3):
            pos = zyx[axis]
            offset = 0.0
            if 0 < pos < shape[axis] - 1:
                before = list(zyx)
                after = list(zyx)
                before[axis] -= 1
                after[axis] += 1
                a, b = float(h[tuple(before)]), float(h[tuple(after)])
                curvature = a - 2.0 * peak + b
                if curvature < 0:
                    offset = float(np.clip(0.5 * (a - b) / curvature, -0.5, 0.5))
            refined.append(pos + offset)
        ijk[m] = refined[::-1]   # (z, y, x) -> (i, j, k)
    return ijk, heights
