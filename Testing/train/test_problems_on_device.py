"""The three training problems draw whole batches through the generator: landmark heatmaps peak at
the moved points, scan-type targets name what was generated (CT in Hounsfield units, T1w / T2w MR),
segmentation labels come from the label maps' FreeSurfer codes."""

from __future__ import annotations

import numpy as np
import torch

from nnmamba.train.data import PreparedCase
from nnmamba.train.problems import make_problem
from nnmamba.train.recipes import DataRecipe, data_recipe
from nnmamba.train.synth import SpatialConfig, SynthConfig
from nnmamba.volume import Geometry

from synth_helpers import BLOBS, blob_map

SPACING = 4.0


def _card(task: str, **extra) -> dict:
    card = {"name": f"test-{task}", "task": task, "input": {"spacing_mm": [SPACING] * 3, "patch_size": [32, 32, 32],
                                                           "normalization": {"method": "zscore", "mask": "nonzero"}}}
    card.update(extra)
    return card


def _image_case(name: str, modality: str, weighting=None, points_ijk=None) -> PreparedCase:
    codes = blob_map(1)[0, 0].numpy()
    image = np.where(codes > 0, 200.0, 20.0).astype(np.float32)
    if modality == "CT":
        image = np.where(codes > 0, 40.0, -1000.0).astype(np.float32)
    geometry = Geometry(np.zeros(3), np.full(3, SPACING), np.eye(3))
    landmarks = None if points_ijk is None else np.asarray(points_ijk) * SPACING
    return PreparedCase(name, image, geometry, modality, landmarks_lps=landmarks, weighting=weighting)


def _label_map_case() -> PreparedCase:
    codes = blob_map(1)[0, 0].numpy().astype(np.int16)
    return PreparedCase("map", None, Geometry(np.zeros(3), np.full(3, SPACING), np.eye(3)), "labels", codes=codes)


def test_landmark_targets_are_the_moved_blob_centres():
    points = [c for _, c in BLOBS]
    card = _card("landmarks", landmarks=[{"name": f"p{n}"} for n in range(len(points))])
    card["input"]["patch_size"] = [48, 48, 48]
    recipe = DataRecipe(real_fraction=0.5, pseudo_label_classes=4, translate_beyond_reach_voxels=2.0,
                        synth=SynthConfig(spatial=SpatialConfig(rotate_degrees=30, scale=0.1, isotropic_scale=True,
                                                                elastic_std_voxels=1.0)))
    problem = make_problem(card, [_image_case("t1", "MR", "T1w", points)], torch.device("cpu"), seed=0,
                           recipe=recipe)
    x, targets = problem.batch(2)
    assert x.shape == (2, 1, 48, 48, 48) and targets.shape == (2, len(points), 3)
    real, generated = problem.batch_parts(2)
    # the real part's image is bright at the moved blob centres (blobs 200, background 20 before the
    # smooth bias field and the monotone gamma)
    values = [float(real.image[0, 0, int(round(k)), int(round(j)), int(round(i))]) for i, j, k in real.points[0].tolist()]
    assert min(values) > 2 * float(real.image[0].median())
    # the loss is finite and falls when the scores peak at the targets
    flat = torch.zeros(2, len(points), 48, 48, 48)
    assert torch.isfinite(problem.loss(flat, targets))


def test_scan_type_targets_name_the_generated_contrast_and_real_cases_their_weighting():
    card = _card("classification", classes=[{"name": "CT"}, {"name": "T1w MR"}, {"name": "T2w MR"}])
    recipe = data_recipe("scan-type-cls", "classification")
    cases = [_image_case("ct", "CT"), _image_case("t1", "MR", "T1w")]
    problem = make_problem(card, cases, torch.device("cpu"), seed=0, recipe=recipe, label_maps=[_label_map_case()])
    seen = set()
    for _ in range(6):
        for part in problem.batch_parts(4):
            for image, target in zip(part.image, part.contrast.tolist()):
                seen.add(target)
                if target == 0:                                   # CT: air around the head
                    assert float(image.min()) < -500
                else:
                    assert float(image.min()) > -200
    assert seen == {0, 1, 2}
    x, y = problem.batch(4)
    assert x.shape == (4, 1, 32, 32, 32) and y.shape == (4,)


def test_segmentation_from_label_maps_maps_codes_to_the_cards_classes():
    codes = [17, 53, 10, 16, 12]
    card = _card("segmentation", labels=[{"value": n + 1, "name": f"c{code}"} for n, code in enumerate(codes)])
    recipe = DataRecipe(real_fraction=0.0, target_codes=codes,
                        synth=SynthConfig(spatial=SpatialConfig(rotate_degrees=0, scale=0, elastic_std_voxels=0)))
    problem = make_problem(card, [], torch.device("cpu"), seed=0, recipe=recipe, label_maps=[_label_map_case()])
    x, labels = problem.batch(2)
    assert sorted(labels.unique().tolist()) == [0, 1, 2, 3, 4, 5]
    assert torch.isfinite(x).all() and abs(float(x.mean())) < 1.0
