"""Post-processing with torch (on the GPU in use) reproduces the SimpleITK path exactly: same
physical places, same inside/outside edge, same values to float32 rounding, the same labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nnmamba.inference import device_resampling
from nnmamba.inference.device_resampling import resample_argmax, resample_linear
from nnmamba.inference.resampling import probabilities_to_labels, resample_channels, working_grid
from nnmamba.volume import Geometry

from test_resampling import OBLIQUE, SHAPE


def random_probabilities(shape_kji, classes=4, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth-ish fields so the interpolation matters and near-ties are rare
    logits = rng.normal(size=(classes,) + tuple(shape_kji)).astype(np.float32) * 3
    e = np.exp(logits - logits.max(axis=0))
    return (e / e.sum(axis=0)).astype(np.float32)


@pytest.mark.parametrize("grid", ["oblique input", "axis-aligned input"])
def test_scores_resampled_back_to_the_input_grid_give_the_labels_of_the_simpleitk_path(grid, monkeypatch):
    monkeypatch.setattr(device_resampling, "SLAB_VOXELS", 2000)   # several slabs, a partial last one
    target = OBLIQUE if grid == "oblique input" else Geometry.identity((0.9, 1.3, 2.7), (-31.0, 12.5, -40.0))
    working, shape = working_grid(target, SHAPE, (2.0, 2.0, 2.0))
    probabilities = random_probabilities(shape)
    expected = probabilities_to_labels(probabilities, working, target, SHAPE)
    got = resample_argmax(torch.from_numpy(probabilities), working, target, SHAPE).numpy()
    assert got.shape == expected.shape == SHAPE
    differ = got != expected
    # a label may only differ where the two best classes are a float32 rounding apart
    if differ.any():
        values = resample_channels(probabilities, working, target, SHAPE)
        top2 = np.sort(values, axis=0)[-2:]
        assert np.all(top2[1][differ] - top2[0][differ] < 1e-5)
    assert differ.mean() < 1e-3
    assert (expected == 0).any() and (expected > 0).any()


def test_linear_resampling_equals_simpleitk_including_the_outside_default_on_an_oblique_grid():
    rng = np.random.default_rng(1)
    channels = rng.normal(size=(2,) + SHAPE).astype(np.float32)
    working, shape = working_grid(OBLIQUE, SHAPE, (1.7, 2.1, 2.3))
    expected = resample_channels(channels, OBLIQUE, working, shape, linear=True)
    default = torch.from_numpy(channels.reshape(2, -1).min(axis=1))
    got = resample_linear(torch.from_numpy(channels), OBLIQUE, working, shape, default).numpy()
    outside = expected == channels.reshape(2, -1).min(axis=1)[:, None, None, None]
    assert outside.any() and (~outside).any()    # the working grid's corners lie outside the input
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5)
