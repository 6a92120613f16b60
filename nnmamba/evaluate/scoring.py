"""Score one answer (the model's or a baseline's) on one case, and summarise rows of scores.

Both the model and its baseline go through the same functions, so their figures compare like
with like. A row's score is JSON-able:

- segmentation: {"dice": {name: d}, "hd95_mm": {name: h}, "mean_dice": m} over the case's scored labels
- landmarks:    {"errors_mm": [e, ...], "mre_mm": m}
- classification: {"truth": t, "predicted": p, "probabilities": [...], "correct": bool}
"""

from __future__ import annotations

import math

import numpy as np

from nnmamba import metrics
from nnmamba.model_card import ModelCard

WITHIN_MM = 4.0


def prepared_to_card_labels(labels: np.ndarray, segments: list, card: ModelCard) -> np.ndarray:
    """Prepared labels (manifest 'segments' values) [k, j, i] -> the card's label values, matched by name."""
    by_name = {s.name: s.label for s in card.labels}
    out = np.zeros(labels.shape, np.uint8)
    for segment in segments:
        if segment["name"] in by_name:
            out[labels == segment["label"]] = by_name[segment["name"]]
    return out


def score_segmentation(labelmap: np.ndarray, truth: np.ndarray, scored: list, spacing_kji) -> dict:
    """scored: [(card label value, name)] of the structures this case's ground truth has."""
    values = metrics.segmentation_scores(labelmap, truth, [label for label, _ in scored], spacing_kji)
    dice = {name: values[label]["dice"] for label, name in scored}
    finite = [d for d in dice.values() if not math.isnan(d)]
    return {"dice": dice, "hd95_mm": {name: values[label]["hd95_mm"] for label, name in scored},
            "mean_dice": float(np.mean(finite)) if finite else float("nan")}


def score_landmarks(points_lps: np.ndarray, truth_lps: np.ndarray) -> dict:
    errors = metrics.radial_errors(np.asarray(points_lps), np.asarray(truth_lps))
    return {"errors_mm": errors.tolist(), "mre_mm": float(errors.mean())}


def score_classification(probabilities: np.ndarray, truth: int) -> dict:
    predicted = int(np.argmax(probabilities))
    return {"truth": int(truth), "predicted": predicted, "probabilities": np.asarray(probabilities, float).tolist(),
            "correct": predicted == int(truth)}


def _mean_or_none(values) -> float | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(values)) if values else None


def _per_case(rows: list, scores: list, key: str) -> dict:
    """{case: [score[key] of each of its rows]}: rows and scores go together, one per variant."""
    cases = {}
    for row, score in zip(rows, scores):
        cases.setdefault(row["case"], []).append(score[key])
    return cases


def summarise_segmentation(scores: list, rows: list, card: ModelCard) -> dict:
    """Mean Dice over labels (each label's mean over the rows that score it), per label and per case."""
    per_label = {}
    for segment in card.labels:
        dices = [s["dice"][segment.name] for s in scores if segment.name in s["dice"]]
        hds = [s["hd95_mm"][segment.name] for s in scores if segment.name in s["hd95_mm"]]
        if not dices:
            continue            # no held-out case has this structure's ground truth
        per_label[segment.name] = {"dice": _mean_or_none(dices), "hd95_mm": _mean_or_none(hds),
                                   "missed": int(sum(1 for h in hds if h == math.inf)), "scored_in": len(dices)}
    by_case = _per_case(rows, scores, "mean_dice")
    return {"mean_dice": _mean_or_none(v["dice"] for v in per_label.values()),
            "mean_hd95_mm": _mean_or_none(v["hd95_mm"] for v in per_label.values()),
            "per_case_mean_dice": {case: _mean_or_none(v) for case, v in by_case.items()},
            "per_label": per_label}


def summarise_landmarks(scores: list, rows: list, card: ModelCard) -> dict:
    errors = np.array([s["errors_mm"] for s in scores])          # (rows, landmarks)
    by_case = _per_case(rows, scores, "mre_mm")
    return {"mre_mm": float(errors.mean()), "median_mm": float(np.median(errors)), "sd_mm": float(errors.std()),
            "within_4mm": float((errors <= WITHIN_MM).mean()),
            "per_case_mre_mm": {case: float(np.mean(v)) for case, v in by_case.items()},
            "per_landmark_mm": {lm.name: float(errors[:, n].mean()) for n, lm in enumerate(card.landmarks)}}


def summarise_classification(scores: list, rows: list, card: ModelCard) -> dict:
    names = [c.name for c in card.classes]
    truth = [s["truth"] for s in scores]
    auc = metrics.one_vs_rest_auc(np.array([s["probabilities"] for s in scores]), truth)
    by_case = _per_case(rows, scores, "correct")
    return {"accuracy": metrics.accuracy([s["predicted"] for s in scores], truth),
            "auc": {names[c]: v for c, v in auc.items()},
            "per_case_accuracy": {case: float(np.mean(v)) for case, v in by_case.items()}}
