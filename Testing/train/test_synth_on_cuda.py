"""On a CUDA device the generator stays there, is seeded by a CUDA generator, keeps labels and
points aligned, and agrees with the CPU maths for the same sampling map."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nnmamba.train.synth import LabelMapGenerator, SpatialConfig, SynthConfig
from nnmamba.train.synth.labels import mirrored_code
from nnmamba.train.synth.spatial import map_points, random_spatial, warp

from synth_helpers import BLOBS, blob_map, blob_points, centroid

pytestmark = pytest.mark.gpu
CODES = sorted({c for c, _ in BLOBS} | {mirrored_code(c) for c, _ in BLOBS})


def test_a_cuda_batch_is_on_the_device_seeded_and_aligned():
    device = torch.device("cuda")
    config = SynthConfig(spatial=SpatialConfig(rotate_degrees=20, translate_voxels=3, elastic_std_voxels=2,
                                               flip_probability=0.5), contrast_probabilities=(1, 1, 1, 1))
    generator = LabelMapGenerator(blob_map().to(device), CODES, (40, 40, 40), config, point_pairs=[(0, 1)],
                                  point_count=len(BLOBS))
    cases = torch.tensor([0, 1], device=device)
    a = generator(cases, torch.Generator(device=device).manual_seed(3), points=blob_points().to(device))
    b = generator(cases, torch.Generator(device=device).manual_seed(3), points=blob_points().to(device))
    assert a.image.is_cuda and a.labels.is_cuda and a.points.is_cuda
    assert torch.equal(a.image, b.image) and torch.equal(a.points, b.points)
    for s in range(2):
        for n, (code, _) in enumerate(BLOBS):
            flipped = bool(a.flipped[s])
            shown = mirrored_code(code) if flipped else code
            index = {0: 1, 1: 0}.get(n, n) if flipped else n
            mask = (a.labels[s] == CODES.index(shown) + 1).cpu()
            assert (centroid(mask) - a.points[s, index].cpu()).norm() < 1.0


def test_the_same_map_warps_and_moves_points_alike_on_cpu_and_cuda():
    transform = random_spatial(SpatialConfig(rotate_degrees=30, elastic_std_voxels=2), 2, (48, 48, 48), (40, 40, 40),
                               torch.Generator().manual_seed(0))
    volume = torch.rand(2, 1, 48, 48, 48, generator=torch.Generator().manual_seed(1))
    cpu = warp(volume, transform, "bilinear")
    moved = dataclasses.replace(transform, matrix=transform.matrix.cuda(), offset=transform.offset.cuda(),
                                displacement=transform.displacement.cuda(), flipped=transform.flipped.cuda())
    assert torch.allclose(warp(volume.cuda(), moved, "bilinear").cpu(), cpu, atol=1e-4)
    points = blob_points()
    assert torch.allclose(map_points(moved, points.cuda()).cpu(), map_points(transform, points), atol=1e-3)
