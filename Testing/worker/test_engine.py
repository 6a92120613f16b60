"""The worker's out-of-memory policy: fewer tiles per batch, then the CPU, announced each time.

A CUDA out-of-memory error cannot be produced on CI's CPU machines, so these tests give the
policy a run function that raises the real `torch.cuda.OutOfMemoryError` for the settings a
GPU could not hold; the policy is what is under test, not the engine.
"""

from __future__ import annotations

import threading
import time

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


# ---- each job's options belong to that job --------------------------------------------------------

FAST_OPTIONS = {"tta": False, "overlap": 0.0}
CAREFUL_OPTIONS = {"tta": True, "overlap": 0.5, "tile_batch": 1}


def _results_differ(a: dict, b: dict) -> bool:
    import numpy as np

    return (not np.array_equal(a["segmentation"].labelmap, b["segmentation"].labelmap)
            or np.abs(a["landmarks"].points_lps - b["landmarks"].points_lps).max() > 1e-3)


def test_a_jobs_options_are_used_for_that_job_and_never_stored_on_the_shared_predictor(worker_models_dir):
    from nnmamba.worker.engine import PredictorEngine
    from nnmamba.worker.protocol import SubmitRequest
    from worker_helpers import make_volume, model_paths

    engine = PredictorEngine(device="cpu", threads=1)
    engine.warm_up()
    predictor = engine._predictor_for(engine._base_options)
    before = predictor.options
    models = model_paths(worker_models_dir, ["classification"])
    volume = make_volume((20, 22, 24), seed=3)
    seen = []
    original_run = predictor.run

    def recording_run(*args, **kwargs):
        seen.append(kwargs["options"])
        return original_run(*args, **kwargs)

    predictor.run = recording_run   # the real run, with the options it was given recorded
    for options in (CAREFUL_OPTIONS, FAST_OPTIONS):
        engine.run(SubmitRequest("job", volume, ["classification"], models, dict(options)),
                   progress=lambda f, s: None, cancel=threading.Event())
    assert [(o.tta, o.overlap) for o in seen] == [(True, 0.5), (False, 0.0)]
    assert predictor.options is before and predictor.options.tta is False and predictor.options.overlap == 0.5


@pytest.mark.slow
def test_two_concurrent_clients_with_different_options_each_get_the_result_of_their_own_options(
        local_worker, worker_models_dir, reference_predictor):
    from nnmamba.inference import InferenceOptions
    from nnmamba.worker import EventKind
    from worker_helpers import assert_same_results, make_volume, model_paths

    tasks = ["segmentation", "landmarks"]
    models = model_paths(worker_models_dir, tasks)
    volume = make_volume((24, 28, 44), seed=5)       # wider than one 32^3 tile: overlap matters
    options = {"fast": FAST_OPTIONS, "careful": CAREFUL_OPTIONS}
    expected = {name: reference_predictor.run(volume, tasks, models,
                                              options=InferenceOptions(device="cpu", **o))
                for name, o in options.items()}
    assert _results_differ(expected["fast"], expected["careful"])   # else the test could not tell
    got, errors = {}, []
    start = threading.Barrier(2)

    def client_thread(name: str) -> None:
        try:
            with local_worker.new_client() as client:
                start.wait(30)
                job = client.submit(volume, tasks, models, options[name])
                deadline = time.monotonic() + 240
                while name not in got and time.monotonic() < deadline:
                    for event in client.poll(timeout=0.5):
                        assert event.job_id == job, "an event of a job this client did not submit"
                        if event.kind is EventKind.RESULT:
                            got[name] = event.results
                        elif event.kind is not EventKind.PROGRESS:
                            errors.append(event)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=client_thread, args=(name,)) for name in options]
    for t in threads:
        t.start()
    for t in threads:
        t.join(260)
    assert not errors and sorted(got) == sorted(options)
    for name in options:
        assert_same_results(got[name], expected[name])
        for result in got[name].values():     # the stage timings cross the process boundary too
            assert set(result.timings) == {"resample_s", "network_s", "postprocess_s"}
