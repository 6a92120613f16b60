"""InferenceLogic's job flow with an in-memory worker: uploads off the polling thread, bounded joins."""

from __future__ import annotations

import logging
import threading
import time

from fake_worker import FakeClient, FakeConnection
from nnmamba.worker.protocol import Event, EventKind
from NNMambaSlicerLib.InferenceLogic import InferenceLogic, JobStatus


def pollUntil(logic: InferenceLogic, condition, seconds: float = 10.0) -> list:
    ended, deadline = [], time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        ended += logic.poll(0.01)
    return ended


def test_a_slow_upload_runs_on_its_own_thread_and_poll_returns_at_once(obliqueVolume):
    gate = threading.Event()
    logic = InferenceLogic(FakeConnection(FakeClient(uploadGate=gate)))
    stages = []
    logic.progress.connect(lambda jobId, fraction, stage: stages.append(stage))
    logic.submit(obliqueVolume, ["segmentation"])
    pollUntil(logic, lambda: "sending the volume to the worker" in stages)

    started = time.monotonic()
    for _ in range(5):
        logic.poll(0.0)
    assert time.monotonic() - started < 1.0  # the GUI thread is not held by the upload
    assert logic.connection.fakeClient.submitted == [] and logic.isBusy

    gate.set()
    pollUntil(logic, lambda: "sent to the worker" in stages)
    client = logic.connection.fakeClient
    assert client.submitThreads[0] is not threading.main_thread()
    assert [s[0] for s in client.submitted] == ["worker-1"]


def test_a_job_cancelled_during_its_upload_is_cancelled_on_the_worker_once_it_arrives(obliqueVolume):
    gate = threading.Event()
    logic = InferenceLogic(FakeConnection(FakeClient(uploadGate=gate)))
    jobId = logic.submit(obliqueVolume, ["segmentation"])
    pollUntil(logic, lambda: logic.connection.fakeClient.submitThreads)
    logic.cancel(jobId)
    gate.set()
    ended = pollUntil(logic, lambda: not logic.isBusy)
    assert logic.connection.fakeClient.cancelled == ["worker-1"]
    assert [(o.jobId, o.status) for o in ended] == [(jobId, JobStatus.CANCELLED)]


def test_a_failed_upload_fails_its_job_with_the_reason_and_the_fix(obliqueVolume):
    class BrokenClient(FakeClient):
        def submit(self, *args, **kwargs):
            raise ConnectionResetError("the server hung up")

    logic = InferenceLogic(FakeConnection(BrokenClient()))
    jobId = logic.submit(obliqueVolume, ["segmentation"])
    ended = pollUntil(logic, lambda: not logic.isBusy)
    assert ended[0].jobId == jobId and ended[0].status is JobStatus.FAILED
    assert "the server hung up" in ended[0].message and "Check the worker settings" in ended[0].message


def test_events_of_a_sent_job_are_handled_while_another_job_is_still_uploading(obliqueVolume):
    gate = threading.Event()
    client = FakeClient()
    logic = InferenceLogic(FakeConnection(client))
    first = logic.submit(obliqueVolume, ["segmentation"])
    pollUntil(logic, lambda: client.submitted)
    client.uploadGate = gate
    second = logic.submit(obliqueVolume, ["segmentation"])
    pollUntil(logic, lambda: len(client.submitThreads) == 2)
    client.events.append(Event(EventKind.ERROR, "worker-1", error_code="bad_input", message="too small"))
    ended = pollUntil(logic, lambda: first not in logic._jobs)
    assert [(o.jobId, o.status) for o in ended] == [(first, JobStatus.FAILED)]
    assert second in logic._jobs
    gate.set()
    logic.close()


def test_close_waits_a_bounded_time_for_a_hanging_start_and_says_so(obliqueVolume, caplog):
    release = threading.Event()

    class HangingStart(FakeConnection):
        def client(self):
            release.wait(30)
            return super().client()

    connection = HangingStart()
    logic = InferenceLogic(connection, joinTimeoutSeconds=0.2)
    logic.submit(obliqueVolume, ["segmentation"])
    started = time.monotonic()
    with caplog.at_level(logging.WARNING):
        logic.close()
    assert time.monotonic() - started < 2.0
    assert "still starting after 0.2 s" in caplog.text
    release.set()
    logic.starter.join(5)
    assert not connection.isStarted  # the late worker was stopped by its own starting thread


def test_a_finished_job_says_how_long_it_took_and_per_stage_where_the_result_has_timings(obliqueVolume):
    from nnmamba.results import ClassificationResult
    import numpy as np

    ticks = iter(range(0, 1000, 5))
    client = FakeClient()
    logic = InferenceLogic(FakeConnection(client), clock=lambda: float(next(ticks)))
    jobId = logic.submit(obliqueVolume, ["classification"])
    pollUntil(logic, lambda: client.submitted)
    result = ClassificationResult(["CT", "MR"], np.array([0.2, 0.8]), "scan-type-cls")
    result.timings = {"read": 0.25, "network": 3.0}
    client.events.append(Event(EventKind.RESULT, "worker-1", results={"classification": result}, elapsed_s=3.5))
    outcome = pollUntil(logic, lambda: not logic.isBusy)[0]
    assert outcome.jobId == jobId and outcome.succeeded and outcome.engineSeconds == 3.5
    assert outcome.totalSeconds > 0
    assert outcome.timingSummary() == (f"{outcome.totalSeconds:.1f} s in all, 3.5 s in the worker; "
                                       "classification: read 0.2 s, network 3.0 s")


def test_start_worker_starts_it_off_the_calling_thread_without_a_job():
    logic = InferenceLogic(FakeConnection())
    logic.startWorker()
    logic.starter.join(5)
    assert logic.connection.isStarted and not logic.isStartingWorker and not logic.isBusy


def test_cancel_returns_at_once_while_the_client_is_busy_sending_and_a_failed_cancel_stops_the_worker(obliqueVolume):
    class BusyClient(FakeClient):
        """A remote client whose cancel waits behind an upload (its send lock), then fails."""

        def __init__(self) -> None:
            super().__init__()
            self.sendLock = threading.Event()

        def cancel(self, job_id: str) -> None:
            self.sendLock.wait(30)
            raise ConnectionResetError("the server hung up")

    client = BusyClient()
    logic = InferenceLogic(FakeConnection(client), cancelGraceSeconds=60)
    jobId = logic.submit(obliqueVolume, ["segmentation"])
    pollUntil(logic, lambda: client.submitted and logic._jobs[jobId].workerJobId)
    started = time.monotonic()
    logic.cancel(jobId)
    logic.poll(0.0)
    assert time.monotonic() - started < 1.0 and logic.isBusy  # the GUI thread did not wait for the lock
    client.sendLock.set()
    ended = pollUntil(logic, lambda: not logic.isBusy)
    assert [(o.jobId, o.status) for o in ended] == [(jobId, JobStatus.CANCELLED)]
    assert "stopped and is being restarted" in ended[0].message  # the cancel failed: the local worker was stopped
    logic.close()
