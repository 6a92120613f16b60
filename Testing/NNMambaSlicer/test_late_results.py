"""A result that arrives late never lands on the wrong volume: issue 21's "wrong patient" sequence on
real slicer-core MRML (job on patient A, Close Scene, load patient B, A's result arrives)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import slicer

from fake_worker import FakeClient, FakeConnection
from nnmamba.results import ClassificationResult
from nnmamba.worker.protocol import Event, EventKind
from NNMambaSlicerLib.InferenceLogic import InferenceLogic, JobStatus
from NNMambaSlicerLib.SceneCloseGuard import SceneCloseGuard
from slicer_app import obliqueIjkToRas
from test_result_builders import landmarkResult, segmentationResult

OUTPUT_CLASSES = ("vtkMRMLSegmentationNode", "vtkMRMLMarkupsFiducialNode", "vtkMRMLTableNode",
                  "vtkMRMLPlotChartNode")


class ClientThatFinishesAnyway(FakeClient):
    """A worker whose job was already done when the cancel came: it answers with the RESULT."""

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)


def patientVolume(name: str, value: int):
    node = slicer.util.addVolumeFromArray(np.full((16, 20, 24), value, np.int16), ijkToRAS=obliqueIjkToRas(),
                                          name=name)
    node.CreateDefaultDisplayNodes()
    return node


def sendJob(logic: InferenceLogic, volumeNode, tasks=("segmentation", "landmarks", "classification")) -> str:
    jobId = logic.submit(volumeNode, list(tasks))
    deadline = time.monotonic() + 10
    while not logic.connection.fakeClient.submitted or logic._jobs[jobId].workerJobId is None:
        assert time.monotonic() < deadline, "the job was never sent to the worker"
        logic.poll(0.01)
    return jobId


def resultEvent(workerJobId: str, volumeNode) -> Event:
    results = {"segmentation": segmentationResult(volumeNode), "landmarks": landmarkResult(volumeNode),
               "classification": ClassificationResult(["T1", "CT"], np.array([0.9, 0.1]), "cls")}
    return Event(EventKind.RESULT, workerJobId, results=results, elapsed_s=1.0)


def waitUntil(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.01)


def outputNodes(scene) -> list:
    return [n.GetName() for c in OUTPUT_CLASSES for n in slicer.util.getNodesByClass(c)
            if n.GetScene() is scene]


@pytest.mark.parametrize("panelOpen", [True, False], ids=["with the panel", "from a script"])
def test_a_late_result_for_patient_a_is_not_built_on_patient_b_after_close_scene(app, panelOpen):
    client = ClientThatFinishesAnyway()
    logic = InferenceLogic(FakeConnection(client))
    outcomes = []
    logic.finished.connect(outcomes.append)
    patientA = patientVolume("Patient A T1", 1)
    idOfA = patientA.GetID()
    jobId = sendJob(logic, patientA)
    guard = SceneCloseGuard(app.scene, logic.dropJobs) if panelOpen else None  # what the panel observes

    app.scene.Clear(False)                      # File > Close Scene
    patientB = patientVolume("Patient B CT", 2)
    assert patientB.GetID() == idOfA            # the ID is reused: finding the input by ID would pick B
    client.events.append(resultEvent("worker-1", patientA))  # A's result, computed before the cancel arrived
    logic.poll(0.0)

    waitUntil(lambda: client.cancelled == ["worker-1"])
    assert [(o.jobId, o.status, o.outputs) for o in outcomes] == [(jobId, JobStatus.CANCELLED, {})]
    assert outputNodes(app.scene) == []
    assert not logic.isBusy
    if guard is not None:
        guard.close()
    logic.close()


def test_a_cancelled_job_whose_result_arrives_anyway_builds_nothing(app):
    client = ClientThatFinishesAnyway()
    logic = InferenceLogic(FakeConnection(client))
    volume = patientVolume("Patient A T1", 1)
    jobId = sendJob(logic, volume)
    logic.cancel(jobId)
    client.events.append(resultEvent("worker-1", volume))
    ended = logic.poll(0.0)
    assert [(o.jobId, o.status) for o in ended] == [(jobId, JobStatus.CANCELLED)]
    assert outputNodes(app.scene) == []
    logic.close()


def test_a_result_for_a_volume_resampled_meanwhile_is_refused_for_every_task(app):
    for task in ("landmarks", "classification", "segmentation"):
        client = FakeClient()
        logic = InferenceLogic(FakeConnection(client))
        volume = patientVolume(f"Patient A {task}", 1)
        jobId = sendJob(logic, volume, [task])
        volume.SetSpacing(2.0, 2.0, 2.0)        # e.g. resampled in place while the worker ran
        event = resultEvent("worker-1", volume)
        event.results = {task: event.results[task]}
        client.events.append(event)
        ended = logic.poll(0.0)
        assert [(o.jobId, o.status) for o in ended] == [(jobId, JobStatus.FAILED)], task
        assert "moved or resampled" in ended[0].message and "nothing was added" in ended[0].message
        assert outputNodes(app.scene) == [], task
        logic.close()


def test_a_job_whose_volume_was_deleted_is_cancelled_and_its_result_not_built_on_the_next_volume(app):
    client = FakeClient()
    logic = InferenceLogic(FakeConnection(client))
    volume = patientVolume("Patient A T1", 1)
    sendJob(logic, volume)
    app.scene.RemoveNode(volume)
    replacement = patientVolume("Patient B CT", 2)
    client.events.append(resultEvent("worker-1", replacement))
    ended = logic.poll(0.0)
    assert ended[0].status is JobStatus.CANCELLED and "left the scene" in ended[0].message
    waitUntil(lambda: client.cancelled == ["worker-1"])
    assert outputNodes(app.scene) == []
    logic.close()


def test_a_job_dropped_during_its_upload_is_cancelled_on_the_worker_when_the_upload_ends(app):
    import threading
    gate = threading.Event()
    client = FakeClient(uploadGate=gate)
    logic = InferenceLogic(FakeConnection(client))
    logic.submit(patientVolume("Patient A T1", 1), ["segmentation"])
    deadline = time.monotonic() + 10
    while not client.submitThreads:
        assert time.monotonic() < deadline
        logic.poll(0.01)
    app.scene.Clear(False)                      # from a script: no panel, so the next poll drops it
    logic.poll(0.0)
    assert not logic.isBusy and logic.needsPolling  # the timer keeps polling until the upload ends
    gate.set()
    while not client.cancelled:
        assert time.monotonic() < deadline, "the abandoned job was never cancelled on the worker"
        logic.poll(0.01)
    assert client.cancelled == ["worker-1"]
    logic.poll(0.0)
    assert not logic.needsPolling
    logic.close()
