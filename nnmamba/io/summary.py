"""A PNG summary: three orthogonal slices with the segmentation overlay and landmark marks, and a
bar chart of class probabilities. matplotlib (Agg backend) is imported only here."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import SimpleITK as sitk

from nnmamba.io.atomic import write_atomically
from nnmamba.io.volumes import geometry_of, image_from_array
from nnmamba.model_card import NOT_FOR_CLINICAL_USE
from nnmamba.results import ClassificationResult, LandmarkResult, SegmentationResult
from nnmamba.volume import Volume


def _to_lps(array: np.ndarray, volume: Volume, nearest: bool = False):
    """Array on the volume's grid -> (array, geometry) permuted/flipped to the closest LPS axes."""
    image = sitk.DICOMOrient(image_from_array(array, volume.geometry), "LPS")
    return sitk.GetArrayFromImage(image), geometry_of(image)


def _overlay(labels: np.ndarray, segments: list) -> np.ndarray:
    rgba = np.zeros(labels.shape + (4,), dtype=np.float32)
    for seg in segments:
        mask = labels == seg.label
        rgba[mask, :3] = seg.color
        rgba[mask, 3] = 0.45
    return rgba


def write_summary(volume: Volume, results: dict, path: Path, title: str = "",
                  warning: Optional[str] = None) -> Path:
    """Render `results` (task -> result) over `volume` into a PNG at `path` (atomically).

    `warning` (the models' quality, in words) is drawn in red under the title; every picture says
    NOT_FOR_CLINICAL_USE at its foot, as it may be looked at far from the tool that made it."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    image = volume.array[0] if volume.array.ndim == 4 else volume.array
    array, geometry = _to_lps(image.astype(np.float32), volume)
    seg = next((r for r in results.values() if isinstance(r, SegmentationResult)), None)
    marks = next((r for r in results.values() if isinstance(r, LandmarkResult)), None)
    cls = next((r for r in results.values() if isinstance(r, ClassificationResult)), None)
    labels = _to_lps(seg.labelmap.astype(np.int16), volume)[0] if seg is not None else None

    lo, hi = np.percentile(array, [1, 99.5])
    k, j, i = (s // 2 for s in array.shape)
    sx, sy, sz = geometry.spacing
    views = [  # (title, slice of [k, j, i], aspect (row mm / column mm), origin, index axes shown)
        ("axial", (k, slice(None), slice(None)), sy / sx, "upper", (0, 1)),
        ("coronal", (slice(None), j, slice(None)), sz / sx, "lower", (0, 2)),
        ("sagittal", (slice(None), slice(None), i), sz / sy, "lower", (1, 2)),
    ]
    columns = 4 if cls is not None else 3
    fig, axes = plt.subplots(1, columns, figsize=(4.2 * columns, 4.6))
    for ax, (name, index, aspect, origin, shown) in zip(axes, views):
        ax.imshow(array[index], cmap="gray", vmin=lo, vmax=hi, aspect=aspect, origin=origin,
                  interpolation="nearest")
        if labels is not None:
            ax.imshow(_overlay(labels[index], seg.segments), aspect=aspect, origin=origin,
                      interpolation="nearest")
        if marks is not None and len(marks.names):
            ijk = geometry.physical_to_index(marks.points_lps)
            ax.scatter(ijk[:, shown[0]], ijk[:, shown[1]], s=14, c="cyan", edgecolors="black",
                       linewidths=0.5)
        ax.set_title(name)
        ax.set_axis_off()
    if cls is not None:
        ax = axes[3]
        order = np.argsort(cls.probabilities)
        ax.barh([cls.class_names[n] for n in order], cls.probabilities[order], color="tab:blue")
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability")
        ax.set_title("scan type")
    if seg is not None and seg.segments:
        handles = [plt.Rectangle((0, 0), 1, 1, color=s.color) for s in seg.segments]
        fig.legend(handles, [s.name for s in seg.segments], loc="lower center",
                   ncol=min(len(handles), 8), fontsize=8, frameon=False)
    heading = title + (f"\n{warning}" if warning else "")
    fig.suptitle(heading, color="red" if warning else "black", fontsize=10)
    fig.text(0.99, 0.01, NOT_FOR_CLINICAL_USE, ha="right", va="bottom", color="red", fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 0.93))

    def render(tmp: Path) -> None:
        fig.savefig(str(tmp), format="png", dpi=90)

    try:
        return write_atomically(Path(path), render)
    finally:
        plt.close(fig)
