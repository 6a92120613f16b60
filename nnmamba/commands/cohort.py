"""`nnmamba predict` over a cohort, in one or many processes started by torchrun.

    torchrun --nproc_per_node 4 -m nnmamba predict -i scans/ -o out/ --tasks segmentation
    torchrun --nproc_per_node 4 -m nnmamba predict -i scans/ -o out/ --tasks segmentation --resume
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint host:29500 -m nnmamba predict ...

torchrun (PyTorch's own launcher, multi-node capable) starts the processes and sets RANK,
WORLD_SIZE and LOCAL_RANK; nothing here schedules. Rank 0 lists the cases once and splits them
into one share per rank, balanced by input size (largest first, each to the least loaded rank);
that plan is broadcast, so every rank works from the same list even where file systems are seen
differently by different nodes. Each rank runs its share on its own GPU (cuda:LOCAL_RANK; CPU when
there is no CUDA), writes every output atomically and then, last and atomically, the case's done
marker (`<output>/.nnmamba-cohort/<case>.done.json`). A failed case is recorded and the rank goes
on. At the end the rows of every rank are gathered and rank 0 writes `<output>/cohort_summary.tsv`
(case, rank, seconds, status, error); the exit code is 1 when any case failed.

A case is finished when its marker exists, names exactly the outputs this run would write, and
all of them exist. `--resume` skips finished cases and redoes the others, replacing whatever an
interrupted run left of them. Without `--resume`, any existing output is refused before anything
runs, as a single-process predict does (`--overwrite` replaces them).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from nnmamba.errors import BackendUnavailableError, InputError, NNMambaError

log = logging.getLogger("nnmamba.cohort")

MARKER_DIR = ".nnmamba-cohort"
SUMMARY_NAME = "cohort_summary.tsv"
SUMMARY_COLUMNS = ("case", "rank", "seconds", "status", "error")
# Ranks that finish early wait at the final gather for the slowest one; gloo's default timeout
# (30 min) would abort a long cohort there.
GATHER_TIMEOUT = timedelta(hours=72)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--resume", action="store_true",
                        help="cohort: skip the cases a previous run finished and redo the rest "
                             "(also under torchrun: one share of the cases per process)")


def requested(args) -> bool:
    """True when predict must run as a cohort: `--resume`, or started by torchrun."""
    return bool(getattr(args, "resume", False)) or ("RANK" in os.environ and "WORLD_SIZE" in os.environ)


@dataclass(frozen=True)
class Case:
    stem: str
    paths: tuple
    size: int  # bytes of input, the balancing weight


@dataclass
class Row:
    """One line of the summary. status: done | failed | skipped (finished by an earlier run,
    whose rank and seconds are shown)."""

    case: str
    rank: int
    seconds: float
    status: str
    error: str = ""

    def tsv(self) -> str:
        error = " ".join(self.error.split())  # tabs and newlines would break the table
        return f"{self.case}\t{self.rank}\t{self.seconds:.3f}\t{self.status}\t{error}"


@dataclass
class Plan:
    shares: list            # shares[rank] = list of Case
    skipped: list = field(default_factory=list)  # Rows of finished cases


def input_size(paths) -> int:
    """Bytes of the input files of one case (every file inside a DICOM series folder)."""
    total = 0
    for path in map(Path, paths):
        if path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        elif path.exists():
            total += path.stat().st_size
    return total


def balanced_shares(sizes: list, world_size: int) -> list:
    """Indices of `sizes` split into `world_size` shares of near-equal total size.

    Greedy longest-processing-time: largest first, each to the currently least loaded share (ties:
    lower index, lower rank), so the split is the same on every process. Example:
    sizes [5, 1, 4, 2, 3], 2 shares -> [[0, 3, 1], [2, 4]] (totals 8 and 7).
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    shares = [[] for _ in range(world_size)]
    loads = [0] * world_size
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        rank = min(range(world_size), key=lambda r: (loads[r], r))
        shares[rank].append(index)
        loads[rank] += sizes[index]
    return shares


def marker_path(output_dir: Path, stem: str) -> Path:
    return Path(output_dir) / MARKER_DIR / f"{stem}.done.json"


def is_finished(output_dir: Path, stem: str, outputs: list, case: Case | None = None) -> bool:
    """The case's marker exists, lists exactly `outputs` (file names), all of them exist, and
    (given `case`) it was made from the same input paths of the same size in bytes."""
    return finished_record(output_dir, stem, outputs, case) is not None


def finished_record(output_dir: Path, stem: str, outputs: list, case: Case | None = None) -> dict | None:
    """The case's marker record when the case is finished (see `is_finished`), else None."""
    marker = marker_path(output_dir, stem)
    try:
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict):
        return None
    if case is not None and (recorded.get("inputs") != list(case.paths) or
                             recorded.get("input_bytes") != case.size):
        return None  # the input was replaced since: its old outputs are not this case's
    finished = sorted(recorded.get("outputs", [])) == sorted(outputs) and \
        all((Path(output_dir) / name).is_file() for name in outputs)
    return recorded if finished else None


def make_plan(cases: list, output_dir: Path, outputs_of, world_size: int, resume: bool,
              overwrite: bool) -> Plan:
    """Shares of the pending cases per rank; the finished ones as skipped rows (with `resume`).

    `outputs_of(stem)` lists the output paths of one case. Without `resume` or `overwrite`,
    existing outputs (or summary) raise `OutputExistsError` before anything runs."""
    from nnmamba.io import check_free

    stems = [case.stem for case in cases]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise InputError(f"several inputs would write the outputs of case(s) {', '.join(duplicates)}; "
                         f"rename them or put them in separate runs")
    pending, skipped = [], []
    for case in cases:
        names = [p.name for p in outputs_of(case.stem)]
        recorded = finished_record(output_dir, case.stem, names, case) if resume else None
        if recorded is not None:
            skipped.append(Row(case.stem, int(recorded.get("rank", -1)), float(recorded.get("seconds", 0.0)),
                               "skipped"))
        else:
            pending.append(case)
    if not resume:
        check_free([p for case in cases for p in outputs_of(case.stem)] + [Path(output_dir) / SUMMARY_NAME],
                   overwrite)
    shares = balanced_shares([case.size for case in pending], world_size)
    return Plan([[pending[i] for i in share] for share in shares], skipped)


def remove_interrupted_writes(output_dir: Path) -> list:
    """Delete the temporary files a killed process left (`.<name>.tmp-*`, see io/atomic.py).

    Call only while no rank is writing (rank 0, before the plan is broadcast)."""
    folders = [Path(output_dir), Path(output_dir) / MARKER_DIR]
    leftovers = sorted(p for folder in folders if folder.is_dir() for p in folder.glob(".*.tmp-*"))
    for path in leftovers:
        log.info("removing %s, left by an interrupted write", path)
        path.unlink(missing_ok=True)
    return leftovers


def rank_device(requested_device: str, local_rank: int) -> str:
    """This process's device: with "auto"/"cuda", GPU LOCAL_RANK (CPU when "auto" finds no CUDA)."""
    if requested_device not in ("auto", "cuda"):
        return requested_device
    import torch

    if torch.cuda.is_available():
        device = f"cuda:{local_rank % torch.cuda.device_count()}"
        torch.cuda.set_device(device)  # nothing of this rank lands on cuda:0 by default
        return device
    if requested_device == "cuda":
        raise BackendUnavailableError("--device cuda asked for, but torch sees no CUDA device; use --device cpu "
                                      "or auto")
    return "cpu"


class CohortGroup:
    """The torchrun process group (gloo: only Python objects cross it), or one process alone."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self._dist = None
        if self.world_size > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("gloo", timeout=GATHER_TIMEOUT)
            self._dist = dist

    def broadcast(self, value):
        """Rank 0's `value` on every rank."""
        if self._dist is None:
            return value
        box = [value]
        self._dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather(self, value) -> list:
        if self._dist is None:
            return [value]
        gathered = [None] * self.world_size
        self._dist.all_gather_object(gathered, value)
        return gathered

    def close(self) -> None:
        if self._dist is not None and self._dist.is_initialized():
            self._dist.destroy_process_group()


def run(args, cases: list, tasks: list, cards: list, warning: str) -> int:
    """Run predict's `cases` (lists of input paths) as a cohort; returns the exit code."""
    from nnmamba.commands._pipeline import ExitCode, inference_options
    from nnmamba.io import output_paths, stem_of

    group = CohortGroup()
    try:
        summary = not args.no_summary
        outputs_of = lambda stem: output_paths(args.output, stem, tasks, summary)  # noqa: E731
        plan = None
        if group.rank == 0:
            try:
                listed = [Case(args.name or stem_of(paths[0]), tuple(map(str, paths)), input_size(paths))
                          for paths in cases]
                plan = make_plan(listed, args.output, outputs_of, group.world_size, args.resume, args.overwrite)
                if args.resume:
                    remove_interrupted_writes(args.output)
            except NNMambaError as error:
                plan = error  # every rank raises it, so all of them exit with its code
        plan = group.broadcast(plan)
        if isinstance(plan, NNMambaError):
            raise plan
        options = replace(inference_options(args), device=rank_device(args.device, group.local_rank))
        rows = run_share(plan.shares[group.rank], group.rank, args, options, tasks, cards, warning, outputs_of)
        every_row = [row for share in group.all_gather(rows) for row in share] + plan.skipped
        if group.rank == 0:
            write_summary(Path(args.output) / SUMMARY_NAME, every_row)
        failed = [row for row in every_row if row.status == "failed"]
        return int(ExitCode.ERROR) if failed else int(ExitCode.OK)
    finally:
        group.close()


def run_share(share: list, rank: int, args, options, tasks: list, cards: list, warning: str,
              outputs_of) -> list:
    """Predict every case of `share` on this rank; a failure is recorded and the next case runs."""
    from nnmamba.commands._pipeline import predict_case
    from nnmamba.inference import Predictor
    from nnmamba.inference.backend_flags import configure_for_inference
    from nnmamba.io.atomic import write_text_atomically

    predictor = Predictor(options, scan_backend=args.scan_backend)
    configure_for_inference(predictor.device)   # the same CUDA settings as a one-process predict
    cards_by_task = dict(zip(tasks, cards))
    # A pending case may hold what an interrupted run wrote of it; --resume replaces that.
    overwrite = args.overwrite or args.resume
    rows = []
    for case in share:
        marker = marker_path(args.output, case.stem)
        marker.unlink(missing_ok=True)  # outputs are about to change: the case is not finished
        start = time.perf_counter()
        try:
            predict_case(predictor, list(case.paths), case.stem, cards_by_task, args.output, overwrite,
                         not args.no_summary, warning)
            seconds = time.perf_counter() - start
            record = {"case": case.stem, "inputs": list(case.paths), "input_bytes": case.size, "rank": rank,
                      "seconds": seconds, "outputs": [p.name for p in outputs_of(case.stem)]}
            write_text_atomically(marker, json.dumps(record, indent=1) + "\n")
            rows.append(Row(case.stem, rank, seconds, "done"))
            print(f"[rank {rank}] {case.stem}: {', '.join(tasks)} in {seconds:.1f} s", flush=True)
        except Exception as error:  # noqa: BLE001 - a failed case is recorded and the cohort goes on
            seconds = time.perf_counter() - start
            rows.append(Row(case.stem, rank, seconds, "failed", f"{type(error).__name__}: {error}"))
            log.error("[rank %d] %s failed: %s: %s", rank, case.stem, type(error).__name__, error)
    return rows


def write_summary(path: Path, rows: list) -> Path:
    """The cohort's TSV (one row per case, sorted by case), written atomically."""
    from nnmamba.io.atomic import write_text_atomically

    lines = ["\t".join(SUMMARY_COLUMNS)] + [row.tsv() for row in sorted(rows, key=lambda r: r.case)]
    done = sum(row.status == "done" for row in rows)
    failed = sum(row.status == "failed" for row in rows)
    print(f"cohort: {done} done, {failed} failed, {len(rows) - done - failed} skipped; summary {path}",
          flush=True)
    return write_text_atomically(path, "\n".join(lines) + "\n")
