"""What the pipeline commands (predict, demo, models, import-checkpoint) share: exit codes,
user-error reporting without tracebacks, the inference options on the command line, a tqdm
progress bar, the loud warning for untrained weights, and one case's read -> run -> write
(`predict_case`, what predict and its cohort mode both run)."""

from __future__ import annotations

import argparse
import enum
import logging
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from nnmamba.errors import (BackendUnavailableError, Cancelled, InputError, ModelError, NNMambaError,
                            OutputExistsError)

log = logging.getLogger("nnmamba")


class ExitCode(enum.IntEnum):
    OK = 0
    ERROR = 1
    BAD_INPUT = 2
    BAD_MODEL = 3
    OUTPUT_EXISTS = 4
    BACKEND_UNAVAILABLE = 5
    OUT_OF_MEMORY = 6
    CANCELLED = 130


EXIT_CODES = {InputError: ExitCode.BAD_INPUT, ModelError: ExitCode.BAD_MODEL,
              OutputExistsError: ExitCode.OUTPUT_EXISTS,
              BackendUnavailableError: ExitCode.BACKEND_UNAVAILABLE, Cancelled: ExitCode.CANCELLED}


def exit_code_for(error: NNMambaError) -> ExitCode:
    for cls, code in EXIT_CODES.items():
        if isinstance(error, cls):
            return code
    return ExitCode.ERROR


def report_errors(run):
    """Decorator for a command's `run(args)`: our errors -> one line on stderr + exit code."""
    def wrapped(args) -> int:
        try:
            return int(run(args) or 0)
        except NNMambaError as e:
            print(f"nnmamba: error ({e.code}): {e}", file=sys.stderr)
            return int(exit_code_for(e))
        except KeyboardInterrupt:
            print("nnmamba: interrupted", file=sys.stderr)
            return int(ExitCode.CANCELLED)
        except Exception as e:  # noqa: BLE001 - only to word CUDA OOM; everything else re-raises
            torch = sys.modules.get("torch")   # no torch imported -> it cannot be a CUDA OOM
            if torch is not None and isinstance(e, torch.cuda.OutOfMemoryError):
                print(f"nnmamba: error (out_of_memory): the device ran out of memory ({e}); try "
                      f"--tile-batch 1, --stitch-device cpu or --device cpu", file=sys.stderr)
                return int(ExitCode.OUT_OF_MEMORY)
            raise
    wrapped.__doc__ = run.__doc__
    return wrapped


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inference")
    group.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:N")
    group.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                       help="mirror test-time augmentation (slower; off by default)")
    group.add_argument("--overlap", type=float, default=0.5, help="tile overlap, 0 <= overlap < 1")
    group.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    group.add_argument("--tile-batch", type=_tile_batch, default="auto",
                       help="tiles per forward pass, or auto: as many as fit in the free GPU memory "
                            "(at most 8; 2 on the CPU)")
    group.add_argument("--stitch-device", default="auto",
                       help="where the stitched volume lives: auto, cpu or the device")
    group.add_argument("--scan-backend", default="auto",
                       help="selective-scan backend: auto, reference, torch, mamba_ssm, ...")


def _tile_batch(text: str):
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer, got {text!r}") from None


def check_scan_backend_option(name: str) -> None:
    """Refuse an unknown `--scan-backend` (or $NNMAMBA_SCAN_BACKEND under "auto") naming the
    option, before any model is built: the networks would report it as a bad model card."""
    from nnmamba.ssm import backends

    requested, source = backends.requested_backend(name)
    if requested == backends.AUTO or requested in backends.backend_names():
        return
    where = "--scan-backend" if source == "asked for" else f"${backends.ENV_VAR}"
    raise InputError(f"{where} {requested!r} is not a scan backend; expected one of: "
                     f"{', '.join([backends.AUTO] + backends.backend_names())}")


def inference_options(args):
    from nnmamba.inference import InferenceOptions

    check_scan_backend_option(getattr(args, "scan_backend", "auto"))
    return InferenceOptions(device=args.device, tta=args.tta, overlap=args.overlap,
                            precision=args.precision, tile_batch=args.tile_batch,
                            stitch_device=args.stitch_device)


@contextmanager
def progress_bar(description: str):
    """Yields a `progress(fraction, stage)` callback drawing a tqdm bar on stderr (if a terminal)."""
    from tqdm import tqdm

    bar = tqdm(total=100, desc=description, unit="%", file=sys.stderr, disable=None,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
    state = {"n": 0}

    def update(fraction: float, stage: str) -> None:
        n = int(round(100 * min(max(fraction, 0.0), 1.0)))
        if n > state["n"]:
            bar.update(n - state["n"])
            state["n"] = n
        bar.set_postfix_str(stage, refresh=True)

    try:
        yield update
    finally:
        bar.close()


def untrained_warning(cards) -> str:
    """The loud warning for cards with `"trained": false` or `"quality": "unvalidated"` ("" when none)."""
    untrained = [c.name for c in cards if not c.trained]
    unvalidated = [c.name for c in cards if c.trained and c.quality == "unvalidated"]
    lines = []
    if untrained:
        lines.append(f"WARNING: model(s) {', '.join(untrained)} have UNTRAINED (random) weights: their outputs "
                     f"are MEANINGLESS and only show that the pipeline runs.")
    if unvalidated:
        lines.append(f"WARNING: model(s) {', '.join(unvalidated)} are UNVALIDATED: their accuracy on real scans "
                     f"has not been shown to be useful; check every output.")
    return "\n".join(lines)


def print_warning(text: str) -> None:
    if text:
        bar = "!" * min(len(text), 100)
        print(f"{bar}\n{text}\n{bar}", file=sys.stderr)


@dataclass
class CaseOutcome:
    """What `predict_case` did: task -> result, the files written, seconds per phase."""

    results: dict
    written: list
    read_s: float
    compute_s: float
    write_s: float


def predict_case(predictor, paths: list, stem: str, cards_by_task: dict, output: Path, overwrite: bool,
                 summary: bool, warning: str = "",
                 progress: Optional[Callable[[float, str], None]] = None) -> CaseOutcome:
    """Read one case (a list of channel files or a DICOM folder), run every task of `cards_by_task`
    (task -> ModelCard) and write its outputs `<output>/<stem>.*`."""
    from nnmamba.io import read_volume, write_results

    start = time.perf_counter()
    volume = read_volume(list(paths))                 # checks the voxels once
    read_s = time.perf_counter() - start
    results = predictor.run(volume, list(cards_by_task), cards_by_task, progress=progress, checked=True)
    computed = time.perf_counter()
    written = write_results(results, volume, output, stem, overwrite=overwrite, summary=summary,
                            warning=warning or None)
    return CaseOutcome(results, written, read_s, computed - start - read_s, time.perf_counter() - computed)
