"""Sub-voxel heatmap peaks."""

from __future__ import annotations

import numpy as np
import pytest

from nnmamba.inference.landmarks import heatmap_peaks


def gaussian(shape_kji, centre_ijk, sigma=1.5):
    k, j, i = np.meshgrid(*[np.arange(n, dtype=float) for n in shape_kji], indexing="ij")
    d2 = (i - centre_ijk[0]) ** 2 + (j - centre_ijk[1]) ** 2 + (k - centre_ijk[2]) ** 2
    return np.exp(-d2 / (2 * sigma ** 2))


@pytest.mark.parametrize("centre", [(10.3, 7.8, 5.5), (4.0, 4.0, 4.0), (12.45, 3.1, 8.9)])
def test_peak_of_a_gaussian_heatmap_is_found_within_a_tenth_of_a_voxel(centre):
    maps = gaussian((12, 14, 16), centre)[None]
    ijk, heights = heatmap_peaks(maps)
    np.testing.assert_allclose(ijk[0], centre, atol=0.1)
    assert 0.8 < heights[0] <= 1.0


def test_each_landmark_has_its_own_peak_and_height():
    maps = np.stack([gaussian((10, 10, 10), (2, 3, 4)) * 0.5, gaussian((10, 10, 10), (7, 6, 5))])
    ijk, heights = heatmap_peaks(maps)
    np.testing.assert_allclose(ijk, [[2, 3, 4], [7, 6, 5]], atol=1e-6)
    np.testing.assert_allclose(heights, [0.5, 1.0])


def test_a_peak_on_the_border_or_a_flat_heatmap_stays_on_the_voxel():
    flat = np.zeros((1, 5, 5, 5))
    ijk, heights = heatmap_peaks(flat)
    np.testing.assert_allclose(ijk[0], [0, 0, 0])
    assert heights[0] == 0
    border = gaussian((6, 6, 6), (0, 2.2, 5))[None]
    ijk, _ = heatmap_peaks(border)
    assert ijk[0][0] == 0 and ijk[0][2] == 5


def test_peaks_found_with_torch_equal_the_numpy_peaks_at_the_border_and_inside():
    import torch

    from nnmamba.inference.landmarks import heatmap_peaks_torch

    rng = np.random.default_rng(3)
    shape = (9, 11, 13)
    maps = np.stack([gaussian(shape, (12.0, 5.2, 3.7)),            # on the i border
                     gaussian(shape, (6.3, 0.0, 8.0)) * 0.7,        # on the j border
                     rng.random(shape),                            # noise: any neighbours
                     gaussian(shape, (4.4, 6.6, 2.2), sigma=0.8)]).astype(np.float32)
    want_ijk, want_heights = heatmap_peaks(maps)
    got_ijk, got_heights = heatmap_peaks_torch(torch.from_numpy(maps))
    np.testing.assert_allclose(got_ijk, want_ijk, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got_heights, want_heights, rtol=0, atol=1e-9)
