"""Landmark cards that declare a soft-argmax decoding and a template fit: a far blob cannot pull a
detection, a failed detection is replaced by the fitted template point (and says so), and the Predictor
answers through them."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_resampling import OBLIQUE, SHAPE, physical_points
from tiny_models import LANDMARK_CARD

from nnmamba.errors import ModelError
from nnmamba.inference import InferenceOptions, Predictor
from nnmamba.inference.landmark_decoding import decode_landmarks
from nnmamba.model_card import validate_card_dict
from nnmamba.volume import Geometry, Volume

GRID = (24, 28, 20)                                        # (Z, Y, X) working grid
GEOMETRY = Geometry(np.array([-40.0, -56.0, -48.0]), np.full(3, 4.0), np.eye(3))
TEMPLATE = np.array([[0.0, 0.0, 0.0], [0.0, 28.0, 4.0], [16.0, 8.0, -8.0], [-16.0, 8.0, -8.0],
                     [0.0, -20.0, 12.0], [8.0, 24.0, 20.0]])          # LPS mm


def _card(decoding: dict, fit: dict = None) -> object:
    card = copy.deepcopy(LANDMARK_CARD)
    card["hyperparameters"]["number_landmarks"] = len(TEMPLATE)
    card["landmarks"] = [{"name": f"L{n}", "description": f"point {n}"} for n in range(len(TEMPLATE))]
    card["inference"]["landmark_decoding"] = decoding
    if fit is not None:
        card["inference"]["landmark_fit"] = {"template_lps_mm": TEMPLATE.tolist(), **fit}
    return validate_card_dict(card)


def _scores_at(points_lps: np.ndarray, sigma_voxels: float = 2.0) -> torch.Tensor:
    """(n, Z, Y, X) log-Gaussian scores peaking at the points (LPS mm on GEOMETRY)."""
    ijk = (points_lps - GEOMETRY.origin) / GEOMETRY.spacing
    axes = [torch.arange(s, dtype=torch.float64) for s in GRID]
    k, j, i = torch.meshgrid(*axes, indexing="ij")
    centres = torch.from_numpy(ijk)
    squared = ((i[None] - centres[:, 0, None, None, None]) ** 2 + (j[None] - centres[:, 1, None, None, None]) ** 2
               + (k[None] - centres[:, 2, None, None, None]) ** 2)
    return (-0.5 * squared / sigma_voxels ** 2).float()


def test_a_far_blob_neither_pulls_the_soft_argmax_nor_goes_unnoticed_in_the_confidence():
    truth = TEMPLATE + np.array([1.3, -0.7, 2.2])
    scores = _scores_at(truth)
    lone = scores.clone()
    far = _scores_at(truth[:1] + np.array([0.0, -36.0, 0.0]))[0]
    scores[0] = torch.logaddexp(scores[0], far - 1.0)              # a second blob 36 mm away, e^-1 as high
    points, confidence, descriptions = decode_landmarks(_card({"method": "soft-argmax", "radius_mm": 16}),
                                                        scores, GEOMETRY)
    np.testing.assert_allclose(points, truth, atol=0.4)
    assert confidence[0] < 0.8 < confidence[1:].min()
    assert descriptions == [f"point {n}" for n in range(len(TEMPLATE))]
    everywhere, _, _ = decode_landmarks(_card({"method": "soft-argmax", "radius_mm": 200}), scores, GEOMETRY)
    assert np.linalg.norm(everywhere[0] - truth[0]) > 5                # what a global mean would answer
    single, _, _ = decode_landmarks(_card({"method": "soft-argmax", "radius_mm": 16}), lone, GEOMETRY)
    np.testing.assert_allclose(single, truth, atol=0.4)


def test_a_detection_far_from_the_fitted_template_is_replaced_by_the_template_point():
    rotation = np.array([[0.98, -0.2, 0.0], [0.2, 0.98, 0.0], [0.0, 0.0, 1.0]])
    rotation, _ = np.linalg.qr(rotation)
    rotation *= np.sign(np.diag(rotation))
    truth = 1.05 * TEMPLATE @ rotation.T + np.array([3.0, -2.0, 5.0])
    detections = truth.copy()
    detections[4] += np.array([0.0, 0.0, -30.0])                      # a failed detection
    card = _card({"method": "soft-argmax", "radius_mm": 16}, {"accept_mm": 6.0, "min_inliers": 4})
    points, confidence, descriptions = decode_landmarks(card, _scores_at(detections), GEOMETRY)
    np.testing.assert_allclose(points, truth, atol=0.5)
    assert confidence[4] == 0.0 and confidence[[0, 1, 2, 3, 5]].min() > 0.9
    assert "placed by the template fit" in descriptions[4] and "30 mm" in descriptions[4]
    assert all(d.endswith("; detected") for n, d in enumerate(descriptions) if n != 4)


def test_accept_0_answers_every_point_from_the_fit_with_its_own_detection_as_the_confidence():
    # the fit averages the detections' independent errors: with small errors on every detection the
    # fitted points lie nearer the truth than the detections; a point whose own detection failed
    # keeps the fitted position but no confidence
    truth = 0.95 * TEMPLATE + np.array([-2.0, 3.0, 1.0])
    errors = np.array([[1.5, -1.0, 0.5], [-1.0, 1.5, -1.0], [1.0, 1.0, 1.5], [-1.5, -0.5, 1.0],
                       [0.0, 0.0, -30.0], [0.5, -1.5, -1.0]])
    card = _card({"method": "soft-argmax", "radius_mm": 16}, {"accept_mm": 0.0, "min_inliers": 4})
    points, confidence, descriptions = decode_landmarks(card, _scores_at(truth + errors), GEOMETRY)
    fitted_error = np.linalg.norm(points - truth, axis=1)
    detected_error = np.linalg.norm(errors, axis=1)
    assert np.delete(fitted_error, 4).mean() < np.delete(detected_error, 4).mean() and fitted_error[4] < 3
    assert confidence[4] == 0.0 and 0.5 < np.delete(confidence, 4).min()
    assert all("placed by the template fit" in d for d in descriptions)
    assert "30 mm away" in descriptions[4] and all(" 1 mm away" in d or " 2 mm away" in d for d in descriptions[:4])


def test_too_few_agreeing_detections_leave_the_detections_unchecked_and_say_so():
    truth = TEMPLATE + 2.0
    detections = truth + np.random.default_rng(0).normal(scale=15.0, size=truth.shape)
    card = _card({"method": "soft-argmax", "radius_mm": 16}, {"accept_mm": 6.0, "min_inliers": 6, "tukey_mm": 3.0})
    points, _, descriptions = decode_landmarks(card, _scores_at(np.clip(detections, -38, 30)), GEOMETRY)
    assert all("not checked" in d for d in descriptions)


@pytest.mark.parametrize("inference, message", [
    ({"landmark_decoding": {"method": "centroid"}}, "method must be one of"),
    ({"landmark_decoding": {"method": "soft-argmax", "radius_mm": 0}}, "radius_mm must be a number > 0"),
    ({"landmark_fit": {"template_lps_mm": [[0, 0, 0]] * 5}}, "one \\[x, y, z\\]"),
    ({"landmark_fit": {"template_lps_mm": TEMPLATE.tolist(), "accept_mm": -1}}, "accept_mm"),
    ({"landmark_fit": {"template_lps_mm": TEMPLATE.tolist(), "min_inliers": 2}}, "min_inliers"),
])
def test_a_card_with_malformed_landmark_settings_is_refused_naming_the_field(inference, message):
    card = copy.deepcopy(LANDMARK_CARD)
    card["hyperparameters"]["number_landmarks"] = len(TEMPLATE)
    card["landmarks"] = [{"name": f"L{n}"} for n in range(len(TEMPLATE))]
    card["inference"].update(inference)
    with pytest.raises(ModelError, match=message):
        validate_card_dict(card)


class _Intensity(torch.nn.Module):
    """Every landmark's score = the normalised input (its spatial softmax peaks where the input does)."""

    def forward(self, x):
        return x[:, :1].repeat(1, 3, 1, 1, 1) * 4.0


def test_the_predictor_answers_through_the_cards_soft_argmax_on_an_oblique_volume():
    centre = physical_points(OBLIQUE, SHAPE)[9, 14, 12] + np.array([0.6, -0.8, 0.3])
    points = physical_points(OBLIQUE, SHAPE)
    blob = np.exp(-np.sum((points - centre) ** 2, axis=-1) / (2 * 7.0 ** 2))
    volume = Volume((1000 * blob + 1)[None].astype(np.float32), OBLIQUE)
    card = copy.deepcopy(LANDMARK_CARD)
    card["name"] = "tiny-landmarks-soft-argmax"
    card["inference"]["landmark_decoding"] = {"method": "soft-argmax", "radius_mm": 16}
    card = validate_card_dict(card)
    predictor = Predictor(InferenceOptions(device="cpu", tta=False))
    predictor.use_network(card, _Intensity())
    result = predictor.run(volume, ["landmarks"], models={"landmarks": card})["landmarks"]
    np.testing.assert_allclose(result.points_lps, np.repeat(centre[None], 3, axis=0), atol=1.0)
    assert result.descriptions == ["AC", "PC", "infracollicular sulcus"]
