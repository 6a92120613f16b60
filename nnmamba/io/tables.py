"""Classification results as JSON (class -> probability) and a TSV table Slicer loads; the volume of
each segmented structure as a TSV table."""

from __future__ import annotations

import json
from pathlib import Path

from nnmamba.io.atomic import write_text_atomically
from nnmamba.metrics import segment_volumes
from nnmamba.results import ClassificationResult, SegmentationResult

VOLUMES_HEADER = "label\tsegment\tvoxels\tvolume_mL"


def probabilities_dict(result: ClassificationResult) -> dict:
    return {
        "model": result.model,
        "top_class": result.top_class,
        "probabilities": {name: float(p) for name, p in zip(result.class_names, result.probabilities)},
    }


def probabilities_tsv(result: ClassificationResult) -> str:
    rows = ["class\tprobability"]
    rows += [f"{name}\t{float(p):.6f}" for name, p in zip(result.class_names, result.probabilities)]
    return "\n".join(rows) + "\n"


def write_probabilities_json(result: ClassificationResult, path: Path) -> Path:
    return write_text_atomically(Path(path), json.dumps(probabilities_dict(result), indent=2) + "\n")


def write_probabilities_tsv(result: ClassificationResult, path: Path) -> Path:
    return write_text_atomically(Path(path), probabilities_tsv(result))


def segment_volumes_tsv(result: SegmentationResult) -> str:
    rows = [VOLUMES_HEADER]
    rows += [f"{label}\t{name}\t{voxels}\t{ml:.3f}"
             for label, name, voxels, ml in segment_volumes(result.labelmap, result.geometry.spacing, result.segments)]
    return "\n".join(rows) + "\n"


def write_segment_volumes_tsv(result: SegmentationResult, path: Path) -> Path:
    return write_text_atomically(Path(path), segment_volumes_tsv(result))
