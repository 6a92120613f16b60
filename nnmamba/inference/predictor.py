"""The predictor: one object holding the inference policy and the loaded models.

Call chain, narrowing one step at a time: `run` (tasks) -> `_run_task` (one model card) ->
`_prepare` (resample + normalise onto the card's working grid) -> `sliding_window` (tiles) ->
`forward_mirrored` (one tile batch, mirror TTA) -> postprocessing back onto the input's grid.

Example:
    >>> from nnmamba.inference import InferenceOptions, Predictor
    >>> predictor = Predictor(InferenceOptions(device="cpu"))              # doctest: +SKIP
    >>> results = predictor.run(volume, ["segmentation", "landmarks"])     # doctest: +SKIP
    >>> results["segmentation"].labelmap.shape == volume.shape_kji         # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from typing import Callable, Optional

import numpy as np
import torch

from nnmamba.errors import BackendUnavailableError, Cancelled, InputError, ModelError
from nnmamba.inference.landmarks import heatmap_peaks
from nnmamba.inference.normalization import normalize
from nnmamba.inference.options import InferenceOptions
from nnmamba.inference.resampling import probabilities_to_labels, resample_channels, working_grid
from nnmamba.inference.sliding_window import center_crop_or_pad, forward_mirrored, sliding_window, to_numpy
from nnmamba.io.checks import check_volume
from nnmamba.model_card import ModelCard, default_model, find_model
from nnmamba.results import ClassificationResult, LandmarkResult, SegmentationResult, Task
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


class Predictor:
    """Runs model cards on volumes; keeps each loaded model (a persistent worker loads it once)."""

    def __init__(self, options: Optional[InferenceOptions] = None, scan_backend: str = "auto"):
        self.options = options or InferenceOptions()
        self.scan_backend = scan_backend
        self.device = resolve_device(self.options.device)
        self._models: dict = {}
        self._lock = threading.Lock()

    # ---- models ---------------------------------------------------------------------------------

    def model(self, card: ModelCard) -> torch.nn.Module:
        """The card's network on this predictor's device, loaded once and cached."""
        from nnmamba.models import load_model

        key = (card.name, str(card.weights_path), card.raw.get("weights_sha256"))
        with self._lock:
            if key not in self._models:
                log.info("loading model %s (%s) on %s", card.name, card.network, self.device)
                self._models[key] = load_model(card, self.device, scan_backend=self.scan_backend)
            return self._models[key]

    def use_network(self, card: ModelCard, network: torch.nn.Module) -> None:
        """Run `card` with an in-memory `network` (e.g. one being trained) instead of its weights file."""
        key = (card.name, str(card.weights_path), card.raw.get("weights_sha256"))
        with self._lock:
            self._models[key] = network.to(self.device).eval()

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ---- policy ---------------------------------------------------------------------------------

    def _autocast(self):
        precision = self.options.precision
        if precision == "auto":
            precision = "bf16" if self.device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
        if precision == "fp32":
            return contextlib.nullcontext
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return lambda: torch.autocast(self.device.type, dtype=dtype)

    def _stitch_device(self, out_channels: int, shape) -> torch.device:
        choice = self.options.stitch_device
        if choice != "auto":
            return resolve_device(choice)
        if self.device.type != "cuda":
            return self.device
        needed = 4 * (out_channels + 1) * int(np.prod(shape))
        free, _ = torch.cuda.mem_get_info(self.device)
        return self.device if needed < free / 3 else torch.device("cpu")

    # ---- entry point ----------------------------------------------------------------------------

    def run(self, volume: Volume, tasks: list, models: Optional[dict] = None,
            progress: Optional[Progress] = None, cancel: Optional[threading.Event] = None) -> dict:
        """Run `tasks` on `volume`; returns task -> result (`nnmamba.results`) on the input's grid.

        `models` maps a task to a model name or card path (default: the task's default card).
        Raises `InputError`, `ModelError`, `Cancelled`; CUDA out-of-memory propagates.
        """
        if isinstance(tasks, str):
            tasks = [tasks]
        if not tasks:
            raise InputError("no task given; choose from " + ", ".join(t.value for t in Task))
        models = dict(models or {})
        names = []
        for task in tasks:
            try:
                names.append(Task(task).value)
            except ValueError:
                raise InputError(f"unknown task {task!r}; choose from "
                                 + ", ".join(t.value for t in Task)) from None
        unknown = set(models) - set(names)
        if unknown:
            raise InputError(f"models given for task(s) {sorted(unknown)} that were not asked for ({names})")
        cards = [find_model(models[t]) if t in models else default_model(t) for t in names]
        for task, card in zip(names, cards):
            if card.task != task:
                raise ModelError(f"model {card.name} does {card.task}, not {task}")
        array = volume.array if volume.array.ndim == 4 else volume.array[None]
        volume = Volume(np.asarray(array, dtype=np.float32), volume.geometry)
        for card in cards:
            check_volume(volume, expected_channels=card.in_channels, source="input volume")

        report = progress or (lambda fraction, stage: None)
        results, prepared = {}, {}
        for n, (task, card) in enumerate(zip(names, cards)):
            def task_progress(fraction: float, stage: str, n=n) -> None:
                report((n + min(max(fraction, 0.0), 1.0)) / len(names), stage)

            _check_cancel(cancel)
            results[task] = self._run_task(card, volume, prepared, task_progress, cancel)
        report(1.0, "done")
        return results

    # ---- one task -------------------------------------------------------------------------------

    def _prepare(self, card: ModelCard, volume: Volume, cache: dict) -> tuple:
        """Volume -> (normalised (C, Z, Y, X) float32 on the working grid, its geometry)."""
        key = (card.spacing_mm, card.orientation, json.dumps(card.normalization, sort_keys=True))
        if key not in cache:
            geometry, shape = working_grid(volume.geometry, volume.shape_kji, card.spacing_mm,
                                           card.orientation)
            resampled = resample_channels(volume.array, volume.geometry, geometry, shape, linear=True)
            cache[key] = (normalize(resampled, card.normalization), geometry)
        return cache[key]

    def _run_task(self, card: ModelCard, volume: Volume, cache: dict, progress: Progress,
                  cancel: Optional[threading.Event]):
        progress(0.0, f"{card.task}: loading {card.name}")
        network = self.model(card)
        progress(0.05, f"{card.task}: resampling to {'x'.join(f'{s:g}' for s in card.spacing_mm)} mm")
        array, geometry = self._prepare(card, volume, cache)
        image = torch.from_numpy(array)
        patch = tuple(reversed(card.patch_size))  # (i, j, k) -> (Z, Y, X)
        mirror_axes = card.mirror_axes if self.options.tta else ()

        def tile_progress(done: int, total: int) -> None:
            progress(0.1 + 0.8 * done / total, f"{card.task}: tile {done}/{total}")

        if card.task == Task.CLASSIFICATION.value:
            _check_cancel(cancel)
            batch = center_crop_or_pad(image, patch)[None].to(self.device)
            with torch.no_grad(), self._autocast()():
                logits = forward_mirrored(network, batch, mirror_axes, spatial_output=False)
            if logits.shape != (1, len(card.classes)):
                raise ModelError(f"model {card.name} returned shape {tuple(logits.shape)}, expected "
                                 f"(1, {len(card.classes)})")
            probabilities = to_numpy(torch.softmax(logits.float(), dim=1))[0].astype(np.float64)
            progress(1.0, f"{card.task}: done")
            return ClassificationResult([c.name for c in card.classes], probabilities, model=card.name)

        out_channels = (card.hyperparameters["number_classes"] if card.task == Task.SEGMENTATION.value
                        else len(card.landmarks))
        output = sliding_window(
            network, image, patch, out_channels, overlap=self.options.overlap,
            tile_batch=self.options.tile_batch, device=self.device,
            stitch_device=self._stitch_device(out_channels, image.shape[1:]),
            mirror_axes=mirror_axes, autocast=self._autocast(), progress=tile_progress, cancel=cancel)
        progress(0.9, f"{card.task}: postprocessing")
        if card.task == Task.SEGMENTATION.value:
            probabilities = to_numpy(torch.softmax(output, dim=0))
            del output
            labels = probabilities_to_labels(probabilities, geometry, volume.geometry, volume.shape_kji)
            known = {s.label for s in card.labels}
            labels[~np.isin(labels, list(known))] = 0   # channels without a card label -> background
            progress(1.0, f"{card.task}: done")
            return SegmentationResult(labels, volume.geometry, list(card.labels), model=card.name)

        heatmaps = output if card.heatmap_activation == "none" else torch.sigmoid(output)
        ijk, heights = heatmap_peaks(to_numpy(heatmaps))
        progress(1.0, f"{card.task}: done")
        return LandmarkResult([lm.name for lm in card.landmarks],
                              [lm.description for lm in card.landmarks],
                              geometry.index_to_physical(ijk), np.clip(heights, 0.0, 1.0), model=card.name)


def _check_cancel(cancel: Optional[threading.Event]) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled by the user")
