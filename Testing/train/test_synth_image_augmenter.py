"""Real-image augmentation: the image, its labels and its points move together, mirrors swap
left/right classes and points, and CT keeps its Hounsfield background."""

from __future__ import annotations

import torch

from nnmamba.train.synth import ImageAugmenter, SpatialConfig, SynthConfig

from synth_helpers import BLOBS, blob_map, blob_points, centroid

QUIET = dict(resolution_probability=0.0, bias_std=0.0, gamma_std=0.0, noise_std_mr=0.0, noise_std_ct=0.0)


def _augmenter(spatial: SpatialConfig, **changes) -> ImageAugmenter:
    codes = blob_map()
    classes = torch.zeros_like(codes)
    for n, (code, _) in enumerate(BLOBS):
        classes[codes == code] = n + 1
    image = (codes > 0).float() * 100.0
    swap = [0, 2, 1, 3, 4, 5]        # blob 1 and 2 (left/right hippocampus) swap under a mirror
    return ImageAugmenter(image, torch.zeros(2), torch.tensor([False, True]), (40, 40, 40),
                          SynthConfig(spatial=spatial, **{**QUIET, **changes}), labels=classes, class_swap=swap,
                          point_pairs=[(0, 1)], point_count=len(BLOBS))


def test_image_labels_and_points_move_together_under_every_transform():
    spatial = SpatialConfig(rotate_degrees=20, scale=0.2, translate_voxels=3, elastic_std_voxels=2,
                            flip_probability=0.5)
    for seed in range(3):
        batch = _augmenter(spatial)(torch.tensor([0, 1]), torch.Generator().manual_seed(seed), blob_points())
        for b in range(2):
            flipped = bool(batch.flipped[b])
            for n in range(len(BLOBS)):
                shown = {0: 1, 1: 0}.get(n, n) if flipped else n
                mask = batch.labels[b] == shown + 1
                assert (centroid(mask) - batch.points[b, shown]).norm() < 1.0
                bright = (batch.image[b, 0] > 50) & mask
                assert bright.sum() >= 0.8 * mask.sum()       # the image's blob is where its label is


def test_ct_background_stays_air_and_mr_gets_bias_but_labels_do_not_change():
    still = SpatialConfig(rotate_degrees=0, scale=0, elastic_std_voxels=0, translate_voxels=6)
    image = torch.full((2, 1, 48, 48, 48), -1000.0)
    image[..., 10:38, 10:38, 10:38] = 40.0
    augmenter = ImageAugmenter(image, torch.tensor([-1000.0, -1000.0]), torch.tensor([True, False]), (48, 48, 48),
                               SynthConfig(spatial=still, **{**QUIET, "bias_std": 0.7}))
    batch = augmenter(torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    ct, mr = batch.image[0, 0], batch.image[1, 0]
    # CT: no bias field (which would scale 40 HU by exp(N(0, s))); 1e-3 HU is interpolation rounding
    assert abs(float(ct.min()) + 1000.0) < 1e-3 and abs(float(ct.max()) - 40.0) < 1e-3
    assert float(mr[24, 24, 24]) != 40.0 or float(mr[12, 12, 12]) != 40.0
    assert batch.labels is None


def test_mr_noise_scales_with_the_scans_range_whatever_its_share_of_background():
    """A whole head and the same head brain-extracted (most of it 0) get noise at the same share of
    their intensity range, up to `noise_fraction_real_mr` (a mean-based scale gave the extracted one
    a third of the noise)."""
    from nnmamba.data import sample_volume_path
    from nnmamba.io.volumes import read_volume

    head = torch.from_numpy(read_volume([sample_volume_path()]).array[0].astype("float32"))[:, :96, :96]
    head = head - head.min()
    brain = torch.where(head > head.quantile(0.75), head, torch.zeros_like(head))
    images = torch.stack([head, brain])[:, None]
    still = SpatialConfig(rotate_degrees=0, scale=0, elastic_std_voxels=0, translate_voxels=0, flip_probability=0)
    config = SynthConfig(spatial=still, **{**QUIET, "noise_std_mr": 10.0})
    augmenter = ImageAugmenter(images, torch.zeros(2), torch.tensor([False, False]), tuple(head.shape), config)
    ranges = augmenter.intensity_range
    assert abs(float(ranges[0] / ranges[1]) - 1.0) < 0.25
    shares = [[], []]
    for seed in range(12):
        batch = augmenter(torch.tensor([0, 1]), torch.Generator().manual_seed(seed))
        for case in range(2):
            shares[case].append(float((batch.image[case, 0] - images[case, 0]).std() / ranges[case]))
    for case in range(2):
        assert max(shares[case]) <= config.noise_fraction_real_mr * 1.02
        assert max(shares[case]) > 0.5 * config.noise_fraction_real_mr
