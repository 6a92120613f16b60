"""Brain-extracted generated scans: everything outside the brain (background, extracerebral CSF, skull,
scalp) reads 0 in MR and CT alike, the brain keeps its intensities, and only the share of samples the
recipe asks for is extracted."""

from __future__ import annotations

import torch

from nnmamba.train.synth import SpatialConfig, SynthConfig
from nnmamba.train.synth.generator import LabelMapGenerator
from nnmamba.train.synth.head import add_head_layers

from synth_helpers import blob_map

STILL = SpatialConfig(rotate_degrees=0, scale=0, elastic_std_voxels=0, flip_probability=0)


def _head() -> torch.Tensor:
    brain = blob_map(batch=1, radius=6.0)
    brain[(brain == 0) & (blob_map(batch=1, radius=9.0) != 0)] = 2          # white matter around the blobs
    return add_head_layers(brain, 2.0)


def _batch(probability: float, contrasts=(0.0, 0.5, 0.0, 0.5), batch: int = 6):
    config = SynthConfig(spatial=STILL, contrast_probabilities=contrasts, brain_extraction_probability=probability)
    generator = LabelMapGenerator(_head(), [17, 53], (48, 48, 48), config)
    return generator(torch.zeros(batch, dtype=torch.long), torch.Generator().manual_seed(0))


def test_outside_the_brain_reads_zero_in_mr_and_ct_and_the_brain_keeps_its_signal():
    head = _head()[0, 0]
    outside = (head == 0) | (head >= 901)
    batch = _batch(1.0)
    assert set(batch.contrast.tolist()) == {1, 3}                            # T1w MR and CT both drawn
    for sample in batch.image[:, 0]:
        assert (sample[outside] == 0).all()
        assert (sample[~outside] != 0).float().mean() > 0.99


def test_a_share_of_the_samples_is_extracted_and_the_rest_keep_their_head():
    skull = _head()[0, 0] == 902
    extracted = [bool((sample[skull] == 0).all()) for sample in _batch(0.5, batch=16).image[:, 0]]
    assert 3 <= sum(extracted) <= 13
    assert not any((sample[skull] == 0).all() for sample in _batch(0.0, batch=16).image[:, 0])
