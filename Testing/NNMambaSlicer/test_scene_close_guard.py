"""SceneCloseGuard on a real slicer-core scene: closing it drops the running job, once, in order."""

from __future__ import annotations

import time

import numpy as np
import pytest
import slicer

from fake_worker import FakeConnection
from NNMambaSlicerLib.InferenceLogic import InferenceLogic, JobStatus
from NNMambaSlicerLib.SceneCloseGuard import SceneCloseGuard


def sentJob(logic: InferenceLogic, volumeNode) -> str:
    stages = []
    logic.progress.connect(lambda jobId, fraction, stage: stages.append(stage))
    jobId = logic.submit(volumeNode, ["segmentation"])
    deadline = time.monotonic() + 10
    while "sent to the worker" not in stages:
        assert time.monotonic() < deadline, "the job was never sent to the worker"
        logic.poll(0.01)
    return jobId


@pytest.fixture
def guards():
    """Makes guards and stops them after the test: an observer left on a scene outlives the test."""
    made = []

    def make(*args) -> SceneCloseGuard:
        made.append(SceneCloseGuard(*args))
        return made[-1]

    yield make
    for guard in made:
        guard.close()


def test_a_single_scene_observer_cannot_tell_start_of_close_from_end_by_the_event_name(app):
    names = []
    tags = [app.scene.AddObserver(event, lambda caller, name: names.append(name))
            for event in (app.scene.StartCloseEvent, app.scene.EndCloseEvent)]
    app.scene.Clear(False)
    for tag in tags:
        app.scene.RemoveObserver(tag)
    assert names == ["NoEvent", "NoEvent"]  # why the guard keeps one observer per event


def test_closing_the_scene_drops_the_running_job_and_reports_it_cancelled(app, obliqueVolume, guards):
    logic = InferenceLogic(FakeConnection())
    outcomes = []
    logic.finished.connect(outcomes.append)
    jobId = sentJob(logic, obliqueVolume)
    guards(app.scene, logic.dropJobs)

    app.scene.Clear(False)
    assert [(o.jobId, o.status) for o in outcomes] == [(jobId, JobStatus.CANCELLED)]  # at once, in the close
    assert not logic.isBusy
    deadline = time.monotonic() + 10
    while logic.connection.fakeClient.cancelled != ["worker-1"]:  # sent off the GUI thread
        assert time.monotonic() < deadline, "the cancel never reached the worker"
        time.sleep(0.01)
    logic.close()


def test_the_panel_lets_go_of_its_parameter_node_on_start_and_takes_a_new_one_on_end(app, guards):
    calls = []
    guards(app.scene, lambda: calls.append(("start", app.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))),
           lambda: calls.append(("end", app.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))))
    slicer.util.addVolumeFromArray(np.zeros((2, 2, 2)), name="gone after the close")
    app.scene.Clear(False)
    assert calls == [("start", 1), ("end", 0)]


def test_after_close_the_guard_no_longer_reacts(app):
    calls = []
    guard = SceneCloseGuard(app.scene, lambda: calls.append("start"))
    guard.close()
    app.scene.Clear(False)
    assert calls == []
