"""Intensity normalisation per card."""

from __future__ import annotations

import numpy as np
import pytest

from nnmamba.inference.normalization import normalize


def test_mr_zscore_uses_the_non_zero_voxels_only():
    rng = np.random.default_rng(0)
    head = rng.normal(500, 50, size=(10, 10, 10)).astype(np.float32)
    array = np.zeros((1, 20, 10, 10), dtype=np.float32)
    array[0, :10] = head
    out = normalize(array, {"method": "zscore", "mask": "nonzero"})
    assert out[0, :10].mean() == pytest.approx(0.0, abs=1e-4)
    assert out[0, :10].std() == pytest.approx(1.0, abs=1e-3)
    assert np.all(out[0, 10:] == out[0, 10, 0, 0])   # background: one constant below the head


def test_zscore_over_all_voxels_and_per_channel():
    rng = np.random.default_rng(1)
    array = np.stack([rng.normal(3, 2, (6, 6, 6)), rng.normal(-100, 10, (6, 6, 6))]).astype(np.float32)
    out = normalize(array, {"method": "zscore", "mask": "all"})
    np.testing.assert_allclose(out.reshape(2, -1).mean(axis=1), [0, 0], atol=1e-5)
    np.testing.assert_allclose(out.reshape(2, -1).std(axis=1), [1, 1], atol=1e-4)


def test_ct_clips_to_the_window_then_applies_the_dataset_statistics():
    array = np.array([[[[-3000.0, -1000.0, 0.0, 40.0, 2000.0]]]], dtype=np.float32)
    out = normalize(array, {"method": "ct", "clip": [-1000, 1000], "mean": 40.0, "std": 200.0})
    np.testing.assert_allclose(out[0, 0, 0], [-5.2, -5.2, -0.2, 0.0, 4.8], rtol=1e-6)


def test_a_volume_that_is_almost_all_zero_falls_back_to_every_voxel():
    array = np.zeros((1, 10, 10, 10), dtype=np.float32)
    array[0, 0, 0, 0] = 100.0
    out = normalize(array, {"method": "zscore", "mask": "nonzero"})
    assert np.isfinite(out).all() and out.mean() == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("spec", [{"method": "zscore", "mask": "nonzero"}, {"method": "zscore", "mask": "all"},
                                  {"method": "ct", "clip": [-200, 300], "mean": 40.0, "std": 120.0}])
def test_the_torch_normalisation_gives_the_numpy_result(spec):
    import torch

    from nnmamba.inference.normalization import normalize_tensor

    rng = np.random.default_rng(2)
    array = rng.normal(100, 300, size=(2, 8, 9, 10)).astype(np.float32)
    array[:, :3] = 0
    got = normalize_tensor(torch.from_numpy(array), spec).numpy()
    np.testing.assert_allclose(got, normalize(array, spec), rtol=0, atol=1e-6)
