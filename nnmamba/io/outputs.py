"""All output files of one prediction, named `<stem><suffix>`, written only if none would clobber.

Each task names its files and writes them (`nnmamba.tasks`: `suffixes`, `write`); this module adds
the summary PNG and the all-or-nothing check before anything is written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from nnmamba.io.atomic import check_free
from nnmamba.io.summary import write_summary
from nnmamba.io.formats import DICOM_SUFFIX, IMAGE_SUFFIXES
from nnmamba.tasks import get_task, task_names
from nnmamba.volume import Volume

log = logging.getLogger(__name__)

SUMMARY_SUFFIX = ".summary.png"


def output_paths(output_dir: Path, stem: str, tasks, summary: bool = True) -> list:
    paths = [Path(output_dir) / f"{stem}{suffix}" for task in tasks for suffix in get_task(task).suffixes]
    if summary:
        paths.append(Path(output_dir) / f"{stem}{SUMMARY_SUFFIX}")
    return paths


def stem_of(path: Path) -> str:
    """`brain.nii.gz` -> `brain`, `brain.seg.nrrd` -> `brain`; a DICOM folder -> its name."""
    name = Path(path).name
    known = IMAGE_SUFFIXES + (DICOM_SUFFIX,) + tuple(s for task in task_names() for s in get_task(task).suffixes)
    for ext in sorted(known, key=len, reverse=True):   # the longest first: .seg.nrrd before .nrrd
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
        definition = get_task(task)
        if not isinstance(result, definition.result_type):
            raise TypeError(f"unknown result type for task {task}: {type(result).__name__}")
        written += definition.write(result, base)
    if summary:
        title = f"{stem}: " + ", ".join(getattr(r, "model", "") or t for t, r in results.items())
        written.append(write_summary(volume, results, Path(f"{base}{SUMMARY_SUFFIX}"), title, warning))
    for path in written:
        log.info("wrote %s", path)
    return written
