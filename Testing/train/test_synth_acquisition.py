"""Bias field, resolution and noise change the image and never the labels; a seed fixes a batch."""

from __future__ import annotations

import torch

from nnmamba.train.synth import LabelMapGenerator, SpatialConfig, SynthConfig
from nnmamba.train.synth import acquisition
from nnmamba.train.synth.head import add_head_layers, fill_unlabelled_brain
from nnmamba.train.synth.labels import UNLABELLED_BRAIN

from synth_helpers import BLOBS, blob_map, blob_points

QUIET = dict(resolution_probability=0.0, bias_std=0.0, gamma_std=0.0, noise_std_mr=0.0, noise_std_ct=0.0)
SPATIAL = SpatialConfig(translate_voxels=3, elastic_std_voxels=2, flip_probability=0.5)
TARGETS = [17, 53, 10, 49, 16, 12]


def _batch(seed: int, **changes):
    config = SynthConfig(spatial=SPATIAL, **{**QUIET, **changes})
    generator = LabelMapGenerator(add_head_layers(blob_map(), 2.0), TARGETS, (40, 40, 40), config,
                                  point_pairs=[(0, 1)], point_count=len(BLOBS))
    return generator(torch.tensor([0, 1]), torch.Generator().manual_seed(seed), points=blob_points())


def test_bias_resolution_and_noise_keep_labels_and_points_and_change_the_image():
    plain = _batch(0)
    for changes in ({"bias_std": 0.7}, {"resolution_probability": 1.0, "thick_slice_max_mm": 8.0},
                    {"noise_std_mr": 10.0, "noise_std_ct": 25.0}, {"gamma_std": 0.4}):
        changed = _batch(0, **changes)
        assert torch.equal(changed.labels, plain.labels), changes
        assert torch.equal(changed.points, plain.points), changes
        assert (changed.image - plain.image).abs().mean() > 0.5, changes


def test_the_same_seed_gives_the_same_batch_and_another_seed_another():
    a, b, c = _batch(7, bias_std=0.7, noise_std_mr=5.0), _batch(7, bias_std=0.7, noise_std_mr=5.0), _batch(8)
    assert torch.equal(a.image, b.image) and torch.equal(a.labels, b.labels) and torch.equal(a.points, b.points)
    assert not torch.equal(a.labels, c.labels)


def test_thick_slices_smooth_along_their_axis_only():
    g = torch.Generator().manual_seed(0)
    image = torch.randn(2, 1, 32, 32, 32, generator=g)
    sizes = torch.tensor([[8.0, 2.0, 2.0], [2.0, 2.0, 2.0]])   # sample 0: 8 mm slices along k
    out = acquisition.resolution(image, 2.0, sizes, g, max_size_mm=8.0)
    assert torch.equal(out[1], image[1])
    along_k = (out[0, 0, 1:] - out[0, 0, :-1]).abs().mean()
    along_i = (out[0, 0, :, :, 1:] - out[0, 0, :, :, :-1]).abs().mean()
    assert along_k < 0.25 * along_i


def test_the_bias_field_is_smooth_and_positive():
    g = torch.Generator().manual_seed(0)
    out = acquisition.bias_field(torch.ones(2, 1, 32, 32, 32), 0.7, g)
    assert bool((out > 0).all())
    assert float((out[..., 1:] - out[..., :-1]).abs().max()) < 0.2 * float(out.max())


def test_head_layers_surround_the_brain_in_order():
    brain = torch.zeros(1, 1, 48, 48, 48, dtype=torch.long)
    brain[..., 18:30, 18:30, 18:30] = 2
    head = add_head_layers(brain, 1.0)[0, 0, 24, 24]            # a line along i through the centre
    codes = [int(c) for c in head[:19]]
    order = [c for n, c in enumerate(codes) if n == 0 or c != codes[n - 1]]
    assert order == [0, 904, 903, 902, 901, 2]


def test_the_unlabelled_inside_of_a_cortex_only_map_is_filled_and_the_outside_is_not():
    k, j, i = torch.meshgrid(*[torch.arange(40.0)] * 3, indexing="ij")
    r = ((i - 20) ** 2 + (j - 20) ** 2 + (k - 20) ** 2).sqrt()
    labels = torch.where((r > 10) & (r <= 13), 3, 0)[None, None]
    filled = fill_unlabelled_brain(labels, 3)[0, 0]
    assert bool((filled[r <= 9] == UNLABELLED_BRAIN).all())
    assert bool((filled[r > 14] == 0).all())
    assert torch.equal(filled[(r > 10) & (r <= 13)], labels[0, 0][(r > 10) & (r <= 13)])


def test_the_cpu_blur_is_the_grouped_convolution_it_stands_in_for():
    image = torch.rand(3, 1, 20, 24, 18, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.0, 1.2, 3.0])
    radius = 4
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)
    kernel = torch.where(sigma[:, None] > 0, kernel, (offsets[None] == 0).float())
    kernel = kernel / kernel.sum(1, keepdim=True)
    for axis in range(3):
        shape, pad = [1, 1, 1], [0] * 6
        shape[axis] = 2 * radius + 1
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        padded = torch.nn.functional.pad(image.reshape(1, 3, *image.shape[2:]), pad, mode="replicate")
        convolved = torch.nn.functional.conv3d(padded, kernel.view(3, 1, *shape), groups=3).view(image.shape)
        blurred = acquisition._blur_axis(image, sigma, axis, radius)
        assert torch.allclose(blurred, convolved, atol=1e-6)
        assert torch.equal(blurred[0], image[0])          # sigma 0: exactly unchanged
        assert not torch.allclose(blurred[2], image[2], atol=1e-3)
