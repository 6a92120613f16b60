"""Between the input's voxel grid and a model's working grid (SimpleITK resampling).

SimpleITK is imported on first use: `working_grid` (all the predictor takes from here; it resamples
with `device_resampling`) runs where SimpleITK is not installed, such as a bare GPU machine.

The working grid has the card's spacing, axes along the card's patient orientation, and covers the
input's whole field of view (voxel edges, so an input already on such a grid maps onto itself).
Results go back onto the input's own grid, so they carry its geometry exactly (no shift, oblique
inputs included).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from nnmamba.volume import Geometry

ORIENTATION_MATRICES = {"LPS": np.eye(3), "RAS": np.diag([-1.0, -1.0, 1.0])}


def working_grid(geometry: Geometry, shape_kji: Sequence[int], spacing: Sequence[float],
                 orientation: str = "LPS") -> tuple:
    """(Geometry, shape [k, j, i]) of the working grid for an input of `geometry` and `shape_kji`."""
    axes = ORIENTATION_MATRICES[orientation]
    spacing = np.asarray(spacing, dtype=np.float64)
    size_ijk = np.asarray(shape_kji[::-1], dtype=np.float64)
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.float64)
    corner_index = corners * size_ijk - 0.5          # voxel edges in continuous index
    corner_lps = geometry.index_to_physical(corner_index)
    corner_w = corner_lps @ axes                        # coordinates along the working axes
    lo, hi = corner_w.min(axis=0), corner_w.max(axis=0)
    extent = hi - lo
    # Round the voxel count, tolerating float noise, then centre the grid on the field of view.
    count = np.array([max(1, math.ceil(e / s - 1e-6)) for e, s in zip(extent, spacing)])
    start_w = lo + (extent - count * spacing) / 2.0 + spacing / 2.0
    origin = axes @ start_w
    return Geometry(origin, spacing, axes.copy()), tuple(int(n) for n in count[::-1])


def _resample(image, geometry: Geometry, shape_kji: Sequence[int], interpolator,
              default: float) -> np.ndarray:
    import SimpleITK as sitk

    resampled = sitk.Resample(
        image, [int(n) for n in shape_kji[::-1]], sitk.Transform(), interpolator,
        tuple(float(v) for v in geometry.origin), tuple(float(v) for v in geometry.spacing),
        tuple(float(v) for v in geometry.direction.reshape(-1)), float(default),
        image.GetPixelID())
    return sitk.GetArrayFromImage(resampled)


def resample_channels(array: np.ndarray, source: Geometry, target: Geometry,
                      target_shape_kji: Sequence[int], linear: bool = True) -> np.ndarray:
    """(C, Z, Y, X) on `source` -> (C, Z', Y', X') on `target`; outside voxels get each channel's min."""
    import SimpleITK as sitk

    from nnmamba.io.volumes import image_from_array

    interpolator = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    out = []
    for channel in array:
        image = image_from_array(channel.astype(np.float32, copy=False), source)
        out.append(_resample(image, target, target_shape_kji, interpolator, float(channel.min())))
    return np.stack(out)


def probabilities_to_labels(probabilities: np.ndarray, source: Geometry, target: Geometry,
                            target_shape_kji: Sequence[int]) -> np.ndarray:
    """(classes, Z, Y, X) probabilities on `source` -> int labels on `target`.

    Each class is resampled linearly and the arg-max kept as it goes, so memory stays at two
    target-sized arrays whatever the number of classes. Outside the working grid: background.
    """
    import SimpleITK as sitk

    from nnmamba.io.volumes import image_from_array

    best = np.zeros(tuple(target_shape_kji), dtype=np.float32)
    labels = np.zeros(tuple(target_shape_kji), dtype=np.uint16)
    for c, channel in enumerate(probabilities):
        image = image_from_array(channel.astype(np.float32, copy=False), source)
        default = 1.0 if c == 0 else 0.0
        resampled = _resample(image, target, target_shape_kji, sitk.sitkLinear, default)
        better = resampled > best if c else np.ones_like(best, dtype=bool)
        best[better] = resampled[better]
        labels[better] = c
    return labels


def labels_to_grid(labels: np.ndarray, source: Geometry, target: Geometry,
                   target_shape_kji: Sequence[int]) -> np.ndarray:
    """Integer labels on `source` -> `target` by nearest neighbour (background outside)."""
    import SimpleITK as sitk

    from nnmamba.io.volumes import image_from_array

    image = image_from_array(labels.astype(np.uint16, copy=False), source)
    return _resample(image, target, target_shape_kji, sitk.sitkNearestNeighbor, 0)
