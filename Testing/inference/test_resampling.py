"""Input grid <-> working grid: output voxels land on the same physical points (oblique too)."""

from __future__ import annotations

import numpy as np
import pytest

from nnmamba.inference.resampling import (labels_to_grid, probabilities_to_labels, resample_channels,
                                          working_grid)
from nnmamba.volume import Geometry


def rotation(axis, degrees):
    a = np.deg2rad(degrees)
    c, s = np.cos(a), np.sin(a)
    if axis == 0:
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == 1:
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


OBLIQUE = Geometry(origin=np.array([-31.0, 12.5, -40.0]), spacing=np.array([0.9, 1.3, 2.7]),
                   direction=rotation(2, 25) @ rotation(0, -15))
SHAPE = (18, 30, 26)   # k, j, i


def physical_points(geometry: Geometry, shape_kji) -> np.ndarray:
    k, j, i = np.meshgrid(*[np.arange(n) for n in shape_kji], indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3)
    return geometry.index_to_physical(ijk).reshape(tuple(shape_kji) + (3,))


def linear_field(points: np.ndarray) -> np.ndarray:
    return points @ np.array([0.7, -1.1, 0.4]) + 5.0


def test_a_grid_that_already_has_the_working_spacing_and_axes_maps_onto_itself():
    geometry = Geometry.identity(spacing=(2.0, 2.0, 2.0), origin=(-10.0, 4.0, 7.0))
    working, shape = working_grid(geometry, (10, 12, 14), (2.0, 2.0, 2.0))
    np.testing.assert_allclose(working.origin, geometry.origin, atol=1e-9)
    assert shape == (10, 12, 14)
    array = np.random.default_rng(0).normal(size=(1, 10, 12, 14)).astype(np.float32)
    np.testing.assert_allclose(resample_channels(array, geometry, working, shape), array, atol=1e-5)


def test_working_grid_covers_the_field_of_view_of_an_oblique_volume():
    working, shape = working_grid(OBLIQUE, SHAPE, (2.0, 2.0, 2.0))
    np.testing.assert_allclose(working.direction, np.eye(3))
    corners = physical_points(OBLIQUE, SHAPE)[[0, -1]][:, [0, -1]][:, :, [0, -1]].reshape(-1, 3)
    ijk = working.physical_to_index(corners)
    assert ijk.min() >= -0.5 - 1e-6
    assert np.all(ijk.max(axis=0) <= np.array(shape[::-1]) - 0.5 + 1e-6)


@pytest.mark.parametrize("orientation", ["LPS", "RAS"])
def test_each_working_voxel_holds_the_input_value_at_its_own_physical_point(orientation):
    # A linear intensity field is reproduced exactly by linear interpolation, so any shift,
    # flip or axis mix-up in the grid bookkeeping shows up as a difference.
    field = linear_field(physical_points(OBLIQUE, SHAPE)).astype(np.float32)[None]
    working, shape = working_grid(OBLIQUE, SHAPE, (1.7, 2.2, 3.1), orientation)
    resampled = resample_channels(field, OBLIQUE, working, shape)[0]
    expected = linear_field(physical_points(working, shape))
    inside = OBLIQUE.physical_to_index(physical_points(working, shape).reshape(-1, 3))
    inside = np.all((inside >= 0) & (inside <= np.array(SHAPE[::-1]) - 1), axis=1).reshape(shape)
    assert inside.sum() > 1000
    np.testing.assert_allclose(resampled[inside], expected[inside], rtol=1e-4, atol=1e-3)


def test_labels_come_back_onto_the_input_grid_at_the_same_physical_place():
    working, shape = working_grid(OBLIQUE, SHAPE, (2.0, 2.0, 2.0))
    centre = physical_points(OBLIQUE, SHAPE)[9, 15, 13]
    ball = np.linalg.norm(physical_points(working, shape) - centre, axis=-1) < 8.0
    probabilities = np.stack([1.0 - ball, ball]).astype(np.float32)
    labels = probabilities_to_labels(probabilities, working, OBLIQUE, SHAPE)
    nearest = labels_to_grid(ball.astype(np.uint16), working, OBLIQUE, SHAPE)
    assert labels.shape == SHAPE and nearest.shape == SHAPE
    points = physical_points(OBLIQUE, SHAPE)
    distance = np.linalg.norm(points - centre, axis=-1)
    # Inside 8 mm minus a working voxel's half-diagonal: label 1; beyond 8 mm plus it: label 0.
    margin = np.sqrt(3.0)
    for result in (labels, nearest):
        assert np.all(result[distance < 8.0 - margin] == 1)
        assert np.all(result[distance > 8.0 + margin] == 0)
        np.testing.assert_allclose(points[result == 1].mean(axis=0), centre, atol=0.5)
