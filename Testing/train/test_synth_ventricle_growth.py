"""The generator's ventricle growth: in the samples it picks, the lateral ventricles take only the
cerebral white matter next to them, on their own side; every other structure keeps its voxels; and
samples it does not pick are the same as with growth off."""

from __future__ import annotations

import torch

from nnmamba.train.synth import SpatialConfig, SynthConfig
from nnmamba.train.synth.generator import LabelMapGenerator
from nnmamba.train.synth.labels import BRAIN_STRUCTURES

STILL = SpatialConfig(rotate_degrees=0, scale=0, elastic_std_voxels=0, flip_probability=0)
LEFT_VENTRICLE, RIGHT_VENTRICLE, LEFT_CAUDATE = 1, 2, 5  # training classes (BRAIN_STRUCTURES order)


def _hemispheres() -> torch.Tensor:
    """(1, 1, 32, 32, 32) FreeSurfer codes: left / right white matter (2 / 41) with a ventricle slab
    (4 / 43) in each and a caudate (11) against the left ventricle."""
    codes = torch.zeros(32, 32, 32, dtype=torch.long)
    codes[4:28, 4:28, 4:16], codes[4:28, 4:28, 16:28] = 41, 2   # i < 16: right (LPS: +i is left)
    codes[12:20, 10:22, 9:11], codes[12:20, 10:22, 21:23] = 43, 4
    codes[12:20, 10:22, 23:25] = 11
    return codes[None, None]


def _batch(probability: float, seed: int = 3):
    config = SynthConfig(spatial=STILL, ventricle_growth_probability=probability, ventricle_growth_max_mm=4.0,
                         voxel_mm=2.0, resolution_probability=0.0)
    generator = LabelMapGenerator(_hemispheres(), [code for code, _ in BRAIN_STRUCTURES], (32, 32, 32), config)
    return generator(torch.zeros(4, dtype=torch.long), torch.Generator().manual_seed(seed)).labels


def test_grown_ventricles_take_only_white_matter_on_their_own_side():
    still, grown = _batch(0.0), _batch(1.0)
    for side in (LEFT_VENTRICLE, RIGHT_VENTRICLE):
        assert ((still == side).sum((1, 2, 3)) < (grown == side).sum((1, 2, 3))).all()
    gained = (grown != still)
    assert (still[gained] == 0).all()                          # white matter is "other" (class 0) here
    assert torch.equal(grown == LEFT_CAUDATE, still == LEFT_CAUDATE)
    left_side, right_side = torch.zeros_like(gained), torch.zeros_like(gained)
    left_side[..., 16:], right_side[..., :16] = True, True
    assert not (gained & left_side & (grown == RIGHT_VENTRICLE)).any()
    assert not (gained & right_side & (grown == LEFT_VENTRICLE)).any()


def test_growth_is_one_or_two_shells_at_2_mm_and_off_means_unchanged():
    still = _batch(0.0)
    assert torch.equal(still, _batch(0.0, seed=4))             # no growth: the map itself
    size = (still == LEFT_VENTRICLE).sum().item() / 4
    grown = (_batch(1.0, seed=0) == LEFT_VENTRICLE).sum((1, 2, 3)).float()
    assert grown.min() > size and grown.max() < 6 * size
