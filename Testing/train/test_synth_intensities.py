"""Per-label intensities follow the sampled Gaussians: SynthSeg's prior for any contrast, tissue-
ordered priors for T1w / T2w, Hounsfield ranges for CT."""

from __future__ import annotations

import torch

from nnmamba.train.synth import LabelMapGenerator, SpatialConfig, SynthConfig
from nnmamba.train.synth.intensity import CONTRASTS, render_labels, sample_label_parameters
from nnmamba.train.synth.labels import TISSUES

STILL = SpatialConfig(rotate_degrees=0, scale=0, elastic_std_voxels=0)
QUIET = dict(resolution_probability=0.0, bias_std=0.0, gamma_std=0.0, noise_std_mr=0.0, noise_std_ct=0.0,
             zero_background_probability=0.0)


def _slabs(batch: int = 4) -> torch.Tensor:
    """Background, white matter (2), cortex (3), ventricle (4) as four big slabs along i."""
    maps = torch.zeros(batch, 1, 24, 24, 32, dtype=torch.long)
    for n, code in enumerate((0, 2, 3, 4)):
        maps[..., 8 * n:8 * n + 8] = code
    return maps


def test_each_voxel_is_drawn_from_its_labels_gaussian():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(3).repeat_interleave(8).view(1, 1, 1, 1, 24).expand(2, 1, 40, 40, 24).contiguous()
    parameters = sample_label_parameters(torch.tensor([0, 0]), torch.tensor([0, 1, 2]), g)
    image = render_labels(labels, parameters, g)
    for b in range(2):
        for label in range(3):
            values = image[b, 0][labels[b, 0] == label]
            assert abs(float(values.mean()) - float(parameters.means[b, label])) < 0.1 * float(parameters.stds[b, label])
            assert abs(float(values.std()) / float(parameters.stds[b, label]) - 1) < 0.05


def test_any_contrast_uses_synthsegs_prior_ranges():
    g = torch.Generator().manual_seed(1)
    parameters = sample_label_parameters(torch.zeros(64, dtype=torch.long), torch.arange(len(TISSUES)), g)
    assert 25 <= float(parameters.means.min()) and float(parameters.means.max()) <= 225
    assert 5 <= float(parameters.stds.min()) and float(parameters.stds.max()) <= 25
    # independent per label: white matter is brighter than cortex in some samples, darker in others
    brighter = parameters.means[:, TISSUES.index("white")] > parameters.means[:, TISSUES.index("grey")]
    assert 0 < int(brighter.sum()) < 64


def test_t1w_and_t2w_order_the_tissues_and_ct_is_in_hounsfield_units():
    def generated(contrast: str):
        probabilities = [1.0 if c == contrast else 0.0 for c in CONTRASTS]
        generator = LabelMapGenerator(_slabs(), [2, 3, 4], (24, 24, 32),
                                      SynthConfig(spatial=STILL, contrast_probabilities=probabilities, **QUIET))
        batch = generator(torch.arange(4), torch.Generator().manual_seed(2))
        return [[float(batch.image[b, 0][batch.labels[b] == c].mean()) for c in range(4)] for b in range(4)]

    for background, white, grey, csf in generated("t1w"):
        assert white > grey > csf > background
    for background, white, grey, csf in generated("t2w"):
        assert csf > grey > white > background
    for background, white, grey, csf in generated("ct"):
        assert -1100 < background < -850 and -5 < csf < 20 and 15 < white < 35 and 28 < grey < 50


def test_contrasts_are_drawn_with_the_configured_weights_and_never_a_zero_weight_one():
    from nnmamba.train.synth.generator import _draw_contrasts

    generator = torch.Generator().manual_seed(0)
    drawn = _draw_contrasts(SynthConfig(contrast_probabilities=(0.6, 0.15, 0.1, 0.15)), 8000, generator, "cpu")
    frequencies = torch.bincount(drawn, minlength=4).float() / 8000
    assert torch.allclose(frequencies, torch.tensor([0.6, 0.15, 0.1, 0.15]), atol=0.02)
    for weights in ((0.0, 1.0, 1.0, 1.0), (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 2.0)):
        drawn = _draw_contrasts(SynthConfig(contrast_probabilities=weights), 2000, generator, "cpu")
        assert set(drawn.tolist()) == {n for n, w in enumerate(weights) if w > 0}
