"""Training must preprocess exactly as inference does: same normalisation, and heatmap targets
whose peaks the inference peak finder recovers."""

import numpy as np
import pytest
import torch

from nnmamba.inference.landmarks import heatmap_peaks
from nnmamba.inference.normalization import normalize
from nnmamba.train.data import gaussian_heatmaps
from nnmamba.train.problems import normalize_tensor


@pytest.mark.parametrize("spec", [{"method": "zscore", "mask": "nonzero"}, {"method": "zscore", "mask": "all"},
                                  {"method": "ct", "clip": [-1000, 1000], "mean": 40.0, "std": 300.0}])
def test_training_normalisation_equals_the_inference_pipelines(spec):
    rng = np.random.default_rng(0)
    image = rng.normal(300, 80, (12, 14, 10)).astype(np.float32)
    image[:4] = 0  # background, as around a brain-extracted template
    expected = normalize(image[None], spec)[0]
    got = normalize_tensor(torch.from_numpy(image), spec).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_zscore_nonzero_falls_back_to_all_voxels_like_inference_when_almost_all_are_zero():
    image = np.zeros((10, 10, 10), np.float32)
    image[0, 0, :5] = 7.0  # 0.5% non-zero
    spec = {"method": "zscore", "mask": "nonzero"}
    np.testing.assert_allclose(normalize_tensor(torch.from_numpy(image), spec).numpy(),
                               normalize(image[None], spec)[0], rtol=1e-5, atol=1e-5)


def test_inference_peak_finder_recovers_subvoxel_points_from_training_heatmaps():
    points = np.array([[10.3, 7.6, 5.2], [3.0, 12.45, 8.9]])  # (i, j, k)
    maps = gaussian_heatmaps((14, 16, 20), points, sigma_voxels=2.0)
    assert maps.shape == (2, 14, 16, 20)
    assert maps.max() <= 1.0 and maps[0].max() > 0.9
    ijk, heights = heatmap_peaks(maps)
    np.testing.assert_allclose(ijk, points, atol=0.1)
