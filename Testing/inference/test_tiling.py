"""Tile positions, padding and the Gaussian importance map."""

from __future__ import annotations

import numpy as np
import pytest

from nnmamba.inference.tiling import (gaussian_importance, mirror_combinations, padding_for, tile_slices,
                                      tile_starts)


def test_tiles_of_the_worked_example_start_at_0_18_36():
    assert tile_starts(100, 64, 0.5) == [0, 18, 36]


@pytest.mark.parametrize("size,patch,overlap", [(64, 64, 0.5), (65, 64, 0.5), (200, 48, 0.0),
                                                (200, 48, 0.9), (97, 32, 0.25)])
def test_tiles_cover_every_voxel_and_stay_inside(size, patch, overlap):
    starts = tile_starts(size, patch, overlap)
    covered = np.zeros(size, dtype=bool)
    for s in starts:
        assert 0 <= s and s + patch <= size
        covered[s:s + patch] = True
    assert covered.all()
    if len(starts) > 1:
        assert max(np.diff(starts)) <= max(1, patch * (1 - overlap)) + 1


def test_an_axis_shorter_than_the_patch_is_refused_until_padded():
    with pytest.raises(ValueError, match="smaller than the patch"):
        tile_starts(20, 32, 0.5)


def test_padding_reaches_the_patch_and_a_multiple_of_16():
    pads = padding_for((20, 40, 33), (32, 32, 32))
    sizes = [n + b + a for n, (b, a) in zip((20, 40, 33), pads)]
    assert sizes == [32, 48, 48]
    assert pads[0] == (6, 6)


def test_tile_slices_enumerate_the_product_of_axes():
    tiles = tile_slices((64, 100, 64), (64, 64, 64), 0.5)
    assert len(tiles) == 3
    assert tiles[-1][1] == slice(36, 100)


def test_gaussian_importance_peaks_in_the_centre_and_has_no_zeros():
    w = gaussian_importance((16, 16, 32))
    assert w.shape == (16, 16, 32)
    assert w.max() == pytest.approx(1.0)
    assert w.min() > 0
    assert w[8, 8, 16] > w[0, 0, 0]
    np.testing.assert_allclose(w, w[::-1, ::-1, ::-1], rtol=1e-6)


def test_mirror_combinations_are_every_subset_starting_with_none():
    assert mirror_combinations([2, 3]) == [(), (2,), (3,), (2, 3)]
    assert len(mirror_combinations([2, 3, 4])) == 8
