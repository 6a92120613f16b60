"""`nnmamba demo`: every shipped task on the embedded sample brain MR, with timings.

    nnmamba demo --output outputs/demo --overwrite
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


from nnmamba.commands._pipeline import (add_inference_arguments, inference_options, print_warning,
                                        progress_bar, report_errors, untrained_warning)
from nnmamba.tasks import BUILTIN, get_task

STEM = "sample_brain_mr"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--input", type=Path, help="another volume instead of the embedded sample")
    add_inference_arguments(parser)


@report_errors
def run(args) -> int:
    from nnmamba.data import sample_volume_path
    from nnmamba.inference import Predictor
    from nnmamba.io import check_free, output_paths, read_volume, stem_of, write_results
    from nnmamba.model_card import default_model

    tasks = list(BUILTIN)   # the shipped tasks, each with a shipped model
    cards = {t: default_model(t) for t in tasks}
    warning = untrained_warning(cards.values())
    print_warning(warning)
    source = args.input or sample_volume_path()
    stem = stem_of(source) if args.input else STEM
    check_free(output_paths(args.output, stem, tasks), args.overwrite)
    volume = read_volume(source)
    print(f"input: {source} ({'x'.join(map(str, volume.shape_kji[::-1]))} voxels, "
          f"{'x'.join(f'{s:.2f}' for s in volume.geometry.spacing)} mm)")
    predictor = Predictor(inference_options(args), scan_backend=args.scan_backend)
    results, timings = {}, {}
    for task in tasks:
        start = time.perf_counter()
        with progress_bar(task) as progress:
            results.update(predictor.run(volume, [task], {task: cards[task]}, progress=progress, checked=True))
        timings[task] = time.perf_counter() - start
        print(f"{task:15s} {cards[task].name:22s} {timings[task]:6.1f} s   " + "; ".join(get_task(task).describe(results[task])))
    print(f"{'total':15s} {'':22s} {sum(timings.values()):6.1f} s on {predictor.device}")
    for path in write_results(results, volume, args.output, stem, overwrite=args.overwrite,
                              warning=warning or None):
        print(f"  {path}")
    print_warning(warning)
    return 0
