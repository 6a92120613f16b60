"""The worker's out-of-memory policy: fewer tiles per batch, then the CPU, announced each time.

A CUDA out-of-memory error cannot be produced on CI's CPU machines, so these tests give the
policy a run function that raises the real `torch.cuda.OutOfMemoryError` for the settings a
GPU could not hold; the policy is what is under test, not the engine.
"""

from __future__ import annotations

import pytest
import torch

from nnmamba.inference import InferenceOptions
from nnmamba.worker.engine import WorkerOutOfMemory, oom_retry_plan, run_with_oom_fallback


def recording_progress():
    seen = []
    return seen, lambda fraction, stage: seen.append(stage)


def test_out_of_memory_retries_with_half_the_tiles_per_batch_until_it_fits():
    tried = []

    def run_once(options):
        tried.append((options.device, options.tile_batch))
        if options.tile_batch > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {"ok": options}

    seen, progress = recording_progress()
    result = run_with_oom_fallback(run_once, InferenceOptions(device="cuda", tile_batch=4), progress)
    assert result["ok"].tile_batch == 1 and result["ok"].device == "cuda"
    assert tried == [("cuda", 4), ("cuda", 2), ("cuda", 1)]
    assert seen == ["GPU out of memory: retrying with 2 tiles per batch",
                    "GPU out of memory: retrying with 1 tile per batch"]


def test_out_of_memory_with_one_tile_per_batch_falls_back_to_the_cpu_and_says_so():
    def run_once(options):
        if options.device != "cpu":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return {"device": options.device, "stitch": options.stitch_device}

    seen, progress = recording_progress()
    result = run_with_oom_fallback(run_once, InferenceOptions(device="cuda:0", tile_batch=1,
                                                              stitch_device="cuda:0"), progress)
    assert result == {"device": "cpu", "stitch": "auto"}
    assert seen == ["GPU out of memory: retrying on the CPU (slower)"]


def test_out_of_memory_everywhere_is_an_error_with_its_own_code():
    def run_once(options):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(WorkerOutOfMemory) as caught:
        run_with_oom_fallback(run_once, InferenceOptions(device="cuda", tile_batch=2), lambda f, s: None)
    assert caught.value.code == "out_of_memory"


def test_other_runtime_errors_are_not_mistaken_for_out_of_memory():
    calls = []

    def run_once(options):
        calls.append(options)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    with pytest.raises(RuntimeError, match="illegal memory access"):
        run_with_oom_fallback(run_once, InferenceOptions(device="cuda", tile_batch=4), lambda f, s: None)
    assert len(calls) == 1


def test_the_plan_for_one_tile_per_batch_is_only_the_cpu():
    plan = oom_retry_plan(InferenceOptions(device="cuda", tile_batch=1))
    assert [(o.device, o.tile_batch) for o, _ in plan] == [("cpu", 1)]
