"""The scan-type problem draws CT, T1w MR and T2w MR equally often over real and generated samples
together (real volumes cover only some classes), and its loss smooths the targets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nnmamba.train.problems import balanced_sources, make_problem
from nnmamba.train.recipes import DataRecipe, data_recipe

from test_problems_on_device import _card, _image_case, _label_map_case

THREE_CLASSES = [{"name": "CT"}, {"name": "T1w MR"}, {"name": "T2w MR"}]


def test_real_ct_and_t1w_at_half_the_batch_leave_the_generator_mostly_t2w():
    fraction, weights = balanced_sources(3, {0, 1}, {0, 1, 2}, 0.5)
    assert fraction == 0.5
    np.testing.assert_allclose(weights, [1 / 6, 1 / 6, 2 / 3])
    shares = [fraction / 2 + (1 - fraction) * weights[0], fraction / 2 + (1 - fraction) * weights[1],
              (1 - fraction) * weights[2]]
    np.testing.assert_allclose(shares, [1 / 3] * 3)


def test_real_volumes_of_one_class_get_at_most_that_class_share():
    fraction, weights = balanced_sources(3, {1}, {0, 1, 2}, 0.5)
    assert math.isclose(fraction, 1 / 3)
    np.testing.assert_allclose(weights, [0.5, 0.0, 0.5])


def test_a_class_that_is_only_real_fixes_the_real_share_at_its_third():
    fraction, weights = balanced_sources(3, {0, 1}, {2}, 0.9)
    assert math.isclose(fraction, 2 / 3)
    np.testing.assert_allclose(weights, [0.0, 0.0, 1.0])


def test_real_volumes_of_every_class_and_a_generator_of_one_leave_all_samples_real():
    fraction, weights = balanced_sources(3, {0, 1, 2}, {0}, 0.5)
    assert fraction == 1.0 and weights == [0.0, 0.0, 0.0]


def test_scan_type_problem_with_every_class_real_draws_no_generated_sample():
    card = _card("classification", classes=THREE_CLASSES)
    card["input"]["patch_size"] = [16, 16, 16]
    cases = [_image_case("ct", "CT"), _image_case("t1", "MR", "T1w"), _image_case("t2", "MR", "T2w")]
    recipe = data_recipe("scan-type-cls", "classification")
    recipe.synth.contrast_probabilities = (0.0, 0.0, 0.0, 1.0)  # CT only: CT is real anyway
    problem = make_problem(card, cases, torch.device("cpu"), seed=0, recipe=recipe, label_maps=[_label_map_case()])
    assert problem.real_fraction == 1.0 and len(problem.batch_parts(4)) == 1


def test_scan_type_batches_hold_each_class_about_a_third_of_the_time():
    card = _card("classification", classes=THREE_CLASSES)
    card["input"]["patch_size"] = [16, 16, 16]
    cases = [_image_case("ct", "CT"), _image_case("t1", "MR", "T1w"), _image_case("t1b", "MR", "T1w")]
    problem = make_problem(card, cases, torch.device("cpu"), seed=0, recipe=data_recipe("scan-type-cls", "classification"),
                           label_maps=[_label_map_case()])
    targets = torch.cat([part.contrast for _ in range(80) for part in problem.batch_parts(8)])
    shares = torch.bincount(targets, minlength=3).float() / len(targets)
    # 640 samples: a third each within ~4 standard errors (the old sampling gave T2w 1/6)
    assert (shares - 1 / 3).abs().max().item() < 0.08, shares.tolist()
    assert "classes balanced (33% each)" in problem.augmentation_description


def test_scan_type_loss_smooths_its_targets_so_overconfidence_costs():
    card = _card("classification", classes=THREE_CLASSES)
    problem = make_problem(card, [_image_case("ct", "CT"), _image_case("t1", "MR", "T1w")], torch.device("cpu"), seed=0,
                           recipe=data_recipe("scan-type-cls", "classification"), label_maps=[_label_map_case()])
    target = torch.tensor([0, 1, 2])
    right = torch.eye(3)
    assert problem.loss(20 * right, target) > problem.loss(4 * right, target)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\), got 1.5"):
        DataRecipe(label_smoothing=1.5)
