"""End to end through a REAL local worker process: volume node -> `nnmamba serve` -> result nodes."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import slicer
import vtk

from nnmamba import model_card
from nnmamba.data import sample_volume_path
from nnmamba.errors import ModelError
from NNMambaSlicerLib.InferenceLogic import InferenceLogic, JobStatus
from NNMambaSlicerLib.WorkerConnection import WorkerConnection, WorkerSettings
from slicer_app import obliqueIjkToRas

# one table row per class of the shipped scan-type model
SCAN_TYPE_CLASSES = len(model_card.default_model("classification").classes)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def connection():
    connection = WorkerConnection(WorkerSettings(device="cpu", threads=int(os.environ.get("OMP_NUM_THREADS", 2))))
    yield connection
    connection.close()


@pytest.fixture
def sampleOnObliqueGrid(app):
    """The embedded brain MR, cropped to 96 x 96 x 25 voxels and put on an oblique grid."""
    sample = app.logics["Volumes"].AddArchetypeVolume(str(sample_volume_path()), "sample")
    array = slicer.util.arrayFromVolume(sample)[:, 80:176, 80:176].copy()
    spacing = np.array(sample.GetSpacing())
    ijkToRas = obliqueIjkToRas()
    ijkToRas[:3, :3] = ijkToRas[:3, :3] / np.linalg.norm(ijkToRas[:3, :3], axis=0) * spacing
    app.scene.RemoveNode(sample)
    node = slicer.util.addVolumeFromArray(array, ijkToRAS=ijkToRas, name="Sample")
    node.CreateDefaultDisplayNodes()
    return node


def waitFor(logic: InferenceLogic, jobId: str, seconds: float = 300.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for outcome in logic.poll(timeout=0.2):
            if outcome.jobId == jobId:
                return outcome
    raise AssertionError(f"job {jobId} did not end within {seconds} s")


def test_three_tasks_come_back_as_named_nodes_on_the_inputs_geometry_and_survive_a_scene_reload(
        connection, sampleOnObliqueGrid, app, tmp_path):
    logic = InferenceLogic(connection)
    stages = []
    jobId = logic.runAsync(sampleOnObliqueGrid, lambda outcome: None,
                           tasks=["segmentation", "landmarks", "classification"],
                           onProgress=lambda fraction, stage: stages.append((fraction, stage)))
    outcome = waitFor(logic, jobId)
    assert outcome.status is JobStatus.SUCCEEDED, outcome.message
    assert stages and all(0.0 <= f <= 1.0 for f, _ in stages)

    segmentationNode = outcome.outputs["segmentation"][0]
    card = model_card.default_model("segmentation")
    segmentation = segmentationNode.GetSegmentation()
    assert segmentationNode.GetName() == "Sample segmentation"
    assert segmentation.GetNumberOfSegments() == len(card.labels)
    for info in card.labels:
        segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(info.name))
        assert segment.GetColor() == pytest.approx(tuple(info.color), abs=1e-6)
        assert segment.GetLabelValue() == info.label or not _voxels(segmentationNode, info.name,
                                                                     sampleOnObliqueGrid).any()
    labelmap = outcome.results["segmentation"].labelmap
    for info in card.labels:  # every segment covers exactly its label's voxels of the worker's labelmap
        np.testing.assert_array_equal(_voxels(segmentationNode, info.name, sampleOnObliqueGrid),
                                      labelmap == info.label, err_msg=info.name)
    assert segmentationNode.GetNodeReferenceID("referenceImageGeometryRef") == sampleOnObliqueGrid.GetID()
    if labelmap.any():
        assert segmentation.ContainsRepresentation("Closed surface")

    landmarks = outcome.outputs["landmarks"][0]
    lmCard = model_card.default_model("landmarks")
    assert landmarks.GetNumberOfControlPoints() == len(lmCard.landmarks)
    assert [landmarks.GetNthControlPointLabel(i) for i in range(3)] == [lm.name for lm in lmCard.landmarks[:3]]
    lps = outcome.results["landmarks"].points_lps
    assert landmarks.GetNthControlPointPosition(5) == pytest.approx((-lps[5][0], -lps[5][1], lps[5][2]), abs=1e-6)

    table = outcome.outputs["classification"][0]
    clsCard = model_card.default_model("classification")
    assert [table.GetCellText(r, 0) for r in range(table.GetNumberOfRows())] == [c.name for c in clsCard.classes]

    mrml = app.saveScene(tmp_path, [sampleOnObliqueGrid, segmentationNode, landmarks, table])
    reloaded = type(app)()
    reloaded.loadScene(mrml)
    segmentation2 = reloaded.scene.GetFirstNodeByName("Sample segmentation")
    assert segmentation2.GetSegmentation().GetNumberOfSegments() == len(card.labels)
    assert reloaded.scene.GetFirstNodeByName("Sample landmarks").GetNumberOfControlPoints() == len(lmCard.landmarks)
    assert reloaded.scene.GetFirstNodeByName("Sample classification probabilities").GetNumberOfRows() == SCAN_TYPE_CLASSES
    chart = reloaded.scene.GetFirstNodeByName("Sample classification")
    assert chart.GetNumberOfPlotSeriesNodes() == SCAN_TYPE_CLASSES  # one bar per class
    # re-running after the reload still finds (and can replace) the earlier outputs
    reloadedVolume = reloaded.scene.GetFirstNodeByName("Sample")
    assert InferenceLogic(connection, scene=reloaded.scene).existingOutputs(reloadedVolume).keys() == {
        "segmentation", "landmarks", "classification"}


def test_an_unknown_model_is_reported_by_the_worker_and_nothing_is_added(connection, sampleOnObliqueGrid):
    logic = InferenceLogic(connection)
    nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
    with pytest.raises(ModelError, match="no-such-model"):
        logic.run(sampleOnObliqueGrid, tasks="classification", models={"classification": "no-such-model"},
                  timeout=120)
    assert slicer.mrmlScene.GetNumberOfNodes() == nodesBefore


def test_cancel_ends_the_job_promptly_and_adds_nothing(connection, sampleOnObliqueGrid):
    logic = InferenceLogic(connection, cancelGraceSeconds=20.0)
    nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
    jobId = logic.runAsync(sampleOnObliqueGrid, lambda outcome: None, tasks=["segmentation", "landmarks"])
    started = time.monotonic()
    logic.cancel(jobId)
    outcome = waitFor(logic, jobId, seconds=60)
    assert outcome.status is JobStatus.CANCELLED
    assert time.monotonic() - started < 30
    assert slicer.mrmlScene.GetNumberOfNodes() == nodesBefore


def test_a_killed_worker_is_reported_in_plain_words_and_restarted(connection, sampleOnObliqueGrid):
    logic = InferenceLogic(connection)
    restarts = []
    logic.workerRestarted.connect(restarts.append)
    stages = []
    jobId = logic.runAsync(sampleOnObliqueGrid, lambda outcome: None, tasks=["segmentation"],
                           onProgress=lambda fraction, stage: stages.append(stage))
    deadline = time.monotonic() + 120
    while "sent to the worker" not in stages and time.monotonic() < deadline:
        logic.poll(timeout=0.1)  # the worker starts in the background; the job is sent once it listens
    pid = connection.workerProcessId()
    os.killpg(os.getpgid(pid), signal.SIGKILL)  # the worker runs in its own process group
    outcome = waitFor(logic, jobId, seconds=120)
    assert outcome.status is JobStatus.WORKER_DIED
    assert outcome.message.startswith("The nnMamba worker stopped unexpectedly")
    assert "It is being restarted" in outcome.message and restarts
    outputs = logic.run(sampleOnObliqueGrid, tasks="classification", timeout=300)  # the new worker works
    assert outputs["classification"][0].GetNumberOfRows() == SCAN_TYPE_CLASSES
    second = connection.workerProcessId()
    assert second not in (None, pid)
    os.killpg(os.getpgid(second), signal.SIGKILL)  # now a death while idle: nobody polls, the next job restarts it
    time.sleep(0.5)
    outputs = logic.run(sampleOnObliqueGrid, tasks="classification", timeout=300)
    assert outputs["classification"][0].GetNumberOfRows() == SCAN_TYPE_CLASSES
    assert connection.workerProcessId() not in (None, pid, second)


def _voxels(segmentationNode, segmentName: str, referenceVolume) -> np.ndarray:
    segmentId = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(segmentName)
    return slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, referenceVolume) > 0


def test_a_worker_python_without_torch_fails_the_job_with_the_reason_and_nothing_is_added(
        sampleOnObliqueGrid, tmp_path):
    import venv

    venv.create(tmp_path / "bare", with_pip=False, symlinks=True)  # a real Python lacking the engine's packages
    bare = WorkerConnection(WorkerSettings(pythonExecutable=str(tmp_path / "bare" / "bin" / "python"), device="cpu"))
    logic = InferenceLogic(bare)
    nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
    try:
        jobId = logic.runAsync(sampleOnObliqueGrid, lambda outcome: None, tasks="classification")
        outcome = waitFor(logic, jobId, seconds=120)
    finally:
        logic.close()
    assert outcome.status is JobStatus.FAILED
    assert outcome.message.startswith("The nnMamba worker could not be started:")
    assert "Check the worker settings" in outcome.message
    assert slicer.mrmlScene.GetNumberOfNodes() == nodesBefore


def test_a_worker_that_does_not_stop_in_time_is_killed_with_its_process_group(connection, sampleOnObliqueGrid):
    logic = InferenceLogic(connection, cancelGraceSeconds=0.0)  # no grace: the escalation path at once
    stages = []
    jobId = logic.runAsync(sampleOnObliqueGrid, lambda outcome: None, tasks=["segmentation", "landmarks"],
                           onProgress=lambda fraction, stage: stages.append(stage))
    deadline = time.monotonic() + 120
    while "sent to the worker" not in stages and time.monotonic() < deadline:
        logic.poll(timeout=0.1)
    pid = connection.workerProcessId()
    group = os.getpgid(pid)
    logic.cancel(jobId)
    outcome = waitFor(logic, jobId, seconds=60)
    assert outcome.status is JobStatus.CANCELLED
    assert "did not stop in time" in outcome.message
    deadline = time.monotonic() + 30  # it is stopped off the GUI thread, by the restart
    with pytest.raises(ProcessLookupError):
        while time.monotonic() < deadline:
            os.killpg(group, 0)  # raises once nothing of the old worker's process group is left
            time.sleep(0.1)
    outputs = logic.run(sampleOnObliqueGrid, tasks="classification", timeout=300)  # and a new one serves
    assert outputs["classification"][0].GetNumberOfRows() == SCAN_TYPE_CLASSES


def test_the_shipped_models_pass_the_self_tests_content_checks_on_the_whole_sample(app, connection):
    """What the module's self-test (NNMambaSlicerTest) asserts, on the same volume, without Slicer's GUI."""
    from NNMambaSlicerLib.ResultChecks import ResultChecks
    volume = app.logics["Volumes"].AddArchetypeVolume(str(sample_volume_path()), "sample")
    logic = InferenceLogic(connection)
    outputs = logic.run(volume, tasks=["segmentation", "landmarks", "classification"], timeout=600)
    assert ResultChecks().problems(outputs, volume) == []
