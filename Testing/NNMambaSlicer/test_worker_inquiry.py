"""WorkerInquiry: the worker's models and devices, asked off the GUI thread, started first if needed."""

from __future__ import annotations

import time

from fake_worker import FakeClient, FakeConnection
from NNMambaSlicerLib.InferenceLogic import InferenceLogic
from NNMambaSlicerLib.WorkerInquiry import WorkerInquiry

SERVER_MODELS = [{"name": "server-seg", "task": "segmentation", "channels": ["CT"]}]


class DescribedConnection(FakeConnection):
    def describe(self) -> str:  # as a remote WorkerConnection says it
        return "the worker at gpu:8765"


def answerOf(inquiry: WorkerInquiry, seconds: float = 10.0):
    deadline = time.monotonic() + seconds
    while True:
        answer = inquiry.tick()
        if answer is not None:
            return answer
        assert time.monotonic() < deadline, "the inquiry never answered"
        time.sleep(0.01)


def test_a_worker_not_running_yet_is_started_then_asked_for_its_models_and_devices():
    client = FakeClient(models=SERVER_MODELS, status={"cuda_devices": ["NVIDIA H200"], "mps": False})
    logic = InferenceLogic(DescribedConnection(client, isLocal=False))
    inquiry = WorkerInquiry(logic)
    inquiry.start()
    assert inquiry.busy
    answer = answerOf(inquiry)
    assert not answer.error and not inquiry.busy
    assert [m.name for m in answer.catalog.forTask("segmentation")] == ["server-seg"]
    assert answer.catalog.source == "models of the worker at gpu:8765"
    assert answer.devices.values() == ["auto", "cpu", "cuda:0"]


def test_a_worker_that_cannot_start_gives_an_answer_that_says_why():
    class Unreachable(DescribedConnection):
        def client(self):
            raise ConnectionRefusedError("nothing listens on gpu:8765")

    logic = InferenceLogic(Unreachable())
    inquiry = WorkerInquiry(logic)
    inquiry.start()
    answer = answerOf(inquiry)
    assert answer.catalog is None
    assert answer.error == "the worker at gpu:8765 could not be started: nothing listens on gpu:8765"


def test_a_worker_that_does_not_answer_the_request_gives_the_reason():
    class Silent(FakeClient):
        def list_models(self, timeout=30.0):
            raise TimeoutError(f"the worker did not answer the list_models request within {timeout:g} s")

    connection = DescribedConnection(Silent())
    connection.client()
    inquiry = WorkerInquiry(InferenceLogic(connection), timeout=0.5)
    inquiry.start()
    answer = answerOf(inquiry)
    assert "did not answer the models/status request" in answer.error and "within 0.5 s" in answer.error
