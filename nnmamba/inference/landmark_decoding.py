"""A landmark card's score maps -> its answer: points (LPS mm), confidences and per-point descriptions.

Two steps, each as the card declares (nnmamba/landmark_settings.py):
1. detect: each map on its own, by arg-max (cards trained on peak-1 heatmaps) or by a local soft-argmax
   of the spatial softmax (confidence: the share of the map's probability near its peak);
2. fit (when the card has a template): a robust similarity fit of the template to the detections;
   each detection is kept where it agrees with the fitted template to `accept_mm`, else the fitted
   template point is answered (`accept_mm` 0: every point from the fit, whose 7 parameters average
   the detections' independent errors away). A fitted point's confidence is its own detection's
   confidence times its agreement with the fit (Tukey's weight of the residual: 0 beyond `tukey_mm`,
   where no detection supports the point), and the point's description says which;
3. register (when the card declares it and the scan is given): the template's head image registered
   onto the scan from the fit's pose (and from the scan's moments), each point refined locally
   (`nnmamba.inference.template_registration`); every point is answered from it, its confidence as in
   2. When registration fails, the answer of 2 stands.

    points_lps, confidence, descriptions = decode_landmarks(card, scores, geometry, volume)   # scores: (n, Z, Y, X)
"""

from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np
import torch

from nnmamba.inference import template_registration as registration
from nnmamba.inference.landmark_fit import fuse_with_fit, robust_similarity_fit, tukey_weights
from nnmamba.inference.landmarks import heatmap_peaks_torch
from nnmamba.inference.soft_argmax import local_soft_argmax
from nnmamba.landmark_settings import LandmarkFitSettings
from nnmamba.model_card import ModelCard
from nnmamba.volume import Geometry, Volume

log = logging.getLogger(__name__)


def detect_landmarks(card: ModelCard, scores: torch.Tensor, geometry: Geometry) -> tuple:
    """scores: (n, Z, Y, X) on the working grid `geometry` -> (detections (n, 3) LPS mm, confidence (n,) 0..1)."""
    decoding = card.landmark_decoding
    if decoding.method == "soft-argmax":
        radius = [max(1, math.ceil(decoding.radius_mm / float(s))) for s in geometry.spacing]   # (i, j, k)
        ijk, confidence = local_soft_argmax(scores, radius, decoding.temperature)
    else:
        heatmaps = scores if card.heatmap_activation == "none" else torch.sigmoid(scores)
        ijk, heights = heatmap_peaks_torch(heatmaps)
        confidence = np.clip(heights, 0.0, 1.0)
    return geometry.index_to_physical(ijk), confidence


def _agreeing_fit(settings: LandmarkFitSettings, detections: np.ndarray, confidence: np.ndarray) -> tuple:
    """(the robust similarity fit, or None; why there is none)."""
    template = np.asarray(settings.template_lps_mm, dtype=np.float64)
    try:
        fit = robust_similarity_fit(template, detections, confidence, inlier_mm=settings.inlier_mm,
                                    tukey_mm=settings.tukey_mm)
    except ValueError as e:
        log.warning("landmark template fit failed (%s)", e)
        return None, "no template fit"
    agreeing = int(fit.inliers.sum())
    if agreeing < settings.min_inliers:
        log.warning("only %d of %d detections agree with the template fit (need %d)", agreeing, len(detections),
                    settings.min_inliers)
        return None, f"only {agreeing} detections fit the template"
    return fit, ""


def fit_template(settings: LandmarkFitSettings, fitted: tuple, detections: np.ndarray, confidence: np.ndarray,
                 descriptions: list) -> tuple:
    """`fitted`: (`_agreeing_fit`'s fit or None, why none); detections (n, 3), confidence (n,), descriptions (n)
    -> (points (n, 3), confidence (n,), descriptions), each point the detection or the fitted template
    point (see the module docstring)."""
    fit, why = fitted
    if fit is None:
        log.warning("answering the landmark detections unchecked")
        return detections, confidence, [f"{d}; detected, not checked: {why}" for d in descriptions]
    points, detected = fuse_with_fit(detections, fit.fitted, settings.accept_mm)
    log.info("landmark template fit: scale %.3f, %d of %d detections agree, %d kept within %g mm", fit.scale,
             int(fit.inliers.sum()), len(detections), int(detected.sum()), settings.accept_mm)
    words = [f"{d}; detected" if kept else f"{d}; placed by the template fit (the detection was {r:.0f} mm away)"
             for d, kept, r in zip(descriptions, detected, fit.residuals_mm)]
    support = confidence * tukey_weights(fit.residuals_mm, settings.tukey_mm)
    return points, np.where(detected, confidence, support), words


def register_template(card: ModelCard, fit, scan, detections: np.ndarray, confidence: np.ndarray,
                      descriptions: list) -> Optional[tuple]:
    """(points, confidence, descriptions) from registering the card's template head onto `scan` (the
    working grid's SimpleITK image), started from `fit`'s pose when there is a fit; None when it cannot
    be registered (then the fit's answer stands)."""
    settings = card.landmark_fit
    starts = [] if fit is None else [registration.pose_from_fit(fit.scale, fit.rotation, fit.translation)]
    try:
        points = registration.place_template(card.landmark_registration, registration.load_template_head(card),
                                             scan, np.asarray(settings.template_lps_mm), starts)
    except RuntimeError as e:
        log.warning("the template head could not be registered onto the scan (%s)", e)
        return None
    residuals = np.linalg.norm(detections - points, axis=1)
    words = [f"{d}; placed by registering the template head (the detection was {r:.0f} mm away)"
             for d, r in zip(descriptions, residuals)]
    return points, confidence * tukey_weights(residuals, settings.tukey_mm), words


def decode_landmarks(card: ModelCard, scores: torch.Tensor, geometry: Geometry,
                     volume: Optional[Volume] = None) -> tuple:
    """scores: (n, Z, Y, X) -> (points (n, 3) LPS mm, confidence (n,) 0..1, descriptions (n)); `volume`: the
    scan, for a card that registers its template head onto it."""
    detections, confidence = detect_landmarks(card, scores, geometry)
    descriptions = [lm.description for lm in card.landmarks]
    if card.landmark_fit is None:
        return detections, confidence, descriptions
    fitted = _agreeing_fit(card.landmark_fit, detections, confidence)
    if card.landmark_registration is not None and volume is not None:
        scan = registration.scan_on_grid(volume, geometry, tuple(scores.shape[1:]))
        registered = register_template(card, fitted[0], scan, detections, confidence, descriptions)
        if registered is not None:
            return registered
    return fit_template(card.landmark_fit, fitted, detections, confidence, descriptions)
