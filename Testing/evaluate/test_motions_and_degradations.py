"""The evaluation's variants move (or keep) the ground truth with the image: labels stay on their
structures, points on their blobs, and degradations change the image only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nnmamba.evaluate import degrade, motions
from nnmamba.train.data import PreparedCase
from nnmamba.volume import Geometry

SHAPE = (32, 32, 32)
SPACING = 2.0


def labelled_case() -> PreparedCase:
    """Blocks whose intensity is 100 x their label, plus a point at the centre of a bright Gaussian blob."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[8:16, 10:20, 6:14] = 1
    labels[16:26, 6:14, 16:26] = 2
    image = 100.0 * labels.astype(np.float32)
    geometry = Geometry(np.array([-31.0, -29.0, -30.0]), np.full(3, SPACING), np.eye(3))
    point_ijk = np.array([22.3, 22.7, 9.2])   # away from the blocks
    k, j, i = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    blob = np.exp(-((i - point_ijk[0]) ** 2 + (j - point_ijk[1]) ** 2 + (k - point_ijk[2]) ** 2) / (2 * 1.5 ** 2))
    return PreparedCase("blocks", image + 1000.0 * blob.astype(np.float32), geometry, "MR", labels,
                        geometry.index_to_physical(point_ijk)[None])


def blob_centroid_lps(case: PreparedCase) -> np.ndarray:
    weights = np.clip(case.image - 300.0, 0, None)    # only the blob reaches above the blocks' 200
    k, j, i = np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij")
    ijk = np.array([(weights * a).sum() / weights.sum() for a in (i, j, k)])
    return case.geometry.index_to_physical(ijk)


def test_a_random_similarity_is_a_rotation_translation_and_isotropic_scale_within_bounds():
    case = labelled_case()
    scales = []
    for seed in range(8):
        transform = motions.random_similarity(case, np.random.default_rng(seed))
        matrix = np.asarray(transform.GetMatrix()).reshape(3, 3)
        scale = np.cbrt(np.linalg.det(matrix))
        np.testing.assert_allclose(matrix @ matrix.T, scale ** 2 * np.eye(3), atol=1e-9)
        assert 1 - motions.MAX_SCALE_CHANGE <= scale <= 1 + motions.MAX_SCALE_CHANGE
        assert np.all(np.abs(transform.GetTranslation()) <= motions.MAX_TRANSLATION_MM)
        scales.append(scale)
    assert np.ptp(scales) > 0.02


def test_the_same_seed_gives_the_same_motion():
    case = labelled_case()
    first = motions.random_similarity(case, np.random.default_rng(3))
    again = motions.random_similarity(case, np.random.default_rng(3))
    assert first.GetParameters() == again.GetParameters()


def test_a_moved_case_keeps_its_labels_on_its_moved_structures():
    case = labelled_case()
    moved = motions.move_case(case, motions.random_similarity(case, np.random.default_rng(1)))
    assert (moved.labels != case.labels).mean() > 0.02          # it did move
    for label in (1, 2):
        inside = moved.labels == label
        assert inside.sum() > 100
        # the image there reads the structure's intensity (100 x label), away from the blob
        assert np.median(moved.image[inside]) == pytest.approx(100.0 * label, abs=1.0)
    agreement = np.round(np.clip(moved.image, 0, 250) / 100.0) == moved.labels
    assert agreement.mean() > 0.97                               # only boundary voxels differ


def test_a_moved_case_keeps_its_landmark_on_its_moved_blob():
    case = labelled_case()
    np.testing.assert_allclose(blob_centroid_lps(case), case.landmarks_lps[0], atol=0.2)
    transform = motions.similarity_transform(motions.field_of_view_centre(case), (12.0, -8.0, 10.0),
                                             (6.0, -4.0, 3.0), 1.08)
    moved = motions.move_case(case, transform)
    assert np.linalg.norm(moved.landmarks_lps[0] - case.landmarks_lps[0]) > 5.0
    np.testing.assert_allclose(blob_centroid_lps(moved), moved.landmarks_lps[0], atol=0.5)


@pytest.mark.parametrize("name", sorted(degrade.DEGRADATIONS))
def test_a_degradation_changes_the_image_and_keeps_the_ground_truth(name):
    case = labelled_case()
    degraded = degrade.DEGRADATIONS[name](case, np.random.default_rng(0))
    assert degraded.image.shape == case.image.shape and degraded.image.dtype == np.float32
    assert np.abs(degraded.image - case.image).mean() > 1.0
    assert degraded.labels is case.labels
    np.testing.assert_array_equal(degraded.landmarks_lps, case.landmarks_lps)


def test_thick_slices_blur_along_the_slice_axis_only():
    blocks = labelled_case()
    case = dataclasses.replace(blocks, image=100.0 * blocks.labels.astype(np.float32))   # no blob
    thick = degrade.thick_slices(case, thickness_mm=6.0, axis=2)

    def edge_strength(image, axis):     # gradient energy: blurring a step lowers it (its total variation stays)
        return (np.diff(image, axis=axis) ** 2).mean()

    # array axes are (k, j, i): index axis 2 (k) is array axis 0
    assert edge_strength(thick.image, 0) < 0.5 * edge_strength(case.image, 0)
    for in_plane in (1, 2):
        assert edge_strength(thick.image, in_plane) > 0.7 * edge_strength(case.image, in_plane)   # (only where blocks end in k)


def test_a_bias_field_is_smooth_positive_and_leaves_the_background():
    case = labelled_case()
    biased = degrade.bias_field(case, np.random.default_rng(0))
    inside = case.image > 50
    ratio = biased.image[inside] / case.image[inside]
    assert ratio.min() > 0.2 and ratio.max() < 5.0 and ratio.std() > 0.02
    np.testing.assert_array_equal(biased.image[case.image == 0], 0.0)


def test_noise_has_the_requested_fraction_of_the_intensity_range():
    case = labelled_case()
    noisy = degrade.gaussian_noise(case, np.random.default_rng(0), fraction=0.1)
    low, high = np.percentile(case.image, [0.5, 99.5])
    assert np.std(noisy.image - case.image) == pytest.approx(0.1 * (high - low), rel=0.05)
    with pytest.raises(ValueError, match="fraction"):
        degrade.gaussian_noise(case, np.random.default_rng(0), fraction=-0.1)
