"""Degraded acquisitions of a prepared case: thick slices, a bias field, noise.

Each changes the image only, on the case's own grid, so the ground truth (labels, landmarks) stays
exactly where it was. Intensity changes act on the image above its background value (the lowest
intensity: air, 0 in MR, -1024 in CT) so that the air stays air.

    rng = np.random.default_rng(0)
    for degrade in (thick_slices, bias_field, gaussian_noise):
        degraded = degrade(case, rng)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import SimpleITK as sitk

from nnmamba.io.volumes import image_from_array
from nnmamba.train.data import PreparedCase

SLICE_THICKNESS_MM = 5.0
SLICE_AXIS = 2                # k (superior-inferior on our LPS grids): axial slices, as most scans are acquired
BIAS_LOG_SD = 0.3             # log-field standard deviation on the coarse grid: a field of about x0.6 .. x1.6
BIAS_GRID_POINTS = 4          # coarse control points per axis: a field smooth across the head
NOISE_FRACTION = 0.05         # noise sd as a fraction of the robust intensity range (0.5 .. 99.5 percentile)


def _with_image(case: PreparedCase, image: np.ndarray) -> PreparedCase:
    return dataclasses.replace(case, image=image.astype(np.float32))


def thick_slices(case: PreparedCase, rng: np.random.Generator = None, thickness_mm: float = SLICE_THICKNESS_MM,
                 axis: int = SLICE_AXIS) -> PreparedCase:
    """Acquired as `thickness_mm` slices along index axis `axis` (0 = i, 1 = j, 2 = k) and resampled back.

    The slice profile is a Gaussian of that FWHM along the axis; the slices are then sampled every
    `thickness_mm` and interpolated (linearly) back onto the case's grid. `rng` is unused (the
    degradation is deterministic) but accepted so every degradation has one signature.
    """
    if thickness_mm <= 0:
        raise ValueError(f"thickness_mm must be > 0, got {thickness_mm}")
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (i, j, k), got {axis}")
    image = image_from_array(case.image.astype(np.float32), case.geometry)
    background = float(case.image.min())
    sigma = thickness_mm / (2.0 * np.sqrt(2.0 * np.log(2.0)))
    profiled = sitk.RecursiveGaussian(image, sigma=sigma, direction=axis)
    spacing = list(image.GetSpacing())
    size = list(image.GetSize())
    extent = spacing[axis] * (size[axis] - 1)
    spacing[axis] = thickness_mm
    size[axis] = int(np.floor(extent / thickness_mm)) + 1
    thick = sitk.Resample(profiled, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), spacing,
                          image.GetDirection(), background, sitk.sitkFloat32)
    back = sitk.Resample(thick, image, sitk.Transform(), sitk.sitkLinear, background, sitk.sitkFloat32)
    return _with_image(case, sitk.GetArrayFromImage(back))


def smooth_log_field(shape_kji: tuple, rng: np.random.Generator, log_sd: float = BIAS_LOG_SD,
                     points: int = BIAS_GRID_POINTS) -> np.ndarray:
    """A smooth random log-field [k, j, i]: N(0, log_sd) on a coarse `points`^3 grid, cubic B-spline upsampled."""
    coarse = sitk.GetImageFromArray(rng.normal(0.0, log_sd, (points,) * 3).astype(np.float32))
    coarse.SetSpacing([(n - 1) / (points - 1) for n in shape_kji[::-1]])   # corners on the fine grid's corners
    fine = sitk.Image([int(n) for n in shape_kji[::-1]], sitk.sitkFloat32)
    return sitk.GetArrayFromImage(sitk.Resample(coarse, fine, sitk.Transform(), sitk.sitkBSpline, 0.0))


def bias_field(case: PreparedCase, rng: np.random.Generator, log_sd: float = BIAS_LOG_SD) -> PreparedCase:
    """A smooth multiplicative bias field exp(field) on the intensities above the background."""
    background = float(case.image.min())
    field = np.exp(smooth_log_field(case.image.shape, rng, log_sd))
    return _with_image(case, background + (case.image - background) * field)


def gaussian_noise(case: PreparedCase, rng: np.random.Generator, fraction: float = NOISE_FRACTION) -> PreparedCase:
    """Additive Gaussian noise of sd `fraction` x the robust intensity range (0.5 .. 99.5 percentile)."""
    if fraction < 0:
        raise ValueError(f"fraction must be >= 0, got {fraction}")
    low, high = np.percentile(case.image, [0.5, 99.5])
    noise = rng.normal(0.0, fraction * float(high - low), case.image.shape)
    return _with_image(case, case.image + noise)


DEGRADATIONS = {"thick_slices": thick_slices, "bias_field": bias_field, "noise": gaussian_noise}


def describe_degradations() -> str:
    return (f"thick slices ({SLICE_THICKNESS_MM:g} mm along k, Gaussian slice profile, linear back), "
            f"bias field (exp of N(0, {BIAS_LOG_SD:g}) on a {BIAS_GRID_POINTS}^3 grid, B-spline), "
            f"Gaussian noise (sd {NOISE_FRACTION:g} x the 0.5-99.5 percentile range), one at a time")
