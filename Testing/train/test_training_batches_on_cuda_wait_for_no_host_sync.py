"""A training batch on CUDA never makes the host wait for the device: every op of the three problems'
`batch` (spatial maps, point motion, contrasts, acquisition, heatmaps) is queued without a sync, so the
data path runs at the device's pace even on a busy host (issue 13: data time <= 10 % of a step).

torch.cuda.set_sync_debug_mode("error") raises on any synchronising call (a `.item()`, a copy from
pageable host memory, a `torch.tensor(..., device="cuda")`). The first batch may sync once per
constant (copied to the device once, then cached), so the check starts at the second batch."""

from __future__ import annotations

import pytest
import torch

from nnmamba.train.problems import make_problem
from nnmamba.train.recipes import DataRecipe, data_recipe
from nnmamba.train.synth import SpatialConfig, SynthConfig

from synth_helpers import BLOBS
from test_problems_on_device import SPACING, _card, _image_case, _label_map_case

pytestmark = pytest.mark.gpu


def _landmark_problem(device):
    points = [c for _, c in BLOBS]
    card = _card("landmarks", landmarks=[{"name": f"p{n}"} for n in range(len(points))])
    recipe = DataRecipe(real_fraction=0.5, pseudo_label_classes=4, translate_beyond_reach_voxels=2.0,
                        synth=SynthConfig(spatial=SpatialConfig(rotate_degrees=30, scale=0.1, isotropic_scale=True,
                                                                elastic_std_voxels=1.0)))
    return make_problem(card, [_image_case("t1", "MR", "T1w", points)], device, seed=0, recipe=recipe)


def _classification_problem(device):
    card = _card("classification", classes=[{"name": "CT"}, {"name": "T1w MR"}, {"name": "T2w MR"}])
    return make_problem(card, [_image_case("ct", "CT"), _image_case("t1", "MR", "T1w")], device, seed=0,
                        recipe=data_recipe("scan-type-cls", "classification"),
                        label_maps=[_label_map_case()])


def _segmentation_problem(device):
    codes = [17, 53, 10, 16, 12]
    card = _card("segmentation", labels=[{"value": n + 1, "name": f"c{code}"} for n, code in enumerate(codes)])
    recipe = DataRecipe(real_fraction=0.0, target_codes=codes, synth=SynthConfig(spatial=SpatialConfig(
        rotate_degrees=20, scale=0.2, elastic_std_voxels=2.0, flip_probability=0.5),
        contrast_probabilities=(0.6, 0.15, 0.1, 0.15)))
    return make_problem(card, [], device, seed=0, recipe=recipe, label_maps=[_label_map_case()])


@pytest.mark.parametrize("normalization", [{"method": "zscore", "mask": "nonzero"},
                                           {"method": "percentile", "lower": 0.5, "upper": 99.5}])
@pytest.mark.parametrize("build", [_landmark_problem, _classification_problem, _segmentation_problem])
def test_a_batch_after_the_first_makes_no_host_device_sync(build, normalization):
    problem = build(torch.device("cuda"))
    problem.normalization = normalization             # percentile: what the shipped cards train with
    problem.batch(2)                                  # copies each cached constant to the device once
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for size in (2, 2, 1, 3):
            x, target = problem.batch(size)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert x.is_cuda and target.is_cuda and x.shape[0] == 3
