"""The output plan of a run: every case's output files, checked before anything is computed.

A run over many inputs must not find out half-way that two cases write the same files (`a.nii.gz`
and `a.nrrd` both give `a.seg.nrrd`: the second stopped the run with "output exists", or with
`--overwrite` silently replaced the first's results), that an output would replace one of the
inputs, or that the output folder lies inside an input folder (the next run over that folder
would take `a.seg.nrrd` as a new case). So the whole plan is made and checked first.

Example:
    >>> plan = plan_outputs([["in/a.nii.gz"], ["in/b.nrrd"]], "out", ["segmentation"], summary=False)
    >>> [(case.stem, [p.name for p in case.outputs]) for case in plan]
    [('a', ['a.seg.nrrd']), ('b', ['b.seg.nrrd'])]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from nnmamba.errors import InputError
from nnmamba.io.outputs import output_paths, stem_of
from nnmamba.io.paths import check_encodable_paths, same_file


@dataclass(frozen=True)
class PlannedCase:
    stem: str
    inputs: tuple     # Paths: one per channel (a file or a DICOM series folder)
    outputs: tuple    # Paths this case writes


def plan_outputs(cases: Sequence[Sequence], output_dir, tasks: Sequence[str], summary: bool = True,
                 name: Optional[str] = None) -> list:
    """One `PlannedCase` per case (a list of input paths); raises `InputError` before anything is
    computed when names cannot be written, or when outputs collide or would replace an input."""
    planned = []
    for paths in cases:
        stem = name or stem_of(paths[0])
        planned.append(PlannedCase(stem, tuple(map(Path, paths)),
                                   tuple(output_paths(Path(output_dir), stem, tasks, summary))))
    check_encodable_paths([p for case in planned for p in case.inputs], "input")
    check_encodable_paths([p for case in planned for p in case.outputs], "output")
    check_distinct_stems(planned)
    check_outputs_spare_inputs(planned)
    return planned


def check_distinct_stems(planned: Sequence[PlannedCase]) -> None:
    """Refuse cases whose outputs would share names. Names equal but for case collide too: on
    macOS and Windows file systems `A.seg.nrrd` and `a.seg.nrrd` are one file."""
    by_key: dict = {}
    for case in planned:
        by_key.setdefault(case.stem.casefold(), []).append(case)
    clashes = [cases for cases in by_key.values() if len(cases) > 1]
    if clashes:
        shown = "; ".join(" and ".join(str(c.inputs[0]) for c in cases) + f" -> {cases[0].stem}.*"
                          for cases in clashes[:5])
        raise InputError(f"several inputs would write the same output files ({shown}); rename them, "
                         f"run them separately, or give separate --output folders (nothing was computed)")


def check_outputs_spare_inputs(planned: Sequence[PlannedCase]) -> None:
    """Refuse a plan in which an output file is one of the inputs (even with --overwrite)."""
    inputs = [p for case in planned for p in case.inputs]
    for case in planned:
        for output in case.outputs:
            hit = next((p for p in inputs if same_file(p, output)), None)
            if hit is not None:
                raise InputError(f"output {output} would replace the input {hit}; give another --output "
                                 f"folder (nothing was computed)")


def check_output_outside_inputs(output_dir, inputs: Sequence, allowed: bool = False) -> None:
    """Refuse an output folder that is (inside) an input folder, unless `allowed`.

    Writing results into the folder a run reads mixes them with the scans; the option that allows
    it is named in the message."""
    if allowed:
        return
    output = Path(os.path.abspath(output_dir))
    for folder in (Path(p) for p in inputs):
        if not folder.is_dir():
            continue
        folder = Path(os.path.abspath(folder))
        if output == folder or folder in output.parents or _inside_through_links(output, folder):
            raise InputError(f"--output {output_dir} is inside the input folder {folder}; results would be "
                             f"mixed with the scans. Give an output folder outside it, or pass "
                             f"--allow-output-in-input if that is what you want (nothing was computed)")


def _inside_through_links(output: Path, folder: Path) -> bool:
    """`output` (or its nearest existing parent) lies in `folder` once symbolic links are resolved."""
    existing = next((p for p in [output, *output.parents] if p.exists()), None)
    if existing is None:
        return False
    resolved, root = existing.resolve(), folder.resolve()
    return resolved == root or root in resolved.parents
