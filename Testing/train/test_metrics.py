import math

import numpy as np
import pytest

from nnmamba import metrics


def cube(shape, low, high):
    a = np.zeros(shape, np.uint8)
    a[low[0]:high[0], low[1]:high[1], low[2]:high[2]] = 1
    return a


def test_dice_of_half_overlapping_cubes_is_one_half():
    a = cube((10, 10, 10), (0, 0, 0), (4, 4, 4))
    b = cube((10, 10, 10), (2, 0, 0), (6, 4, 4))
    assert metrics.dice(a, b, 1) == pytest.approx(0.5)


def test_dice_is_nan_when_neither_map_has_the_label_and_zero_when_one_misses_it():
    empty = np.zeros((3, 3, 3), np.uint8)
    assert math.isnan(metrics.dice(empty, empty, 1))
    assert metrics.dice(cube((3, 3, 3), (0, 0, 0), (1, 1, 1)), empty, 1) == 0.0


def test_hd95_of_a_cube_shifted_by_three_voxels_is_three_voxels_in_mm():
    a = cube((20, 20, 20), (5, 5, 5), (12, 12, 12))
    b = cube((20, 20, 20), (8, 5, 5), (15, 12, 12))  # shifted 3 voxels along k
    assert metrics.hausdorff95(a, b, 1, spacing_kji=(2.0, 1.0, 1.0)) == pytest.approx(6.0, abs=0.01)
    assert metrics.hausdorff95(a, a, 1) == 0.0


def test_hd95_is_infinite_for_a_missed_structure():
    a = cube((8, 8, 8), (1, 1, 1), (3, 3, 3))
    assert metrics.hausdorff95(a, np.zeros_like(a), 1) == math.inf


def test_radial_errors_are_euclidean_distances_and_shapes_are_checked():
    assert metrics.radial_errors([[0, 0, 0], [1, 1, 1]], [[3, 4, 0], [1, 1, 1]]).tolist() == [5.0, 0.0]
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        metrics.radial_errors([[0, 0]], [[0, 0]])


def test_auc_matches_pairwise_counting_with_ties_as_half():
    scores = [0.1, 0.4, 0.35, 0.8, 0.4]
    positives = [False, False, True, True, True]
    # positive/negative pairs: (0.35>0.1, 0.35<0.4), (0.8>both), (0.4>0.1, 0.4=0.4) -> 4.5 of 6
    assert metrics.roc_auc(scores, positives) == pytest.approx(4.5 / 6)
    assert metrics.roc_auc([0.2, 0.3], [True, True]) is None


def test_accuracy_counts_matches_and_refuses_unequal_lists():
    assert metrics.accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75
    with pytest.raises(ValueError):
        metrics.accuracy([0, 1], [0])
