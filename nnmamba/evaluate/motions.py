"""Random similarity motions of a prepared case: the head placed, turned and sized differently.

A motion is a SimpleITK similarity transform T (rotation, translation, isotropic scale about the
centre of the field of view). The moved case is resampled on the case's own grid as
image'(x) = image(T(x)) — linear for the image, nearest neighbour for the labels — so a structure
that sat at p now sits at T^-1(p): landmarks move through the exact inverse.

    rng = np.random.default_rng(0)
    moved = move_case(case, random_similarity(case, rng))
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from nnmamba.io.volumes import image_from_array
from nnmamba.train.data import PreparedCase

MAX_ROTATION_DEGREES = 15.0
MAX_TRANSLATION_MM = 10.0
MAX_SCALE_CHANGE = 0.10     # isotropic scale in [0.9, 1.1]: head sizes differ about that much


def field_of_view_centre(case: PreparedCase) -> np.ndarray:
    """The physical (LPS) centre of the case's grid."""
    size_ijk = np.array(case.shape_kji[::-1])
    return case.geometry.index_to_physical((size_ijk - 1) / 2.0)


def similarity_transform(centre, angles_degrees, translation_mm, scale: float) -> sitk.AffineTransform:
    """x -> scale * R (x - centre) + centre + translation, R = rotations about i, then j, then k."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    euler = sitk.Euler3DTransform()
    euler.SetRotation(*np.radians(np.asarray(angles_degrees, dtype=float)).tolist())
    matrix = scale * np.asarray(euler.GetMatrix()).reshape(3, 3)
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(matrix.ravel().tolist())
    transform.SetCenter([float(c) for c in centre])
    transform.SetTranslation([float(t) for t in translation_mm])
    return transform


def random_similarity(case: PreparedCase, rng: np.random.Generator) -> sitk.AffineTransform:
    """A random similarity motion about the centre of the case's field of view (seeded by `rng`)."""
    angles = rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES, 3)
    translation = rng.uniform(-MAX_TRANSLATION_MM, MAX_TRANSLATION_MM, 3)
    scale = float(rng.uniform(1.0 - MAX_SCALE_CHANGE, 1.0 + MAX_SCALE_CHANGE))
    return similarity_transform(field_of_view_centre(case), angles, translation, scale)


def _resample_on_own_grid(array: np.ndarray, case: PreparedCase, transform: sitk.Transform,
                          interpolator, default: float) -> np.ndarray:
    """array [k, j, i] on the case's grid -> array(T(x)) on the same grid, same dtype."""
    image = image_from_array(array, case.geometry)
    return sitk.GetArrayFromImage(sitk.Resample(image, image, transform, interpolator, default)).astype(array.dtype)


def move_points(points_lps: np.ndarray, transform: sitk.Transform) -> np.ndarray:
    """Where points (n, 3) of the original sit in the moved case: T^-1(p)."""
    inverse = transform.GetInverse()
    return np.array([inverse.TransformPoint([float(v) for v in p]) for p in points_lps])


def move_case(case: PreparedCase, transform: sitk.Transform) -> PreparedCase:
    """The case after the head moved by T^-1: image, labels and landmarks moved together."""
    image = _resample_on_own_grid(case.image.astype(np.float32), case, transform, sitk.sitkLinear,
                                  float(case.image.min()))
    labels = None if case.labels is None else _resample_on_own_grid(case.labels, case, transform,
                                                                     sitk.sitkNearestNeighbor, 0)
    landmarks = None if case.landmarks_lps is None else move_points(case.landmarks_lps, transform)
    return PreparedCase(case.name, image, case.geometry, case.modality, labels, landmarks,
                        weighting=case.weighting)
