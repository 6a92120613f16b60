"""The robust similarity fit recovers a moved template from detections of which a quarter are far off,
and the fused answer keeps detections only near the fitted template."""

import numpy as np
import pytest

from nnmamba.inference.landmark_fit import fuse_with_fit, robust_similarity_fit, umeyama_similarity


def rotation_about(axis_angle: np.ndarray) -> np.ndarray:
    """Rodrigues: a rotation vector (axis x angle in radians) -> (3, 3) rotation matrix."""
    angle = float(np.linalg.norm(axis_angle))
    k = axis_angle / angle
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def _template(count: int = 32, seed: int = 0) -> np.ndarray:
    """Points spread like the AFIDs: within a 140 x 170 x 100 mm box around the head centre."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, (count, 3)) * np.array([140.0, 170.0, 100.0])


def _similarity(seed: int) -> tuple:
    rng = np.random.default_rng(seed)
    rotation = rotation_about(rng.normal(size=3) * 0.3)
    return float(rng.uniform(0.85, 1.2)), rotation, rng.uniform(-30, 30, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eight_of_32_detections_100_mm_off_leave_the_fit_within_half_a_millimetre(seed):
    template = _template(seed=seed)
    scale, rotation, translation = _similarity(seed)
    truth = scale * template @ rotation.T + translation
    rng = np.random.default_rng(100 + seed)
    detections = truth + rng.normal(scale=0.5, size=truth.shape)          # 0.5 mm per axis detection noise
    outliers = rng.choice(32, 8, replace=False)
    directions = rng.normal(size=(8, 3))
    detections[outliers] += 100.0 * directions / np.linalg.norm(directions, axis=1, keepdims=True)
    fit = robust_similarity_fit(template, detections)
    errors = np.linalg.norm(fit.fitted - truth, axis=1)
    assert errors.mean() < 0.5 and errors.max() < 1.0
    assert not fit.inliers[outliers].any() and fit.inliers.sum() == 24
    assert fit.scale == pytest.approx(scale, rel=0.01)


def test_exact_detections_give_back_the_exact_similarity():
    template = _template()
    scale, rotation, translation = _similarity(7)
    detections = scale * template @ rotation.T + translation
    fit = robust_similarity_fit(template, detections)
    np.testing.assert_allclose(fit.rotation, rotation, atol=1e-9)
    np.testing.assert_allclose(fit.translation, translation, atol=1e-7)
    assert fit.scale == pytest.approx(scale, abs=1e-10)
    np.testing.assert_allclose(fit.apply(template), detections, atol=1e-7)


def test_a_mirrored_copy_is_not_fitted_by_a_reflection():
    template = _template()
    mirrored = template * np.array([-1.0, 1.0, 1.0])
    _, rotation, _ = umeyama_similarity(template, mirrored)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


def test_low_confidence_detections_weigh_less_in_the_fit():
    template = _template()
    truth = template + np.array([5.0, -3.0, 2.0])
    detections = truth.copy()
    detections[:6] += np.array([6.0, 0.0, 0.0])                          # a moderate error, inside Tukey's c
    confident = robust_similarity_fit(template, detections)
    doubted = np.ones(32)
    doubted[:6] = 0.01
    fit = robust_similarity_fit(template, detections, doubted)
    assert np.abs(fit.fitted - truth).mean() < np.abs(confident.fitted - truth).mean() / 5


def test_fusion_keeps_detections_within_the_threshold_and_the_fit_elsewhere():
    fitted = np.zeros((3, 3))
    detections = np.array([[1.0, 1.0, 1.0], [0.0, 7.0, 0.0], [0.0, 0.0, 5.9]])
    points, detected = fuse_with_fit(detections, fitted, accept_mm=6.0)
    assert detected.tolist() == [True, False, True]
    np.testing.assert_array_equal(points, [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 5.9]])


def test_malformed_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="must both be"):
        robust_similarity_fit(np.zeros((5, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="at least 3"):
        robust_similarity_fit(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="triangle"):
        robust_similarity_fit(np.zeros((5, 3)), np.ones((5, 3)))
    with pytest.raises(ValueError, match="finite"):
        robust_similarity_fit(_template(), np.full((32, 3), np.nan))
