"""`nnmamba predict`: segmentation / landmarks / classification on a volume (or several).

    nnmamba predict --input t1.nii.gz --output out/               # every task with its default model
    nnmamba predict -i t1.nrrd --tasks segmentation --model my-seg --tta --output out/
    nnmamba predict -i t1.nrrd -i t2.nrrd --tasks segmentation -o out/  # two files = two channels
    nnmamba predict -i scans/ -o out/          # a folder of volume files: each one is a case
    nnmamba predict -i dicom_series/ -o out/   # a DICOM series folder: one case
    torchrun --nproc_per_node 4 -m nnmamba predict -i scans/ -o out/ [--resume]  # a cohort (commands/cohort.py)
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from nnmamba.commands import cohort
from nnmamba.commands._pipeline import (add_inference_arguments, inference_options, predict_case, print_warning,
                                        progress_bar, report_errors, untrained_warning)
from nnmamba.errors import InputError
from nnmamba.io.formats import IMAGE_SUFFIXES
from nnmamba.tasks import task_names

log = logging.getLogger("nnmamba.predict")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", type=Path, metavar="INPUT",
                        help="same as --input")
    parser.add_argument("-i", "--input", dest="input_list", action="extend", nargs="+", type=Path,
                        default=[], metavar="FILE_OR_DIR",
                        help="volume file, DICOM series folder or folder of volume files; several "
                             "files = channels in the model card's order (or separate cases with --each)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    parser.add_argument("--tasks", action="extend", nargs="+", type=_split_commas, default=None,
                        metavar="TASK", help=f"tasks to run, comma- or space-separated "
                                             f"(default: all of {','.join(task_names())})")
    parser.add_argument("--model", action="append", default=[], metavar="NAME_OR_PATH",
                        help="model (name from `nnmamba models` or a card .json path; its card "
                             "names its task), or TASK=NAME_OR_PATH; repeat for several tasks")
    parser.add_argument("--name", help="output file stem (default: the first input's name)")
    parser.add_argument("--each", action="store_true",
                        help="treat each input (and each volume in an input folder) as its own case")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--no-summary", action="store_true", help="skip the PNG summary")
    cohort.add_arguments(parser)
    add_inference_arguments(parser)


def _split_commas(text: str) -> list:
    names = [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in task_names():
            raise argparse.ArgumentTypeError(f"unknown task {name!r}; expected some of {','.join(task_names())}")
    return names


def parse_models(values) -> dict:
    """`--model` values -> {task: name_or_path}; a bare name takes its task from its card."""
    from nnmamba.model_card import find_model

    models = {}
    for value in values:
        task, sep, model = value.partition("=")
        if sep and task in task_names() and model:
            models[task] = model
        elif sep and not Path(value).exists():
            raise InputError(f"--model must be NAME_OR_PATH or TASK=NAME_OR_PATH with TASK one of "
                             f"{', '.join(task_names())}, got {value!r}")
        else:
            models[find_model(value).task] = value
    return models


def _requested_tasks(args, models: dict) -> list:
    if args.tasks:
        return list(dict.fromkeys(t for group in args.tasks for t in group))
    # Without --tasks: the tasks of the models given, else every task.
    return list(models) if models else task_names()


def _is_volume_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def _cases(inputs, each: bool) -> list:
    """Lists of paths, one list per case. A folder holding volume files is a batch of cases."""
    if not each:
        if len(inputs) == 1 and inputs[0].is_dir() and any(_is_volume_file(p) for p in inputs[0].iterdir()):
            return [[p] for p in sorted(inputs[0].iterdir()) if _is_volume_file(p)]
        return [list(inputs)]
    cases = []
    for path in inputs:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if _is_volume_file(p))
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


def check_output_folder(output: Path) -> None:
    """Refuse an `--output` that cannot be a folder we write into, before anything is computed.

    Without this an existing file named by --output (or a file where one of its parent folders
    should be) only failed when the results were written, after the whole compute, with a Traceback.
    """
    output = Path(output)
    for path in [output, *output.parents]:
        if path.exists():
            if not path.is_dir():
                what = "is" if path == output else f"has {path} as a parent folder, but that is"
                raise InputError(f"--output must be a folder; {output} {what} an existing file "
                                 f"(pass a folder path; nothing was written)")
            if not os.access(path, os.W_OK | os.X_OK):
                raise InputError(f"--output {output}: cannot write into {path} (permission denied); "
                                 f"pass a folder you can write to (nothing was written)")
            return


@report_errors
def run(args) -> int:
    from nnmamba.inference import Predictor
    from nnmamba.inference.backend_flags import configure_for_inference
    from nnmamba.io import check_free, output_paths, stem_of
    from nnmamba.model_card import default_model, find_model

    options = inference_options(args)
    models = parse_models(args.model)
    tasks = _requested_tasks(args, models)
    inputs = list(args.inputs) + list(args.input_list)
    if not inputs:
        raise InputError("no input given; pass --input FILE_OR_DIR (a volume file, a DICOM series "
                         "folder or a folder of volume files)")
    unused = set(models) - set(tasks)
    if unused:
        raise InputError(f"--model given for {sorted(unused)} but --tasks is {tasks}")
    cards = [find_model(models[t]) if t in models else default_model(t) for t in tasks]
    warning = untrained_warning(cards)
    print_warning(warning)
    check_output_folder(args.output)
    cases = _cases(inputs, args.each)
    if args.name and len(cases) > 1:
        raise InputError("--name names one case's outputs; it cannot be used with several cases (--each)")
    if cohort.requested(args):  # under torchrun or --resume: shares per rank, markers, summary
        return cohort.run(args, cases, tasks, cards, warning)
    predictor = Predictor(options, scan_backend=args.scan_backend)
    configure_for_inference(predictor.device)
    for paths in cases:
        stem = args.name or stem_of(paths[0])
        # Refuse before computing anything when outputs exist.
        check_free(output_paths(args.output, stem, tasks, not args.no_summary), args.overwrite)
        with progress_bar(stem) as progress:
            case = predict_case(predictor, paths, stem, dict(zip(tasks, cards)), args.output, args.overwrite,
                                not args.no_summary, warning, progress)
        stages = stage_seconds(case.results, case.read_s, case.write_s)
        log.info("%s: stages %s", stem, stages)
        print(f"{stem}: {', '.join(tasks)} in {case.compute_s:.1f} s "
              f"({', '.join(f'{name} {seconds:.2f} s' for name, seconds in stages.items())})")
        for path in case.written:
            print(f"  {path}")
    return 0


def stage_seconds(results: dict, read_s: float, write_s: float) -> dict:
    """Seconds per stage of one case: read, the predictor's stages summed over tasks, write."""
    stages = {"read": read_s}
    for result in results.values():
        for name, seconds in result.timings.items():
            stage = name[:-2] if name.endswith("_s") else name
            stages[stage] = stages.get(stage, 0.0) + seconds
    stages["write"] = write_s
    return stages
