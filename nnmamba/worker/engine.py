"""The worker's side of the engine: one `Predictor` (models load once and stay), OOM policy.

This is the only worker module that touches torch, and only inside `warm_up`/`run`, so the
server answers status and list-models requests while torch is still importing.

Out of GPU memory (`torch.cuda.OutOfMemoryError`, nothing broader) the job is retried with half
as many tiles per batch, down to one, then on the CPU; each retry is announced in a progress
event so the user knows why it got slower.

Example:
    >>> engine = PredictorEngine(device="cpu")                      # doctest: +SKIP
    >>> engine.warm_up()                                             # doctest: +SKIP
    >>> engine.run(request, progress=print, cancel=threading.Event())  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import threading
from typing import Callable, Optional

from nnmamba.errors import BackendUnavailableError, NNMambaError
from nnmamba.worker.protocol import SubmitRequest

log = logging.getLogger(__name__)


class WorkerOutOfMemory(NNMambaError):
    """Even the CPU retry ran out of memory."""

    code = "out_of_memory"


def model_summaries() -> list:
    """Card summaries (torch-free) for the list-models operation."""
    from nnmamba.model_card import list_models

    summaries = []
    for card in list_models():
        summaries.append({
            "name": card.name, "task": card.task, "network": card.network,
            "description": card.description, "trained": card.trained, "quality": card.quality,
            "channels": [c.name for c in card.channels], "spacing_mm": list(card.spacing_mm),
            "patch_size": list(card.patch_size), "outputs": card.output_names,
            "summary": card.summary(), "path": str(card.path) if card.path else None,
        })
    return summaries


def oom_retry_plan(options) -> list:
    """(options, announcement) to try after a GPU out-of-memory error, in order.

    >>> from nnmamba.inference import InferenceOptions
    >>> for options, announcement in oom_retry_plan(InferenceOptions(device="cuda", tile_batch=4)):
    ...     print(options.device, options.tile_batch, "|", announcement)
    cuda 2 | GPU out of memory: retrying with 2 tiles per batch
    cuda 1 | GPU out of memory: retrying with 1 tile per batch
    cpu 4 | GPU out of memory: retrying on the CPU (slower)
    """
    plan = []
    tile_batch = getattr(options, "tile_batch", 1)
    if tile_batch == "auto":
        # what "auto" chose is not known here: start from its cap, halving as for a number
        from nnmamba.inference.planned_network import TILE_BATCH_CAP

        tile_batch = TILE_BATCH_CAP
    tile_batch = int(tile_batch)
    while tile_batch > 1:
        tile_batch = max(1, tile_batch // 2)
        plan.append((dataclasses.replace(options, tile_batch=tile_batch),
                     f"GPU out of memory: retrying with {tile_batch} tile{'s' if tile_batch > 1 else ''} per batch"))
    # On the CPU (RAM is larger) the original tiles per batch are kept; stitching follows the device.
    cpu_options = dataclasses.replace(options, device="cpu")
    if hasattr(options, "stitch_device"):
        cpu_options = dataclasses.replace(cpu_options, stitch_device="auto")
    plan.append((cpu_options,
                 "GPU out of memory: retrying on the CPU (slower)"))
    return plan


def run_with_oom_fallback(run_once: Callable, options, progress: Callable[[float, str], None]):
    """`run_once(options)`, retried per `oom_retry_plan` on `torch.cuda.OutOfMemoryError` only."""
    import torch

    try:
        return run_once(options)
    except torch.cuda.OutOfMemoryError as first:
        last_error: BaseException = first
    for retry_options, announcement in oom_retry_plan(options):
        log.warning("%s", announcement)
        torch.cuda.empty_cache()
        progress(0.0, announcement)
        try:
            return run_once(retry_options)
        except torch.cuda.OutOfMemoryError as e:
            last_error = e
    raise WorkerOutOfMemory(f"out of memory even on the CPU: {last_error}") from last_error


class PredictorEngine:
    """Holds the worker's `nnmamba.inference.Predictor`s for its lifetime: one per device, so a
    model loads once per device and stays there (a CPU one appears only after a GPU OOM or when a
    job asks for the CPU).

    `default_options` are the worker's (`nnmamba serve --device ...`); a job's options override
    them field by field. They belong to that job alone: they are passed to the predictor's `run`,
    never stored on the shared predictor, so a job never sees another's options.
    """

    def __init__(self, device: str = "auto", threads: Optional[int] = None,
                 default_options: Optional[dict] = None):
        self.device = device
        self.threads = threads
        self.default_options = dict(default_options or {})
        self._predictors: dict = {}
        self._base_options = None

    def warm_up(self) -> None:
        try:
            import torch
        except ImportError as e:
            raise BackendUnavailableError(
                f"the worker's Python ({sys.executable}) cannot import torch ({e}); install PyTorch "
                f"into that environment, or start the worker with a Python that has it") from e
        from nnmamba.inference import InferenceOptions
        from nnmamba.inference.backend_flags import configure_for_inference

        if self.threads:
            torch.set_num_threads(self.threads)
        self._base_options = InferenceOptions.from_dict(dict(self.default_options, device=self.device))
        predictor = self._predictor_for(self._base_options)
        configure_for_inference(predictor.device)
        log.info("engine ready: torch %s, device %s, %d CPU threads", torch.__version__,
                 predictor.device, torch.get_num_threads())

    def _predictor_for(self, options):
        """The predictor of the device `options` name (one per resolved device, created on first use)."""
        from nnmamba.inference import Predictor
        from nnmamba.inference.predictor import resolve_device

        device = str(resolve_device(options.device))
        if device not in self._predictors:
            self._predictors[device] = Predictor(options)
        return self._predictors[device]

    def options_for(self, request: SubmitRequest):
        values = dataclasses.asdict(self._base_options)
        values.update(request.options)
        return type(self._base_options).from_dict(values)

    def run(self, request: SubmitRequest, progress: Callable[[float, str], None],
            cancel: threading.Event) -> dict:
        def run_once(options):
            return self._predictor_for(options).run(request.volume, list(request.tasks),
                                                    dict(request.models) or None,
                                                    progress=progress, cancel=cancel, options=options)

        return run_with_oom_fallback(run_once, self.options_for(request), progress)

    def describe(self) -> dict:
        info = {"python": sys.executable, "pid": os.getpid()}
        if self._base_options is not None:
            import torch

            info.update(torch=torch.__version__, threads=torch.get_num_threads(),
                        cuda=torch.cuda.is_available(),
                        cuda_devices=[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
                        mps=bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
                        devices={name: str(p.device) for name, p in self._predictors.items()},
                        loaded_models=sorted({key[0] for p in self._predictors.values()
                                              for key in list(getattr(p, "_models", {}))}))
            if torch.cuda.is_available():
                info["gpu"] = torch.cuda.get_device_name()
        return info
