"""How a landmark card's score maps become points: its `inference.landmark_decoding` and
`inference.landmark_fit` settings, read and checked (torch-free, so a card validates anywhere).

    "inference": {
      "landmark_decoding": {"method": "soft-argmax", "radius_mm": 20, "temperature": 1},
      "landmark_fit": {"template": "AFIDs on MNI152NLin2009cAsym", "template_lps_mm": [[x, y, z], ...],
                       "accept_mm": 6},
      "landmark_registration": {"image": "template_head.nii.gz", "brain_mask": "template_brain.nii.gz",
                                "local_radius_mm": 20, "local_max_shift_mm": 6}
    }

- decoding "argmax" (the default, for cards trained on peak-1 heatmaps): the global arg-max with a
  parabola through its neighbours; "soft-argmax": the expected position under the spatial softmax of
  the scores / temperature inside a box of radius_mm around the arg-max.
- fit (optional): a robust similarity fit of the template points (one per landmark, in the card's
  order, LPS mm) to the detections; a detection is kept where it lies within accept_mm of its
  fitted template point, else the fitted point is answered (nnmamba/inference/landmark_fit.py).
- registration (optional, needs the fit's template): the template's head image (files beside the
  card, the image the template points were marked on) registered onto the scan from the fit's pose,
  each point then refined locally (nnmamba/inference/template_registration.py); every point is
  answered from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

DECODING_METHODS = ("argmax", "soft-argmax")


@dataclass(frozen=True)
class LandmarkDecoding:
    method: str = "argmax"
    radius_mm: float = 20.0           # soft-argmax: half the side of the box around the arg-max
    temperature: float = 1.0          # soft-argmax: scores are divided by it before the softmax


@dataclass(frozen=True)
class LandmarkFitSettings:
    template_lps_mm: tuple            # n (x, y, z) LPS mm, one per landmark in the card's order
    accept_mm: float = 6.0            # a detection this close to its fitted template point is kept
    inlier_mm: float = 10.0           # the minimal-set hypotheses' truncation of the residuals
    tukey_mm: float = 12.0            # residuals beyond this get no weight in the refinement
    min_inliers: int = 8              # fewer detections agreeing with the fit: answer the detections
                                      # (default: 8, or every landmark of a card with fewer)
    template: str = ""                # what the template is and where its points come from


@dataclass(frozen=True)
class LandmarkRegistration:
    image: str                        # the template's head image, a file beside the card
    brain_mask: str                   # its brain mask (where the global registration looks)
    local_radius_mm: float = 20.0     # each point's neighbourhood for the local refinement (0: none)
    local_max_shift_mm: float = 6.0   # a local shift beyond this is not believed


def _positive(settings: dict, key: str, default: float, where: str, allow_zero: bool = False) -> float:
    value = settings.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{where}.{key} must be a number {'>=' if allow_zero else '>'} 0, got {value!r}")
    return float(value)


def _section(inference: dict, key: str) -> Optional[dict]:
    """inference[key] when the card declares it (it must be an object), else None."""
    settings = inference.get(key)
    if settings is not None and not isinstance(settings, dict):
        raise ValueError(f"inference.{key} must be an object, got {settings!r}")
    return settings


def parse_landmark_decoding(inference: dict) -> LandmarkDecoding:
    settings = inference.get("landmark_decoding") or {}
    where = "inference.landmark_decoding"
    if not isinstance(settings, dict):
        raise ValueError(f"{where} must be an object, got {settings!r}")
    method = settings.get("method", "argmax")
    if method not in DECODING_METHODS:
        raise ValueError(f"{where}.method must be one of {list(DECODING_METHODS)}, got {method!r}")
    return LandmarkDecoding(method, _positive(settings, "radius_mm", LandmarkDecoding.radius_mm, where),
                            _positive(settings, "temperature", LandmarkDecoding.temperature, where))


def parse_landmark_fit(inference: dict, count: int) -> Optional[LandmarkFitSettings]:
    """The card's fit settings (None when it declares none); `count`: the card's number of landmarks."""
    where = "inference.landmark_fit"
    settings = _section(inference, "landmark_fit")
    if settings is None:
        return None
    points = settings.get("template_lps_mm")
    if (not isinstance(points, list) or len(points) != count
            or not all(isinstance(p, list) and len(p) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in p)
                for p in points)):
        raise ValueError(f"{where}.template_lps_mm must list one [x, y, z] (finite, LPS mm) per landmark "
                         f"({count}), got {str(points)[:80]}")
    if count < 3:
        raise ValueError(f"{where}: a similarity fit needs at least 3 landmarks, the card has {count}")
    min_inliers = settings.get("min_inliers", min(LandmarkFitSettings.min_inliers, count))
    if isinstance(min_inliers, bool) or not isinstance(min_inliers, int) or not 3 <= min_inliers <= count:
        raise ValueError(f"{where}.min_inliers must be an integer in 3..{count}, got {min_inliers!r}")
    return LandmarkFitSettings(
        template_lps_mm=tuple(tuple(float(v) for v in p) for p in points),
        accept_mm=_positive(settings, "accept_mm", LandmarkFitSettings.accept_mm, where, allow_zero=True),
        inlier_mm=_positive(settings, "inlier_mm", LandmarkFitSettings.inlier_mm, where),
        tukey_mm=_positive(settings, "tukey_mm", LandmarkFitSettings.tukey_mm, where),
        min_inliers=min_inliers, template=str(settings.get("template", "")))


def parse_landmark_registration(inference: dict) -> Optional[LandmarkRegistration]:
    """The card's registration settings (None when it declares none)."""
    where = "inference.landmark_registration"
    settings = _section(inference, "landmark_registration")
    if settings is None:
        return None
    if inference.get("landmark_fit") is None:
        raise ValueError(f"{where} needs inference.landmark_fit: its template points are what is registered")
    files = {}
    for key in ("image", "brain_mask"):
        name = settings.get(key)
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
            raise ValueError(f"{where}.{key} must name a file beside the card, got {name!r}")
        files[key] = name
    return LandmarkRegistration(
        **files, local_radius_mm=_positive(settings, "local_radius_mm", LandmarkRegistration.local_radius_mm, where,
                                           allow_zero=True),
        local_max_shift_mm=_positive(settings, "local_max_shift_mm", LandmarkRegistration.local_max_shift_mm, where))
