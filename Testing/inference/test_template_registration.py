"""The shipped landmark card's template head, registered onto scans whose true points are known: the
template head itself moved by a known similarity, from a good start, from a wrong start (the image
moments' start must win), and through the Predictor; a card whose head files are gone says so."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnmamba.errors import ModelError
from nnmamba.inference import template_registration as registration
from nnmamba.inference.landmark_decoding import decode_landmarks
from nnmamba.model_card import find_model
from nnmamba.volume import Geometry, Volume


@pytest.fixture(scope="module")
def card():
    card = find_model("afids-landmarks")
    if card.landmark_registration is None:
        pytest.skip("the shipped landmark card registers no template head")
    return card


def _moved_head(card, angle_degrees: float, scale: float, shift_mm) -> tuple:
    """(the template head resampled under a similarity: scan = s R template + t, its true points, the
    scan -> template pose that produced it)."""
    head = registration.load_template_head(card)
    pose = sitk.Similarity3DTransform()
    centre = np.array(head.image.TransformContinuousIndexToPhysicalPoint([n / 2 for n in head.image.GetSize()]))
    pose.SetCenter(tuple(centre))
    pose.SetRotation((0.3, 0.2, 1.0), np.radians(angle_degrees))
    pose.SetScale(1.0 / scale)
    pose.SetTranslation(tuple(float(v) for v in shift_mm))
    scan = sitk.Resample(head.image, head.image, pose, sitk.sitkLinear, 0.0)
    inverse = pose.GetInverse()
    truth = np.array([inverse.TransformPoint(tuple(p)) for p in card.landmark_fit.template_lps_mm])
    return scan, truth, pose


def _error_mm(points: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(points - truth, axis=1).mean())


def test_a_moved_template_head_is_registered_back_onto_its_points(card):
    scan, truth, _ = _moved_head(card, angle_degrees=12.0, scale=1.06, shift_mm=(7.0, -5.0, 4.0))
    template = np.asarray(card.landmark_fit.template_lps_mm)
    assert _error_mm(template, truth) > 8                             # the motion is not negligible
    points = registration.place_template(card.landmark_registration, registration.load_template_head(card),
                                         scan, template, starts=[])
    assert _error_mm(points, truth) < 0.5


def test_a_head_turned_far_beyond_the_optimisers_reach_is_found_by_the_rotation_search(card):
    scan, truth, _ = _moved_head(card, angle_degrees=70.0, scale=1.0, shift_mm=(3.0, -2.0, 4.0))
    points = registration.place_template(card.landmark_registration, registration.load_template_head(card),
                                         scan, np.asarray(card.landmark_fit.template_lps_mm), starts=[])
    assert _error_mm(points, truth) < 0.5


def test_a_wrong_start_loses_to_the_image_moments_start(card):
    scan, truth, pose = _moved_head(card, angle_degrees=8.0, scale=0.95, shift_mm=(-6.0, 3.0, 5.0))
    wrong = sitk.Similarity3DTransform(pose)
    wrong.SetTranslation(tuple(np.array(pose.GetTranslation()) + np.array([30.0, 0.0, -25.0])))
    wrong.SetScale(pose.GetScale() * 1.4)
    points = registration.place_template(card.landmark_registration, registration.load_template_head(card),
                                         scan, np.asarray(card.landmark_fit.template_lps_mm), starts=[wrong])
    assert _error_mm(points, truth) < 0.5


def test_the_shipped_card_answers_every_point_from_the_registered_head(card, caplog):
    scan, truth, _ = _moved_head(card, angle_degrees=10.0, scale=1.0, shift_mm=(4.0, 6.0, -3.0))
    array = sitk.GetArrayFromImage(scan).astype(np.float32)
    geometry = Geometry(np.array(scan.GetOrigin()), np.array(scan.GetSpacing()), np.eye(3))
    volume = Volume(array[None], geometry)
    # flat score maps: every detection sits at the grid's centre, so no fit holds and only the
    # image moments can start the registration
    scores = torch.zeros((len(card.landmarks),) + array.shape)
    with caplog.at_level(logging.WARNING):
        points, confidence, descriptions = decode_landmarks(card, scores, geometry, volume)
    assert _error_mm(points, truth) < 0.5
    assert all("placed by registering the template head" in d for d in descriptions)
    assert confidence.max() < 0.1                                   # no detection supports a point
    assert "detections agree" in caplog.text or "fit failed" in caplog.text


def test_a_scan_that_cannot_be_registered_keeps_the_fit_of_the_detections(card, caplog):
    # a blank scan has no intensity moments and no mutual information: the answer is the fit
    geometry = Geometry(np.array([-96.0, -132.0, -78.0]), np.full(3, 2.0), np.eye(3))
    shape = (80, 110, 96)
    volume = Volume(np.zeros((1,) + shape, np.float32), geometry)
    template = np.asarray(card.landmark_fit.template_lps_mm)
    ijk = (template - geometry.origin) / geometry.spacing
    k, j, i = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    scores = torch.from_numpy(np.stack([-((i - p[0]) ** 2 + (j - p[1]) ** 2 + (k - p[2]) ** 2) / 2.0
                                        for p in ijk]).astype(np.float32))
    with caplog.at_level(logging.WARNING):
        points, _, descriptions = decode_landmarks(card, scores, geometry, volume)
    assert "could not be registered" in caplog.text
    assert _error_mm(points, template) < 0.5
    assert not any("registering" in d for d in descriptions)


def test_a_card_whose_template_head_is_missing_says_to_reinstall(card, tmp_path):
    moved = dataclasses.replace(card, path=tmp_path / "model.json")
    with pytest.raises(ModelError, match="template file .*template_head.nii.gz is missing; reinstall"):
        registration.load_template_head(moved)
