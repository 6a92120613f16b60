"""The predictor: one object holding the inference policy and the loaded models.

Call chain, narrowing one step at a time: `run` (tasks) -> `_run_task` (one model card) ->
`_prepare` (resample + normalise onto the card's working grid) -> `sliding_window` (tiles) ->
`forward_mirrored` (one tile batch, mirror TTA) -> postprocessing back onto the input's grid.

Everything after reading runs where the network runs: the volume goes to the device once (through
pinned memory), is resampled and normalised there, tiles are cut from it there (nothing crosses the
bus per tile, so no transfer is left for a producer thread to overlap), and softmax, resampling of
the scores back to the input grid, arg-max and the landmark detections run there too; only the label
map (uint8 where it fits) and the detections come back (the landmark template fit runs on them). The
network runs as its inference plan (`planned_network`): on CUDA the checked fast copy, replayed as CUDA
graphs where they pay for themselves in the job (`graph_policy`). Each result carries the seconds of
its stages in `timings` (resample, network, postprocess).

Options belong to a call: `run(..., options=...)` overrides the predictor's defaults for that call
only, so one predictor (and its loaded models) serves jobs with different options.

Example:
    >>> from nnmamba.inference import InferenceOptions, Predictor
    >>> predictor = Predictor(InferenceOptions(device="cpu"))              # doctest: +SKIP
    >>> results = predictor.run(volume, ["segmentation", "landmarks"])     # doctest: +SKIP
    >>> results["segmentation"].labelmap.shape == volume.shape_kji         # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Callable, Optional

import numpy as np
import torch

from nnmamba.errors import BackendUnavailableError, Cancelled, InputError, ModelError
from nnmamba.inference.device_resampling import resample_linear_with_inside
from nnmamba.inference.graph_policy import forwards_in_job
from nnmamba.inference.normalization import normalize_tensor
from nnmamba.inference.options import InferenceOptions
from nnmamba.inference.planned_network import PlannedNetwork
from nnmamba.inference.resampling import working_grid
from nnmamba.inference.score_check import check_scores_finite
from nnmamba.inference.sliding_window import center_crop_or_pad, forward_mirrored, sliding_window, tile_grid
from nnmamba.inference.tiling import mirror_combinations
from nnmamba.io.checks import check_channels, check_volume
from nnmamba.model_card import ModelCard, default_model, find_model
from nnmamba.tasks import get_task, task_names
from nnmamba.volume import Volume

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]


def _mps_available() -> bool:
    """An Apple GPU torch can use (torch.backends.mps exists only in builds that know MPS)."""
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda if available, else an Apple GPU (mps), else cpu; a named device that is not usable raises."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if _mps_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise InputError(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {name!r}") from e
    if device.type == "mps" and not _mps_available():
        raise BackendUnavailableError(f"device {name!r} was asked for but no Apple GPU (MPS) is available here "
                                      f"(torch {torch.__version__}); use --device cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendUnavailableError(f"device {name!r} was asked for but CUDA is not available here "
                                          f"(torch {torch.__version__}); use --device cpu or install a "
                                          f"CUDA build of torch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise BackendUnavailableError(f"device {name!r} does not exist: {torch.cuda.device_count()} "
                                          f"CUDA device(s) here")
    return device


PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_NAMES = {dtype: name for name, dtype in PRECISION_DTYPES.items()}
CPU_TILE_BATCH = 2


class Predictor:
    """Runs model cards on volumes; keeps each loaded model (a persistent worker loads it once)."""

    def __init__(self, options: Optional[InferenceOptions] = None, scan_backend: str = "auto"):
        self.options = options or InferenceOptions()
        self.scan_backend = scan_backend
        self.device = resolve_device(self.options.device)
        self._models: dict = {}
        self._planned: dict = {}
        self._lock = threading.Lock()

    # ---- models ---------------------------------------------------------------------------------

    def model(self, card: ModelCard) -> torch.nn.Module:
        """The card's eager network on this predictor's device, loaded once and cached."""
        from nnmamba.models import load_model

        key = _card_key(card)
        with self._lock:
            if key not in self._models:
                log.info("loading model %s (%s) on %s", card.name, card.network, self.device)
                self._models[key] = load_model(card, self.device, scan_backend=self.scan_backend)
            return self._models[key]

    def planned(self, card: ModelCard, dtype: torch.dtype) -> PlannedNetwork:
        """The card's network as its inference plan runs it in `dtype` (checked once, then cached)."""
        network = self.model(card)
        key = (_card_key(card), dtype)
        with self._lock:
            if key not in self._planned:
                probe = (1, card.in_channels) + tuple(reversed(card.patch_size))
                self._planned[key] = PlannedNetwork(network, self.device, dtype, probe, name=card.name,
                                                    scan_backend=self.scan_backend)
            return self._planned[key]

    def use_network(self, card: ModelCard, network: torch.nn.Module) -> None:
        """Run `card` with an in-memory `network` (e.g. one being trained) instead of its weights file."""
        key = _card_key(card)
        with self._lock:
            self._models[key] = network.to(self.device).eval()
            # a fast copy holds the old weights
            self._planned = {k: v for k, v in self._planned.items() if k[0] != key}

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._planned.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ---- policy ---------------------------------------------------------------------------------

    def _dtype(self, options: InferenceOptions) -> torch.dtype:
        precision = options.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        return PRECISION_DTYPES[precision]

    def _stitch_device(self, options: InferenceOptions, out_channels: int, shape) -> torch.device:
        choice = options.stitch_device
        if choice != "auto":
            return resolve_device(choice)
        if self.device.type != "cuda":
            return self.device
        free, _ = torch.cuda.mem_get_info(self.device)
        return self.device if _stitch_bytes(out_channels, shape) < free / 3 else torch.device("cpu")

    def _tile_batch(self, options: InferenceOptions, planned: PlannedNetwork, stitch: torch.device,
                    out_channels: int, shape) -> int:
        """The option's number, or ("auto") as many tiles as fit in the device memory left free."""
        if options.tile_batch != "auto":
            return options.tile_batch
        if self.device.type != "cuda":
            return CPU_TILE_BATCH
        free, _ = torch.cuda.mem_get_info(self.device)
        if stitch == self.device:
            free -= _stitch_bytes(out_channels, shape)
        batch = planned.tile_batch_for(max(free, 0))
        log.info("tile batch %d (%.1f GiB free, ~%.2f GiB per tile)", batch, free / 2 ** 30,
                 (planned.tile_bytes or 0) / 2 ** 30)
        return batch

    @staticmethod
    def _runner(planned: PlannedNetwork, shape, patch, overlap: float, tile_batch: int, mirror_axes) -> tuple:
        """(what runs this job's tiles, whether CUDA graphs replay them): `PlannedNetwork.runner` for the
        job's number of forwards (tiles / tile batch x mirrors)."""
        tile_shape, tiles = tile_grid(shape, patch, overlap)
        forwards = forwards_in_job(len(tiles), tile_batch, len(mirror_combinations(mirror_axes)))
        return planned.runner(forwards, tile_batch, tile_shape)

    def _check_options(self, options: InferenceOptions) -> InferenceOptions:
        if not isinstance(options, InferenceOptions):
            raise InputError(f"options must be InferenceOptions, got {type(options).__name__}")
        if resolve_device(options.device) != self.device:
            raise InputError(f"this predictor runs on {self.device}, the options ask for {options.device!r}; "
                             f"use a predictor for that device")
        return options

    # ---- entry point ----------------------------------------------------------------------------

    def run(self, volume: Volume, tasks: list, models: Optional[dict] = None,
            progress: Optional[Progress] = None, cancel: Optional[threading.Event] = None,
            options: Optional[InferenceOptions] = None, checked: bool = False) -> dict:
        """Run `tasks` on `volume`; returns task -> result (`nnmamba.results`) on the input's grid.

        `models` maps a task to a model name or card path (default: the task's default card).
        `options` (default: the predictor's) hold for this call only. `checked`: the volume already
        passed `check_volume` (`read_volume` checks what it reads), so only its channel count is.
        Raises `InputError`, `ModelError`, `Cancelled`; CUDA out-of-memory propagates.
        """
        options = self._check_options(options if options is not None else self.options)
        if isinstance(tasks, str):
            tasks = [tasks]
        if not tasks:
            raise InputError("no task given; choose from " + ", ".join(task_names()))
        models = dict(models or {})
        names = [get_task(getattr(task, "value", task)).name for task in tasks]
        unknown = set(models) - set(names)
        if unknown:
            raise InputError(f"models given for task(s) {sorted(unknown)} that were not asked for ({names})")
        cards = [find_model(models[t]) if t in models else default_model(t) for t in names]
        for task, card in zip(names, cards):
            if card.task != task:
                raise ModelError(f"model {card.name} does {card.task}, not {task}")
        array = volume.array if volume.array.ndim == 4 else volume.array[None]
        volume = Volume(np.asarray(array, dtype=np.float32), volume.geometry)
        if not checked:   # one pass over the voxels; the other cards need only their channel count
            check_volume(volume, expected_channels=cards[0].in_channels, source="input volume")
        for card in cards:
            check_channels(volume, card.in_channels, source="input volume")

        report = progress or (lambda fraction, stage: None)
        results, prepared = {}, {}
        for n, (task, card) in enumerate(zip(names, cards)):
            def task_progress(fraction: float, stage: str, n=n) -> None:
                report((n + min(max(fraction, 0.0), 1.0)) / len(names), stage)

            _check_cancel(cancel)
            results[task] = self._run_task(card, volume, prepared, options, task_progress, cancel)
            log.info("%s (%s): %s", task, card.name,
                     ", ".join(f"{k} {v:.3f} s" for k, v in results[task].timings.items()))
        report(1.0, "done")
        return results

    # ---- one task -------------------------------------------------------------------------------

    def _source(self, volume: Volume, cache: dict) -> torch.Tensor:
        """The input (C, Z, Y, X) float32 on the device, uploaded once per run (pinned on CUDA)."""
        if "source" not in cache:
            source = torch.from_numpy(volume.array)
            if self.device.type == "cuda":
                source = source.pin_memory().to(self.device, non_blocking=True)
            cache["source"] = source
        return cache["source"]

    def _prepare(self, card: ModelCard, volume: Volume, cache: dict) -> tuple:
        """Volume -> (normalised (C, Z, Y, X) float32 on the working grid, on the device; its geometry)."""
        key = (card.spacing_mm, card.orientation, json.dumps(card.normalization, sort_keys=True))
        if key not in cache:
            geometry, shape = working_grid(volume.geometry, volume.shape_kji, card.spacing_mm,
                                           card.orientation)
            source = self._source(volume, cache)
            lowest = source.reshape(source.shape[0], -1).min(dim=1).values   # outside: each channel's min
            resampled, inside = resample_linear_with_inside(source, volume.geometry, geometry, shape, lowest)
            cache[key] = (normalize_tensor(resampled, card.normalization, inside), geometry)
        return cache[key]

    def _run_task(self, card: ModelCard, volume: Volume, cache: dict, options: InferenceOptions,
                  progress: Progress, cancel: Optional[threading.Event]):
        progress(0.0, f"{card.task}: loading {card.name}")
        planned = self.planned(card, self._dtype(options))
        clock = _StageClock(self.device)
        progress(0.05, f"{card.task}: resampling to {'x'.join(f'{s:g}' for s in card.spacing_mm)} mm")
        image, geometry = self._prepare(card, volume, cache)
        clock.stage("resample")
        patch = tuple(reversed(card.patch_size))  # (i, j, k) -> (Z, Y, X)
        mirror_axes = card.mirror_axes if options.tta or card.mirror_always else ()
        if options.tta and not card.mirror_axes:
            log.info("%s: no test-time mirroring (its card declares no axis it was trained mirrored along)", card.name)
        elif card.mirror_always and not options.tta:
            log.info("%s: mirrored along axes %s although TTA is off (its card defines its answer as the mean over "
                     "those mirrors)", card.name, list(card.mirror_axes))

        def tile_progress(done: int, total: int) -> None:
            progress(0.1 + 0.8 * done / total, f"{card.task}: tile {done}/{total}")

        task = get_task(card.task)
        out_channels = task.out_channels(card)
        mirror_order = card.mirror_order(out_channels) if 0 in mirror_axes else None
        if task.spatial_output:
            stitch = self._stitch_device(options, out_channels, image.shape[1:])
            tile_batch = self._tile_batch(options, planned, stitch, out_channels, image.shape[1:])
            run, graphs = self._runner(planned, image.shape[1:], patch, options.overlap, tile_batch, mirror_axes)
            output = sliding_window(
                run, image, patch, out_channels, overlap=options.overlap, tile_batch=tile_batch,
                device=self.device, stitch_device=stitch, mirror_axes=mirror_axes, mirror_order=mirror_order,
                progress=tile_progress,
                cancel=cancel, fixed_batch=graphs)
            clock.stage("network")
            progress(0.9, f"{card.task}: postprocessing")
        else:
            _check_cancel(cancel)
            batch = center_crop_or_pad(image, patch)[None]
            with torch.no_grad():
                output = forward_mirrored(planned, batch, mirror_axes, spatial_output=False, mirror_order=mirror_order)
            clock.stage("network")
        check_scores_finite(output, card.name, PRECISION_NAMES[planned.dtype])
        result = task.decode(card, output, geometry, volume)
        del output
        clock.stage("postprocess")
        progress(1.0, f"{card.task}: done")
        result.model, result.timings = card.name, clock.timings
        return result


class _StageClock:
    """Seconds per stage; waits for the device at each stage's end so GPU work is counted where it ran."""

    def __init__(self, device: torch.device):
        self.device = device
        self.timings: dict = {}
        self._last = time.perf_counter()

    def stage(self, name: str) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        self.timings[f"{name}_s"] = self.timings.get(f"{name}_s", 0.0) + now - self._last
        self._last = now


def _card_key(card: ModelCard) -> tuple:
    return card.name, str(card.weights_path), card.raw.get("weights_sha256")


def _stitch_bytes(out_channels: int, shape) -> int:
    return 4 * (out_channels + 1) * int(np.prod(shape))


def _check_cancel(cancel: Optional[threading.Event]) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled by the user")
