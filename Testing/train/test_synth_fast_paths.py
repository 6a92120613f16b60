"""The generator's fast paths against the readable references they replaced: the sampling grid,
point motion, the resolution simulation, the separable upsampling and the percentile bounds, and a
whole seeded landmark batch drawn both ways (same image, points, labels within interpolation rounding)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nnmamba.inference.normalization import nan_quantiles
from nnmamba.train.recipes import data_recipe
from nnmamba.train.synth import ImageAugmenter, LabelMapGenerator, SpatialConfig, SynthConfig, acquisition, generator
from nnmamba.train.synth import spatial
from nnmamba.train.synth.spatial import (_to_normalised, displacement_at, input_positions, map_points,
                                         map_points_reference, random_spatial, sampling_grid)
from nnmamba.train.synth.upsample import upsample_aligned

from synth_helpers import BLOBS, blob_map, blob_points, centroid

# the shipped landmark recipe's map on its real grids: 4 mm templates (49 x 58 x 49) -> a 64^3 patch
LANDMARK_SPATIAL = SpatialConfig(**{**data_recipe("afids-landmarks", "landmarks").synth.spatial.__dict__,
                                    "translate_voxels": 12.0})
TEMPLATE, PATCH = (49, 58, 49), (64, 64, 64)


def _landmark_maps(count: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    transform = random_spatial(LANDMARK_SPATIAL, count, TEMPLATE, PATCH, g)
    points = torch.rand(count, 32, 3, generator=g) * torch.tensor(TEMPLATE[::-1], dtype=torch.float32)
    return transform, points


def test_the_sampling_grid_is_the_reference_map_in_grid_units():
    transform, _ = _landmark_maps(3, 0)
    reference = _to_normalised(input_positions(transform), TEMPLATE)
    # 1e-6 of the [-1, 1] range is ~3e-5 voxel: float rounding, far below interpolation's own error
    assert (sampling_grid(transform) - reference).abs().max() < 1e-6
    assert transform.grid is transform.grid                      # built once per map, shared by its warps


def test_fast_point_motion_matches_the_reference_newton_solve():
    transform, points = _landmark_maps(32, 1)
    fast, reference = map_points(transform, points), map_points_reference(transform, points)
    assert (fast - reference).abs().max() < 1e-4


def test_the_landmark_recipes_newton_steps_put_points_where_the_map_sends_them():
    transform, points = _landmark_maps(128, 2)
    assert LANDMARK_SPATIAL.point_iterations < 16
    moved = map_points(transform, points, LANDMARK_SPATIAL.point_iterations)
    assert (moved - map_points_reference(transform, points, 16)).abs().max() < 1e-4
    back = (torch.einsum("bxy,bny->bnx", transform.matrix, moved - transform.out_centre)
            + transform.offset[:, None] + displacement_at(transform, moved))
    assert (back - points).abs().max() < 1e-3


@pytest.mark.parametrize("shape, voxel_mm, max_mm", [((2, 1, 64, 64, 64), 4.0, 8.0), ((3, 1, 20, 24, 18), 2.0, 10.0)])
def test_the_folded_resolution_matches_the_reference_blur_and_lattice(shape, voxel_mm, max_mm):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(shape, generator=g) * 200
    sizes = acquisition.random_voxel_sizes(shape[0], voxel_mm, max_mm, max_mm, 1.0, g, "cpu")
    sizes[0, 1] = voxel_mm                                        # one axis at the working size
    fast = acquisition.resolution(image, voxel_mm, sizes, torch.Generator().manual_seed(5), max_mm)
    reference = acquisition.resolution_reference(image, voxel_mm, sizes, torch.Generator().manual_seed(5), max_mm)
    assert (fast - reference).abs().max() < 1e-5 * 200
    unchanged = acquisition.resolution(image[:1], voxel_mm, torch.full((1, 3), voxel_mm), g, max_mm)
    assert torch.equal(unchanged, image[:1])


@pytest.mark.parametrize("quantiles", [(0.005, 0.995), (0.0, 0.5, 1.0)])
def test_nan_quantiles_are_torch_nanquantile_exactly(quantiles):
    g = torch.Generator().manual_seed(0)
    samples = torch.randn(5, 5000, generator=g) * 100
    samples[0] = samples[0].round()                               # ties
    samples[1, ::3] = float("nan")
    samples[2] = float("nan")                                     # no voxel inside: NaN, as nanquantile
    samples[3, 1:] = float("nan")                                 # one voxel inside
    samples[4, :4000] = float("nan")
    expected = torch.nanquantile(samples, torch.tensor(quantiles), dim=1).T
    assert torch.equal(nan_quantiles(samples, quantiles).nan_to_num(-1.0), expected.nan_to_num(-1.0))


def test_the_separable_upsampling_is_trilinear_with_aligned_corners():
    coarse = torch.randn(2, 3, 5, 4, 6, generator=torch.Generator().manual_seed(0))
    expected = F.interpolate(coarse, size=(17, 64, 9), mode="trilinear", align_corners=True)
    upsampled = upsample_aligned(coarse.permute(0, 2, 3, 4, 1), (17, 64, 9)).permute(0, 4, 1, 2, 3)
    assert (upsampled - expected).abs().max() < 1e-5


def _landmark_batch(seed: int):
    """A real-image part and a generated part of a landmark batch (blob classes as the label map, as
    the templates' intensity classes are), with every transform on."""
    config = SynthConfig(spatial=SpatialConfig(**{**LANDMARK_SPATIAL.__dict__, "translate_voxels": 3.0}),
                         resolution_probability=1.0)
    codes = blob_map()
    image = (codes > 0).float() * 150.0 + 20.0
    real = ImageAugmenter(image, torch.full((2,), 20.0), torch.zeros(2, dtype=torch.bool), (40, 40, 40), config,
                          point_pairs=[(0, 1)], point_count=len(BLOBS))
    classes = torch.zeros_like(codes)
    for n, (code, _) in enumerate(BLOBS):
        classes[codes == code] = n + 1
    synthetic = LabelMapGenerator(classes, list(range(1, len(BLOBS) + 1)), (40, 40, 40), config,
                                  point_pairs=[(0, 1)], point_count=len(BLOBS),
                                  tissue_of=lambda c: "background" if c == 0 else "grey", mirrored=lambda c: c,
                                  generation=lambda c: c)
    g = torch.Generator().manual_seed(seed)
    cases = torch.tensor([0, 1])
    return real(cases, g, points=blob_points()), synthetic(cases, g, points=blob_points())


def test_a_seeded_landmark_batch_is_the_reference_paths_batch(monkeypatch):
    fast = _landmark_batch(3)
    monkeypatch.setattr(generator, "warp", spatial.warp_reference)
    monkeypatch.setattr(generator, "map_points", map_points_reference)
    monkeypatch.setattr(acquisition, "resolution", acquisition.resolution_reference)
    reference = _landmark_batch(3)
    assert not fast[0].flipped.any() and fast[1].flipped.all()     # seed 3: both kinds of sample
    for a, b in zip(fast, reference):
        assert torch.equal(a.flipped, b.flipped)
        assert (a.points - b.points).abs().max() < 1e-4
        # measured: equal masks and labels, images within 3e-4 of ~1,000; a nearest-neighbour read may
        # flip where a voxel sits on a tie, which float rounding of the grid can move
        assert (a.inside != b.inside).float().mean() < 1e-4
        assert (a.image - b.image).abs().max() < 1e-5 * a.image.abs().max()
    assert (fast[1].labels != reference[1].labels).float().mean() < 1e-4


def test_points_of_the_fast_path_land_on_their_blobs():
    for part in _landmark_batch(4)[1:]:
        for b in range(2):
            for n in range(len(BLOBS)):
                # the label map is not mirrored (intensity classes have no side), the point names are
                shown = {0: 1, 1: 0}.get(n, n) if bool(part.flipped[b]) else n
                assert (centroid(part.labels[b] == n + 1) - part.points[b, shown]).norm() < 1.0
