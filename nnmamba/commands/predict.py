"""`nnmamba predict`: segmentation / landmarks / classification on a volume (or several).

    nnmamba predict t1.nii.gz --output out/                       # every task with its default model
    nnmamba predict t1.nrrd --tasks segmentation --model segmentation=my-seg --tta --output out/
    nnmamba predict t1.nrrd t2.nrrd --tasks segmentation --output out/   # two files = two channels
    nnmamba predict scans/ --each --output out/                   # every volume in a folder, one by one
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from nnmamba.commands._pipeline import (add_inference_arguments, inference_options, print_warning,
                                        progress_bar, report_errors, untrained_warning)
from nnmamba.errors import InputError
from nnmamba.results import Task

log = logging.getLogger("nnmamba.predict")
TASKS = [t.value for t in Task]
IMAGE_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=Path,
                        help="volume file(s) or DICOM series folder(s); several = channels in the "
                             "model card's order (or separate cases with --each)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS, metavar="TASK",
                        help=f"tasks to run (default: all of {', '.join(TASKS)})")
    parser.add_argument("--model", action="append", default=[], metavar="TASK=NAME_OR_PATH",
                        help="model for a task (name from `nnmamba models` or a card .json path)")
    parser.add_argument("--name", help="output file stem (default: the first input's name)")
    parser.add_argument("--each", action="store_true",
                        help="treat each input (and each volume in an input folder) as its own case")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--no-summary", action="store_true", help="skip the PNG summary")
    add_inference_arguments(parser)


def parse_models(pairs) -> dict:
    models = {}
    for pair in pairs:
        task, sep, model = pair.partition("=")
        if not sep or task not in TASKS or not model:
            raise InputError(f"--model must be TASK=NAME_OR_PATH with TASK one of {', '.join(TASKS)}, "
                             f"got {pair!r}")
        models[task] = model
    return models


def _cases(inputs, each: bool) -> list:
    """Lists of paths, one list per case."""
    if not each:
        return [list(inputs)]
    cases = []
    for path in inputs:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
            series = sorted(p for p in path.iterdir() if p.is_dir())
            if files:
                cases += [[p] for p in files]
            elif series:
                cases += [[p] for p in series]      # one DICOM series per sub-folder
            else:
                cases.append([path])                # the folder itself is a DICOM series
        else:
            cases.append([path])
    return cases


@report_errors
def run(args) -> int:
    from nnmamba.inference import Predictor
    from nnmamba.io import check_free, output_paths, read_volume, stem_of, write_results
    from nnmamba.model_card import default_model, find_model

    options = inference_options(args)
    models = parse_models(args.model)
    tasks = list(dict.fromkeys(args.tasks))
    unused = set(models) - set(tasks)
    if unused:
        raise InputError(f"--model given for {sorted(unused)} but --tasks is {tasks}")
    cards = [find_model(models[t]) if t in models else default_model(t) for t in tasks]
    warning = untrained_warning(cards)
    print_warning(warning)
    cases = _cases(args.inputs, args.each)
    if args.name and len(cases) > 1:
        raise InputError("--name names one case's outputs; it cannot be used with several cases (--each)")
    predictor = Predictor(options, scan_backend=args.scan_backend)
    for paths in cases:
        stem = args.name or stem_of(paths[0])
        # Refuse before computing anything when outputs exist.
        check_free(output_paths(args.output, stem, tasks, not args.no_summary), args.overwrite)
        volume = read_volume(paths)
        start = time.perf_counter()
        with progress_bar(stem) as progress:
            results = predictor.run(volume, tasks, {t: c for t, c in zip(tasks, cards)}, progress=progress)
        elapsed = time.perf_counter() - start
        written = write_results(results, volume, args.output, stem, overwrite=args.overwrite,
                                summary=not args.no_summary, warning=warning or None)
        print(f"{stem}: {', '.join(tasks)} in {elapsed:.1f} s")
        for path in written:
            print(f"  {path}")
    return 0
