"""All output files of one prediction, named `<stem>.<kind>`, written only if none would clobber."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from nnmamba.io.atomic import check_free
from nnmamba.io.markups import write_markups
from nnmamba.io.segmentation import write_segmentation
from nnmamba.io.summary import write_summary
from nnmamba.io.tables import write_probabilities_json, write_probabilities_tsv, write_segment_volumes_tsv
from nnmamba.results import ClassificationResult, LandmarkResult, SegmentationResult, Task
from nnmamba.volume import Volume

log = logging.getLogger(__name__)

SUFFIXES = {
    Task.SEGMENTATION.value: [".seg.nrrd", ".volumes.tsv"],
    Task.LANDMARKS.value: [".mrk.json"],
    Task.CLASSIFICATION.value: [".probabilities.json", ".probabilities.tsv"],
}
SUMMARY_SUFFIX = ".summary.png"


def output_paths(output_dir: Path, stem: str, tasks, summary: bool = True) -> list:
    paths = [Path(output_dir) / f"{stem}{suffix}" for task in tasks for suffix in SUFFIXES[task]]
    if summary:
        paths.append(Path(output_dir) / f"{stem}{SUMMARY_SUFFIX}")
    return paths


def stem_of(path: Path) -> str:
    """`brain.nii.gz` -> `brain`; a DICOM folder -> its name."""
    name = Path(path).name
    for ext in (".nii.gz", ".seg.nrrd", ".nrrd", ".nii", ".mha", ".mhd", ".nhdr", ".dcm"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return name


def write_results(results: dict, volume: Volume, output_dir: Path, stem: str, overwrite: bool = False,
                  summary: bool = True, warning: Optional[str] = None) -> list:
    """Write every result of `results` (task -> result); refuse before writing anything if any
    output exists and not `overwrite`. Returns the written paths."""
    output_dir = Path(output_dir)
    check_free(output_paths(output_dir, stem, list(results), summary), overwrite)
    written = []
    base = output_dir / stem
    for task, result in results.items():
        if isinstance(result, SegmentationResult):
            written.append(write_segmentation(result, Path(f"{base}.seg.nrrd")))
            written.append(write_segment_volumes_tsv(result, Path(f"{base}.volumes.tsv")))
        elif isinstance(result, LandmarkResult):
            written.append(write_markups(result, Path(f"{base}.mrk.json")))
        elif isinstance(result, ClassificationResult):
            written.append(write_probabilities_json(result, Path(f"{base}.probabilities.json")))
            written.append(write_probabilities_tsv(result, Path(f"{base}.probabilities.tsv")))
        else:
            raise TypeError(f"unknown result type for task {task}: {type(result).__name__}")
    if summary:
        title = f"{stem}: " + ", ".join(getattr(r, "model", "") or t for t, r in results.items())
        written.append(write_summary(volume, results, Path(f"{base}{SUMMARY_SUFFIX}"), title, warning))
    for path in written:
        log.info("wrote %s", path)
    return written
