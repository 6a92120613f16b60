"""Labels and landmark points stay aligned under the generator's spatial transforms: the centroid of
each blob in the generated labels is where `map_points` moved the blob's centre (within a voxel)."""

from __future__ import annotations

import pytest
import torch

from nnmamba.train.synth import LabelMapGenerator, SpatialConfig, SynthConfig
from nnmamba.train.synth.labels import mirrored_code
from nnmamba.train.synth.spatial import (dense_displacement, displacement_at, input_positions, map_points,
                                         random_spatial)

from synth_helpers import BLOBS, blob_map, blob_points, centroid

CODES = [code for code, _ in BLOBS]
TARGETS = sorted(set(CODES) | {mirrored_code(c) for c in CODES})
QUIET = dict(resolution_probability=0.0, bias_std=0.0, gamma_std=0.0, noise_std_mr=0.0, noise_std_ct=0.0)

SPATIAL = {
    "affine": SpatialConfig(rotate_degrees=15, scale=0.2, translate_voxels=3, elastic_std_voxels=0),
    "elastic": SpatialConfig(rotate_degrees=0, scale=0, elastic_std_voxels=3, elastic_grid=4),
    "flip": SpatialConfig(rotate_degrees=0, scale=0, elastic_std_voxels=0, flip_probability=1.0),
    "similarity_large": SpatialConfig(rotate_degrees=40, scale=0.15, isotropic_scale=True, translate_voxels=5,
                                      elastic_std_voxels=0, flip_probability=0.5),
    "combined": SpatialConfig(rotate_degrees=15, scale=0.2, translate_voxels=3, elastic_std_voxels=2,
                              flip_probability=0.5),
}


def _generate(spatial: SpatialConfig, seed: int):
    pairs = [(0, 1)]  # blob 0 (left hippocampus, 17) and blob 1 (right, 53) are a left/right pair
    generator = LabelMapGenerator(blob_map(), TARGETS, (40, 40, 40), SynthConfig(spatial=spatial, **QUIET),
                                  point_pairs=pairs, point_count=len(BLOBS))
    batch = generator(torch.tensor([0, 1]), torch.Generator().manual_seed(seed), points=blob_points())
    return batch


@pytest.mark.parametrize("name", sorted(SPATIAL))
def test_each_blob_centroid_lands_on_its_moved_point(name):
    for seed in (0, 1):
        batch = _generate(SPATIAL[name], seed)
        for b in range(2):
            flipped = bool(batch.flipped[b])
            for n, (code, _) in enumerate(BLOBS):
                shown = mirrored_code(code) if flipped else code
                mask = batch.labels[b] == TARGETS.index(shown) + 1
                assert mask.sum() > 20, f"{name}: blob {code} lost"
                # a mirrored sample names the swapped points by the other side's name
                point_index = {0: 1, 1: 0}.get(n, n) if flipped else n
                error = (centroid(mask) - batch.points[b, point_index]).norm()
                assert error < 1.0, f"{name} seed {seed} sample {b} blob {code}: {float(error):.2f} voxels off"


def test_a_mirror_swaps_left_and_right_labels_and_points():
    batch = _generate(SPATIAL["flip"], 0)
    assert bool(batch.flipped.all())
    left_hippocampus, right_hippocampus = TARGETS.index(17) + 1, TARGETS.index(53) + 1
    # In the input the left hippocampus (17) lies at low i (the patient's right side of the image
    # grid runs to high i = left); after a mirror the label at that blob's new place must be 53.
    original_left = BLOBS[0][1][0]
    mirrored_i = 39 - (original_left - 23.5 + 19.5)   # mirror about the centres: out = c_out - (p - c_in)
    mask = batch.labels[0] == right_hippocampus
    assert abs(float(centroid(mask)[0]) - mirrored_i) < 1.0
    assert (batch.labels[0] == left_hippocampus).sum() > 20
    assert torch.allclose(batch.points[0, 1], centroid(mask), atol=1.0)


def test_map_points_solves_the_sampling_map_exactly():
    config = SpatialConfig(rotate_degrees=30, scale=0.2, translate_voxels=4, elastic_std_voxels=3, elastic_grid=5)
    transform = random_spatial(config, 3, (48, 48, 48), (40, 40, 40), torch.Generator().manual_seed(3))
    p = torch.rand(3, 16, 3, generator=torch.Generator().manual_seed(4)) * 30 + 9
    q = map_points(transform, p)
    # read the dense map back at q by trilinear interpolation of the field on the output grid
    positions = input_positions(transform).permute(0, 4, 1, 2, 3)   # (B, 3, k, j, i)
    grid = (2 * q / 39 - 1).view(3, -1, 1, 1, 3)
    back = torch.nn.functional.grid_sample(positions, grid, mode="bilinear", align_corners=True)
    back = back.view(3, 3, -1).transpose(1, 2)
    inside = ((q >= 0) & (q <= 39)).all(-1)          # beyond the patch the dense map is not defined
    assert inside.sum() > 30
    # linear interpolation between voxels of the dense map differs from the map itself only where a
    # voxel cell straddles a control-grid cell boundary (a kink of the piecewise-trilinear field)
    assert (back[inside] - p[inside]).abs().max() < 0.25
    exact = (torch.einsum("bxy,bny->bnx", transform.matrix, q - transform.out_centre)
             + transform.offset[:, None] + displacement_at(transform, q))
    assert torch.allclose(exact, p, atol=1e-3)


def test_map_points_converges_for_many_random_maps():
    config = SpatialConfig(rotate_degrees=40, scale=0.2, translate_voxels=4, elastic_std_voxels=3, elastic_grid=5,
                           flip_probability=0.5)
    g = torch.Generator().manual_seed(11)
    transform = random_spatial(config, 16, (48, 48, 48), (40, 40, 40), g)
    p = torch.rand(16, 64, 3, generator=g) * 40 + 4
    q = map_points(transform, p)
    exact = (torch.einsum("bxy,bny->bnx", transform.matrix, q - transform.out_centre)
             + transform.offset[:, None] + displacement_at(transform, q))
    assert (exact - p).abs().max() < 1e-3


def test_the_dense_field_and_the_field_at_points_are_one_function():
    config = SpatialConfig(elastic_std_voxels=3, elastic_grid=5)
    transform = random_spatial(config, 2, (32, 32, 32), (24, 28, 20), torch.Generator().manual_seed(5))
    voxels = torch.tensor([[3.0, 7.0, 11.0], [19.0, 0.0, 23.0], [10.0, 27.0, 5.0]]).repeat(2, 1, 1)
    dense = dense_displacement(transform)
    expected = torch.stack([dense[:, int(k), int(j), int(i)] for i, j, k in voxels[0].tolist()], 1)
    assert torch.allclose(displacement_at(transform, voxels), expected, atol=1e-5)
