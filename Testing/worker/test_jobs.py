"""Jobs through a real worker process: every task, errors, cancel, concurrency, memory."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from nnmamba.errors import InputError, ModelError
from nnmamba.worker import EventKind
from worker_helpers import TASK_MODEL, assert_same_results, make_volume, model_paths

ALL_TASKS = ["segmentation", "landmarks", "classification"]


def wait_for_terminal(client, job_id: str, timeout: float = 120.0) -> tuple:
    """(terminal event, progress events before it) of one job."""
    progress, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.poll(timeout=0.5):
            assert event.job_id == job_id, f"event of another job: {event}"
            if event.kind is EventKind.PROGRESS:
                progress.append(event)
            else:
                return event, progress
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


@pytest.mark.parametrize("tasks", [["segmentation"], ["landmarks"], ["classification"], ALL_TASKS])
def test_each_task_through_the_worker_equals_the_engine_in_process(
        local_worker, worker_models_dir, reference_predictor, tasks):
    volume = make_volume(seed=1)
    models = model_paths(worker_models_dir, tasks)
    expected = reference_predictor.run(volume, tasks, models)
    client = local_worker.client()
    job_id = client.submit(volume, tasks, models)
    event, progress = wait_for_terminal(client, job_id)
    assert event.kind is EventKind.RESULT, event.message
    assert_same_results(event.results, expected)
    assert progress[0].stage.startswith("queued")
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and any("tile" in p.stage or "done" in p.stage for p in progress)


def test_default_models_come_from_the_workers_models_folder(local_worker, reference_predictor, worker_models_dir,
                                                             monkeypatch):
    monkeypatch.setenv("NNMAMBA_MODELS_DIR", str(worker_models_dir))
    volume = make_volume(seed=2)
    results = local_worker.client().run(volume, ["classification"], timeout=120)
    assert results["classification"].model == "test-cls"
    assert_same_results(results, reference_predictor.run(volume, ["classification"]))


def test_arrays_echoed_by_the_worker_come_back_identical(local_worker):
    rng = np.random.default_rng(0)
    arrays = {"volume": rng.integers(-1000, 1000, (40, 256, 256), dtype=np.int16),   # 5 MiB: several frames
              "mask": rng.random((3, 4, 5)) > 0.5, "empty": np.zeros((0, 3), np.float32),
              "big_endian": np.arange(6, dtype=">f8")}
    echoed = local_worker.client().echo(arrays)
    assert sorted(echoed) == sorted(arrays)
    for name, array in arrays.items():
        assert echoed[name].shape == array.shape and echoed[name].dtype.kind == array.dtype.kind
        np.testing.assert_array_equal(echoed[name], array)


def test_list_models_returns_the_card_summaries(local_worker):
    models = {m["name"]: m for m in local_worker.client().list_models()}
    assert set(TASK_MODEL.values()) <= set(models)
    assert models["test-seg"]["task"] == "segmentation"
    assert models["test-seg"]["outputs"] == ["Left thing", "Right thing"]
    assert models["test-landmarks"]["network"] == "nnMambaLandmark"
    assert models["test-cls"]["spacing_mm"] == [3.0, 3.0, 3.0]
    assert models["test-seg"]["quality"] == "unvalidated"  # a card that does not say: the panel warns


def test_status_reports_the_engine_the_device_and_models_loaded_once(local_worker, worker_models_dir):
    client = local_worker.client()
    volume = make_volume(seed=3)
    for _ in range(2):
        client.run(volume, ["segmentation"], model_paths(worker_models_dir, ["segmentation"]), timeout=120)
    status = client.status()
    assert status["engine"] == "ready" and status["devices"] == {"cpu": "cpu"}
    assert status["threads"] == 1 and status["running"] is None and status["queued"] == 0
    assert status["loaded_models"].count("test-seg") == 1
    assert status["pid"] == local_worker.pid


def test_a_constant_volume_is_an_input_error_and_the_worker_keeps_serving(local_worker, worker_models_dir):
    client = local_worker.client()
    constant = make_volume(seed=0)
    constant.array[:] = 7
    with pytest.raises(InputError, match="constant"):
        client.run(constant, ["classification"], model_paths(worker_models_dir, ["classification"]), timeout=60)
    results = client.run(make_volume(seed=0), ["classification"],
                         model_paths(worker_models_dir, ["classification"]), timeout=60)
    assert results["classification"].probabilities.sum() == pytest.approx(1.0)


def test_an_unknown_model_is_a_model_error_naming_it(local_worker):
    with pytest.raises(ModelError, match="no-such-model"):
        local_worker.client().run(make_volume(), ["segmentation"], {"segmentation": "no-such-model"}, timeout=60)


def test_cancel_stops_a_running_job_promptly_and_the_next_job_runs(local_worker, worker_models_dir,
                                                                    reference_predictor):
    client = local_worker.client()
    big = make_volume((96, 96, 96), seed=4)   # 180 tiles on the 3 mm grid: ~20 s to run through
    job_id = client.submit(big, ["segmentation"], model_paths(worker_models_dir, ["segmentation"]))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        events = client.poll(timeout=0.5)
        if any(": tile " in e.stage for e in events):
            break
    else:
        raise AssertionError("the job never reached its first tile")
    cancelled_at = time.monotonic()
    client.cancel(job_id)
    event, progress = wait_for_terminal(client, job_id, timeout=30)
    assert event.kind is EventKind.CANCELLED
    assert time.monotonic() - cancelled_at < 5.0
    tiles = [p.stage.split()[-1].split("/") for p in progress if ": tile " in p.stage]
    assert not tiles or int(tiles[-1][0]) < int(tiles[-1][1]), f"the job ran to its last tile: {tiles[-1]}"
    small = make_volume(seed=5)
    models = model_paths(worker_models_dir, ["classification"])
    assert_same_results(client.run(small, ["classification"], models, timeout=60),
                        reference_predictor.run(small, ["classification"], models))


def test_three_clients_with_five_jobs_each_all_get_their_own_correct_results(
        local_worker, worker_models_dir, reference_predictor):
    tasks = ["segmentation", "classification"]
    models = model_paths(worker_models_dir, tasks)
    volumes = {(c, j): make_volume((20, 22, 24), seed=10 + 5 * c + j) for c in range(3) for j in range(5)}
    expected = {key: reference_predictor.run(v, tasks, models) for key, v in volumes.items()}
    got, errors = {}, []

    def client_thread(c: int) -> None:
        try:
            with local_worker.new_client() as client:
                ids = {client.submit(volumes[c, j], tasks, models): (c, j) for j in range(5)}
                deadline = time.monotonic() + 180
                while len([k for k in got if k[0] == c]) < 5 and time.monotonic() < deadline:
                    for event in client.poll(timeout=0.5):
                        assert event.job_id in ids, "an event of a job this client did not submit"
                        if event.kind is EventKind.RESULT:
                            got[ids[event.job_id]] = event.results
                        elif event.kind is not EventKind.PROGRESS:
                            errors.append(event)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=client_thread, args=(c,)) for c in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(200)
    assert not errors
    assert sorted(got) == sorted(volumes)
    for key in volumes:
        assert_same_results(got[key], expected[key])


@pytest.mark.slow
def test_worker_memory_stays_flat_over_fifty_jobs(local_worker, worker_models_dir):
    client = local_worker.client()
    models = model_paths(worker_models_dir, ["segmentation", "classification"])
    volumes = [make_volume((20, 22, 24), seed=s) for s in range(5)]
    for volume in volumes:   # warm-up: models loaded, allocator pools grown
        client.run(volume, ["segmentation", "classification"], models, timeout=60)
    before = client.status()["rss_mb"]
    for n in range(50):
        client.run(volumes[n % 5], ["segmentation", "classification"], models, timeout=60)
    after = client.status()["rss_mb"]
    assert after - before < 25, f"worker RSS grew from {before} MiB to {after} MiB over 50 jobs"
    assert client.status()["jobs_done"] >= 55


@pytest.mark.slow
def test_the_shipped_models_on_the_embedded_sample_give_the_same_results_through_the_worker(reference_predictor):
    from nnmamba.data import sample_volume_path
    from nnmamba.io.volumes import read_volume
    from nnmamba.worker import LocalWorker

    volume = read_volume(sample_volume_path())
    expected = reference_predictor.run(volume, ALL_TASKS)
    with LocalWorker(device="cpu", threads=1) as worker:   # default models: the shipped cards
        results = worker.client().run(volume, ALL_TASKS, timeout=600)
    # the shipped landmark card registers its template head (SimpleITK): ITK sums the metric over
    # its threads, so one worker thread and the test's threads agree to ~1e-4 mm, not to the last digit
    assert_same_results(results, expected, points_atol_mm=1e-3)
    assert results["segmentation"].labelmap.shape == volume.shape_kji
