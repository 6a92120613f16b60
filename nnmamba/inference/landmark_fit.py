"""A robust similarity fit of a landmark template to detected landmarks, and the fused answer.

Detections from independent score maps can each fail (a blob outside the head wins its map); the
anatomy they belong to cannot: the 32 AFIDs of any head are, to a few millimetres, a rotated,
shifted and scaled copy of a template's. So the template is fitted to the detections with 7 degrees
of freedom (rotation, translation, isotropic scale) in a way that ignores the failures, and each
detection is kept only where it agrees with the fitted template (O'Neil et al. 2018 use the same
idea: an overdetermined mapping robust to detection failures).

1. Hypotheses (`similarity_hypotheses`): the exact similarity of every minimal set of three
   landmarks (all of them for up to 40 landmarks; a seeded sample beyond), scored by a truncated
   squared residual (MSAC), so the best hypothesis is the one most detections agree with.
2. Refinement (`robust_similarity_fit`): weighted least squares (Umeyama 1991) from the best
   hypothesis, reweighted each round by Tukey's biweight of the residuals (a detection further than
   `tukey_mm` from the fitted template gets weight 0) times the detection's confidence.
3. Fusion (`fuse_with_fit`): the detection where it lies within `accept_mm` of the fitted template
   point, else the fitted template point.

Pure numpy; points are (n, 3) physical millimetres (any one frame for the detections).

Example:
    >>> fit = robust_similarity_fit(template_lps, detections_lps, confidences)     # doctest: +SKIP
    >>> points, detected = fuse_with_fit(detections_lps, fit.fitted, accept_mm=6.0)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Optional

import numpy as np

MIN_TRIANGLE_AREA_MM2 = 100.0     # minimal sets flatter than this fix the rotation poorly
SCALE_RANGE = (0.5, 2.0)          # heads are not half or twice the template's size
EXHAUSTIVE_UP_TO = 40             # C(40, 3) = 9880 minimal sets; more landmarks: a seeded sample
SAMPLED_SETS = 10000


@dataclass
class SimilarityFit:
    """detection ~= scale * rotation @ template + translation."""
    scale: float
    rotation: np.ndarray          # (3, 3), det +1
    translation: np.ndarray       # (3,)
    fitted: np.ndarray            # (n, 3) the template points carried by the fit
    residuals_mm: np.ndarray      # (n,) |detection - fitted|
    inliers: np.ndarray           # (n,) bool: weight > 0 in the last reweighting

    def apply(self, points: np.ndarray) -> np.ndarray:
        """points (m, 3) in the template's frame -> (m, 3) in the detections' frame."""
        return self.scale * np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation


def _check_pair(template: np.ndarray, detections: np.ndarray) -> tuple:
    template = np.asarray(template, dtype=np.float64)
    detections = np.asarray(detections, dtype=np.float64)
    if template.ndim != 2 or template.shape[1] != 3 or template.shape != detections.shape:
        raise ValueError(f"template and detections must both be (n, 3) points, got shapes {template.shape} and "
                         f"{detections.shape}")
    if template.shape[0] < 3:
        raise ValueError(f"a similarity fit needs at least 3 landmarks, got {template.shape[0]}")
    if not (np.isfinite(template).all() and np.isfinite(detections).all()):
        raise ValueError("template and detections must be finite")
    return template, detections


def umeyama_similarity(source: np.ndarray, target: np.ndarray, weights: Optional[np.ndarray] = None) -> tuple:
    """source, target: (..., n, 3); weights (..., n) >= 0 (default 1) -> (scale (...,), rotation (..., 3, 3),
    translation (..., 3)) minimising sum_i w_i |target_i - (scale R source_i + t)|^2 (Umeyama 1991).

    Batched over leading axes (all minimal sets at once). A set whose weights are all 0 gets the identity.
    """
    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if weights is None:
        weights = np.ones(source.shape[:-1])
    w = np.asarray(weights, dtype=np.float64)
    total = w.sum(-1, keepdims=True)
    w = w / np.where(total > 0, total, 1.0)
    mean_source = (w[..., None] * source).sum(-2)
    mean_target = (w[..., None] * target).sum(-2)
    centred_source = source - mean_source[..., None, :]
    centred_target = target - mean_target[..., None, :]
    covariance = np.einsum("...n,...ni,...nj->...ij", w, centred_target, centred_source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.sign(np.linalg.det(u @ vt))
    sign = np.where(sign == 0, 1.0, sign)
    correction = np.ones(singular.shape)
    correction[..., 2] = sign
    rotation = u @ (correction[..., :, None] * vt)
    variance = (w * (centred_source ** 2).sum(-1)).sum(-1)
    scale = (singular * correction).sum(-1) / np.where(variance > 0, variance, 1.0)
    translation = mean_target - scale[..., None] * np.einsum("...ij,...j->...i", rotation, mean_source)
    return scale, rotation, translation


def minimal_sets(count: int, seed: int = 0) -> np.ndarray:
    """(m, 3) index triples: all of them up to EXHAUSTIVE_UP_TO landmarks, else SAMPLED_SETS seeded draws."""
    if count <= EXHAUSTIVE_UP_TO:
        return np.array(list(combinations(range(count), 3)), dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.stack([rng.choice(count, 3, replace=False) for _ in range(SAMPLED_SETS)])


def similarity_hypotheses(template: np.ndarray, detections: np.ndarray, inlier_mm: float,
                          confidences: Optional[np.ndarray] = None, seed: int = 0) -> tuple:
    """template, detections: (n, 3) -> (scale, rotation (3, 3), translation (3,)) of the minimal-set
    hypothesis with the lowest truncated cost sum_i c_i min(r_i, inlier_mm)^2 (c: confidences, default 1).
    Raises ValueError when no minimal set spans a triangle or gives a plausible scale."""
    template, detections = _check_pair(template, detections)
    n = template.shape[0]
    c = np.ones(n) if confidences is None else np.clip(np.asarray(confidences, dtype=np.float64), 0.0, None)
    sets = minimal_sets(n, seed)
    corners = template[sets]                                                          # (m, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=-1)
    sets = sets[area >= MIN_TRIANGLE_AREA_MM2]
    if not len(sets):
        raise ValueError(f"no three template landmarks span a triangle of {MIN_TRIANGLE_AREA_MM2:g} mm^2")
    scale, rotation, translation = umeyama_similarity(template[sets], detections[sets])
    plausible = (scale >= SCALE_RANGE[0]) & (scale <= SCALE_RANGE[1])
    if not plausible.any():
        raise ValueError(f"no minimal set of detections gives a scale within {SCALE_RANGE}: the detections do not "
                         f"look like the template")
    scale, rotation, translation = scale[plausible], rotation[plausible], translation[plausible]
    carried = scale[:, None, None] * np.einsum("mij,nj->mni", rotation, template) + translation[:, None, :]
    residuals = np.linalg.norm(carried - detections[None], axis=-1)                    # (m, n)
    cost = (c[None] * np.minimum(residuals, inlier_mm) ** 2).sum(-1)
    best = int(np.argmin(cost))
    return float(scale[best]), rotation[best], translation[best]


def tukey_weights(residuals_mm: np.ndarray, tukey_mm: float) -> np.ndarray:
    """(n,) -> (n,) Tukey's biweight (1 - (r/c)^2)^2 inside c, 0 beyond."""
    ratio = np.asarray(residuals_mm, dtype=np.float64) / tukey_mm
    return np.where(ratio < 1.0, (1.0 - ratio ** 2) ** 2, 0.0)


def robust_similarity_fit(template: np.ndarray, detections: np.ndarray, confidences: Optional[np.ndarray] = None,
                          inlier_mm: float = 10.0, tukey_mm: float = 12.0, rounds: int = 50,
                          seed: int = 0) -> SimilarityFit:
    """template, detections: (n, 3) mm; confidences (n,) in [0, 1] (default 1) -> SimilarityFit.

    The best minimal-set hypothesis (`similarity_hypotheses`), then up to `rounds` rounds of Umeyama
    weighted by confidence x Tukey biweight of the residuals (`tukey_mm`), until the fitted points
    move less than 1e-6 mm. Raises ValueError for malformed input or when no consistent fit exists.
    """
    template, detections = _check_pair(template, detections)
    n = template.shape[0]
    c = np.ones(n) if confidences is None else np.clip(np.asarray(confidences, dtype=np.float64), 0.0, None)
    if c.shape != (n,):
        raise ValueError(f"confidences must be ({n},), got shape {c.shape}")
    scale, rotation, translation = similarity_hypotheses(template, detections, inlier_mm, c, seed)
    fitted = scale * template @ rotation.T + translation
    weights = c * tukey_weights(np.linalg.norm(detections - fitted, axis=-1), tukey_mm)
    for _ in range(rounds):
        if np.count_nonzero(weights) < 3:
            break
        scale, rotation, translation = umeyama_similarity(template, detections, weights)
        moved = scale * template @ rotation.T + translation
        weights = c * tukey_weights(np.linalg.norm(detections - moved, axis=-1), tukey_mm)
        change = float(np.abs(moved - fitted).max())
        fitted = moved
        if change < 1e-6:
            break
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        raise ValueError(f"the refined fit's scale {scale:.2f} is outside {SCALE_RANGE}: the detections that agree "
                         f"do not look like the template")
    residuals = np.linalg.norm(detections - fitted, axis=-1)
    return SimilarityFit(float(scale), rotation, translation, fitted, residuals, weights > 0)


def fuse_with_fit(detections: np.ndarray, fitted: np.ndarray, accept_mm: float) -> tuple:
    """detections, fitted: (n, 3) -> (points (n, 3), detected (n,) bool): each detection where it lies
    within `accept_mm` of its fitted template point, else the fitted point."""
    detections, fitted = np.asarray(detections, dtype=np.float64), np.asarray(fitted, dtype=np.float64)
    if accept_mm < 0:
        raise ValueError(f"accept_mm must be >= 0, got {accept_mm}")
    detected = np.linalg.norm(detections - fitted, axis=-1) <= accept_mm
    return np.where(detected[:, None], detections, fitted), detected
