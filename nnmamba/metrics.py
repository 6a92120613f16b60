"""Accuracy measures for the three tasks: Dice and HD95 per label, radial error per landmark,
accuracy and ROC AUC per class; and the volume of each segmented structure. numpy + SimpleITK only (no torch), so evaluation scripts and
tests can use them anywhere.

Example:
    >>> import numpy as np
    >>> a = np.zeros((4, 4, 4), np.uint8); a[1:3, 1:3, 1:3] = 1
    >>> round(dice(a, a, 1), 3)
    1.0
    >>> radial_errors(np.array([[0., 0, 0]]), np.array([[3., 4, 0]])).tolist()
    [5.0]
    >>> segment_volumes(a, (0.5, 0.5, 2.0), [(1, "brain")])
    [(1, 'brain', 8, 0.004)]
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def dice(prediction: np.ndarray, truth: np.ndarray, label: int) -> float:
    """Dice of one label between two labelmaps of the same shape; NaN when both lack the label."""
    if prediction.shape != truth.shape:
        raise ValueError(f"labelmaps must have the same shape, got {prediction.shape} and {truth.shape}")
    p, t = prediction == label, truth == label
    total = int(p.sum()) + int(t.sum())
    if total == 0:
        return float("nan")
    return 2.0 * float(np.logical_and(p, t).sum()) / total


def _surface_distances(source: np.ndarray, target: np.ndarray, spacing_kji: Sequence[float]) -> np.ndarray:
    """Distances (mm) from every surface voxel of `source` to the surface of `target`."""
    import SimpleITK as sitk    # here, not at import: Dice, errors and accuracy run where SimpleITK is absent

    def image(mask):
        img = sitk.GetImageFromArray(mask.astype(np.uint8))
        img.SetSpacing([float(s) for s in spacing_kji[::-1]])
        return img

    target_distance = sitk.Abs(sitk.SignedMaurerDistanceMap(image(target), insideIsPositive=False,
                                                             squaredDistance=False, useImageSpacing=True))
    source_surface = sitk.GetArrayFromImage(sitk.LabelContour(image(source), fullyConnected=True)) > 0
    return sitk.GetArrayFromImage(target_distance)[source_surface]


def hausdorff95(prediction: np.ndarray, truth: np.ndarray, label: int,
                spacing_kji: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """95th percentile of the symmetric surface distance (mm) of one label.

    NaN when both lack the label, +inf when exactly one of them does (a missed structure).
    `spacing_kji` is the voxel size along the array axes (k, j, i).
    """
    p, t = prediction == label, truth == label
    if not p.any() and not t.any():
        return float("nan")
    if not p.any() or not t.any():
        return float("inf")
    distances = np.concatenate([_surface_distances(p, t, spacing_kji), _surface_distances(t, p, spacing_kji)])
    return float(np.percentile(distances, 95))


def segmentation_scores(prediction: np.ndarray, truth: np.ndarray, labels: Sequence[int],
                        spacing_kji: Sequence[float]) -> dict:
    """{label: {"dice": d, "hd95_mm": h}} for every label."""
    return {int(label): {"dice": dice(prediction, truth, label),
                         "hd95_mm": hausdorff95(prediction, truth, label, spacing_kji)} for label in labels}


def segment_volumes(labelmap: np.ndarray, spacing_mm: Sequence[float], segments) -> list:
    """(label, name, voxels, millilitres) per segment, in the order given; `segments` holds
    (label, name) pairs (or SegmentInfo). `spacing_mm` is the voxel size; 1 mL = 1000 mm³."""
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if spacing.shape != (3,) or not np.all(spacing > 0):
        raise ValueError(f"spacing_mm must be three positive sizes, got {list(np.ravel(spacing))}")
    counts = np.bincount(np.asarray(labelmap).ravel().astype(np.int64)) if np.asarray(labelmap).size else np.zeros(1)
    millilitres_per_voxel = float(np.prod(spacing)) / 1000.0
    rows = []
    for segment in segments:
        label, name = (segment.label, segment.name) if hasattr(segment, "label") else segment
        voxels = int(counts[label]) if 0 < label < counts.size else 0
        rows.append((int(label), str(name), voxels, round(voxels * millilitres_per_voxel, 6)))
    return rows


def radial_errors(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Euclidean distance per landmark; predicted, truth: (n, 3) in mm -> (n,)."""
    predicted, truth = np.asarray(predicted, float), np.asarray(truth, float)
    if predicted.shape != truth.shape or predicted.ndim != 2 or predicted.shape[1] != 3:
        raise ValueError(f"landmarks must be two (n, 3) arrays of the same shape, got {predicted.shape} "
                         f"and {truth.shape}")
    return np.linalg.norm(predicted - truth, axis=1)


def accuracy(predicted: Sequence[int], truth: Sequence[int]) -> float:
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.shape != truth.shape or predicted.size == 0:
        raise ValueError(f"need two equally long non-empty label lists, got {predicted.shape} and {truth.shape}")
    return float((predicted == truth).mean())


def roc_auc(scores: Sequence[float], positives: Sequence[bool]) -> Optional[float]:
    """Area under the ROC curve (Mann-Whitney U, ties count half); None if one class is absent."""
    scores = np.asarray(scores, float)
    positives = np.asarray(positives, bool)
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    pos, neg = scores[positives], scores[~positives]
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (n_pos * n_neg))


def one_vs_rest_auc(probabilities: np.ndarray, truth: Sequence[int]) -> dict:
    """{class index: AUC of that class against the rest} from (n, classes) probabilities."""
    probabilities = np.asarray(probabilities, float)
    truth = np.asarray(truth)
    return {c: roc_auc(probabilities[:, c], truth == c) for c in range(probabilities.shape[1])}
