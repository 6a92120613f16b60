"""InferenceLogic.addResultsToScene: all-or-nothing outputs, replacing only this module's earlier ones."""

from __future__ import annotations

import numpy as np
import pytest
import slicer

from nnmamba.results import ClassificationResult, LandmarkResult
from NNMambaSlicerLib.InferenceLogic import InferenceLogic, JobOutcome, JobStatus, ResultsNotAddedError
from NNMambaSlicerLib.OutputRegistry import OutputRegistry
from test_result_builders import landmarkResult, segmentationResult


class NoWorker:
    """A connection the scene-side methods must never touch."""

    isLocal = True
    isStarted = False

    def client(self):
        raise AssertionError("the scene-side logic must not talk to the worker")

    def currentClient(self):
        raise AssertionError("the scene-side logic must not talk to the worker")

    def restart(self):
        raise AssertionError("the scene-side logic must not restart the worker")

    def close(self):
        pass


def results(volumeNode) -> dict:
    return {"segmentation": segmentationResult(volumeNode), "landmarks": landmarkResult(volumeNode),
            "classification": ClassificationResult(["CT", "MR"], np.array([0.3, 0.7]), "cls")}


def test_outputs_are_named_after_the_input_and_tagged_with_it(obliqueVolume):
    outputs = InferenceLogic(NoWorker()).addResultsToScene(obliqueVolume, results(obliqueVolume))
    assert outputs["segmentation"][0].GetName() == "Oblique head segmentation"
    assert outputs["landmarks"][0].GetName() == "Oblique head landmarks"
    assert [n.GetName() for n in outputs["classification"]] == [
        "Oblique head classification probabilities", "Oblique head classification chart data", "CT", "MR",
        "Oblique head classification"]
    assert OutputRegistry(slicer.mrmlScene).outputsOf(obliqueVolume).keys() == {"segmentation", "landmarks",
                                                                                 "classification"}


def test_rerunning_without_replacing_keeps_both_under_distinct_names(obliqueVolume):
    logic = InferenceLogic(NoWorker())
    first = logic.addResultsToScene(obliqueVolume, results(obliqueVolume))
    second = logic.addResultsToScene(obliqueVolume, results(obliqueVolume))
    assert slicer.mrmlScene.IsNodePresent(first["segmentation"][0])
    assert second["segmentation"][0].GetName() == "Oblique head segmentation_1"


def test_replacing_removes_only_this_volumes_earlier_outputs_of_the_rerun_tasks(obliqueVolume):
    logic = InferenceLogic(NoWorker())
    other = slicer.util.addVolumeFromArray(np.zeros((16, 20, 24), np.int16), name="Other")
    otherOutputs = logic.addResultsToScene(other, {"landmarks": landmarkResult(other)})
    first = logic.addResultsToScene(obliqueVolume, results(obliqueVolume))
    userNode = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Oblique head segmentation")

    second = logic.addResultsToScene(obliqueVolume, {"segmentation": segmentationResult(obliqueVolume)},
                                     replaceExisting=True)
    assert not slicer.mrmlScene.IsNodePresent(first["segmentation"][0])
    assert slicer.mrmlScene.IsNodePresent(first["landmarks"][0])          # task not re-run: kept
    assert slicer.mrmlScene.IsNodePresent(otherOutputs["landmarks"][0])   # another volume's: kept
    assert slicer.mrmlScene.IsNodePresent(userNode)                       # the user's own node: kept
    assert second["segmentation"][0].GetName() == "Oblique head segmentation"


def test_a_task_that_cannot_be_built_keeps_its_earlier_outputs_and_the_other_tasks_are_added(obliqueVolume):
    logic = InferenceLogic(NoWorker())
    first = logic.addResultsToScene(obliqueVolume, results(obliqueVolume))
    broken = results(obliqueVolume)
    broken["classification"] = ClassificationResult(["CT", "MR"], np.array([0.3]), "cls")  # one probability short
    with pytest.raises(ResultsNotAddedError, match=r"classification: .*must match one to one.*The segmentation, "
                                                   r"landmarks results were added") as raised:
        logic.addResultsToScene(obliqueVolume, broken, replaceExisting=True)
    added = raised.value.outputs
    assert sorted(added) == ["landmarks", "segmentation"]
    assert all(slicer.mrmlScene.IsNodePresent(n) for nodes in added.values() for n in nodes)
    assert all(slicer.mrmlScene.IsNodePresent(n) for n in first["classification"])       # kept: nothing new
    assert not any(slicer.mrmlScene.IsNodePresent(n) for n in first["segmentation"] + first["landmarks"])
    assert sorted(OutputRegistry(slicer.mrmlScene).outputsOf(obliqueVolume)) == ["classification", "landmarks",
                                                                                 "segmentation"]


def test_a_segmentation_slicer_cannot_import_does_not_cost_the_jobs_landmarks_and_classification(obliqueVolume):
    broken = results(obliqueVolume)
    broken["segmentation"].labelmap = broken["segmentation"].labelmap[:, :, :-1]  # not on the input grid
    nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
    with pytest.raises(ResultsNotAddedError, match="segmentation: .*input grid") as raised:
        InferenceLogic(NoWorker()).addResultsToScene(obliqueVolume, broken)
    assert sorted(raised.value.outputs) == ["classification", "landmarks"]
    added = sum(len(nodes) for nodes in raised.value.outputs.values())
    assert slicer.mrmlScene.GetNumberOfNodes() > nodesBefore
    assert not slicer.mrmlScene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems()
    assert added == 1 + 5  # markups; table, chart data, two series, chart


def test_outputs_follow_the_inputs_parent_transform(obliqueVolume):
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    obliqueVolume.SetAndObserveTransformNodeID(transform.GetID())
    outputs = InferenceLogic(NoWorker()).addResultsToScene(obliqueVolume, {"landmarks": landmarkResult(obliqueVolume)})
    assert outputs["landmarks"][0].GetTransformNodeID() == transform.GetID()


def test_tasks_are_checked_and_named_in_the_error(app):
    with pytest.raises(ValueError, match=r"tasks must be a non-empty list of \['segmentation', 'landmarks', "
                                         r"'classification'\], got \['segment'\]"):
        InferenceLogic.normalizeTasks(["segment"])
    assert InferenceLogic.normalizeTasks("landmarks") == ["landmarks"]


def test_a_single_model_name_with_several_tasks_is_refused(obliqueVolume):
    with pytest.raises(ValueError, match="model='x' is ambiguous with 2 tasks"):
        InferenceLogic(NoWorker()).runAsync(obliqueVolume, print, tasks=["segmentation", "landmarks"], model="x")


def test_a_model_needing_more_channels_than_given_is_refused_before_anything_is_sent(obliqueVolume, tmp_path,
                                                                                     monkeypatch):
    import json
    from nnmamba import model_card

    card = json.loads(model_card.default_model("classification").path.read_text())
    card["name"] = "two-channel-cls"
    card["input"]["channels"] = [{"name": "T1", "modality": "MR"}, {"name": "T2", "modality": "MR"}]
    card["hyperparameters"]["in_ch"] = 2
    (tmp_path / "two-channel-cls.json").write_text(json.dumps(card))
    monkeypatch.setenv("NNMAMBA_MODELS_DIR", str(tmp_path))
    with pytest.raises(Exception, match=r"'two-channel-cls' needs 2 input volume\(s\) \(T1, T2\) but 1 were given"):
        InferenceLogic(NoWorker()).run(obliqueVolume, tasks="classification", model="two-channel-cls")


def test_outputs_go_into_the_inputs_subject_hierarchy_folder(obliqueVolume):
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    folder = shNode.CreateFolderItem(shNode.GetSceneItemID(), "Patient 7")
    shNode.CreateItem(folder, obliqueVolume)  # Slicer's GUI would have made the volume's item
    outputs = InferenceLogic(NoWorker()).addResultsToScene(obliqueVolume, results(obliqueVolume))
    for nodes in outputs.values():
        for node in nodes:
            assert shNode.GetItemParent(shNode.GetItemByDataNode(node)) == folder, node.GetName()


@pytest.mark.parametrize("status, code, expected", [
    ("FAILED", "bad_input", "InputError"), ("FAILED", "bad_model", "ModelError"),
    ("FAILED", "output_exists", "OutputExistsError"), ("FAILED", "backend_unavailable", "BackendUnavailableError"),
    ("FAILED", "unauthorized", "WorkerAuthError"), ("FAILED", "worker_unavailable", "WorkerError"),
    ("FAILED", "internal", "WorkerError"), ("CANCELLED", None, "Cancelled"), ("WORKER_DIED", "worker_died",
                                                                             "WorkerDiedError")])
def test_a_failed_job_raises_the_same_error_type_as_the_worker_clients_run(status, code, expected):
    from nnmamba.worker.errors import error_for

    outcome = JobOutcome("job-1", JobStatus[status], message="what happened", errorCode=code)
    error = InferenceLogic.errorFor(outcome)
    assert type(error).__name__ == expected
    if status == "FAILED":  # WorkerClient.run turns an ERROR event into error_for(code, message)
        assert type(error) is type(error_for(code, "what happened"))
    assert "what happened" in str(error)


def test_an_ending_with_results_not_added_raises_with_the_outputs_that_were_added(obliqueVolume):
    outcome = JobOutcome("job-1", JobStatus.FAILED, outputs={"landmarks": ["node"]}, message="m",
                         errorCode=ResultsNotAddedError.code)
    error = InferenceLogic.errorFor(outcome)
    assert isinstance(error, ResultsNotAddedError) and isinstance(error, RuntimeError)
    assert error.outputs == {"landmarks": ["node"]}


def test_an_rgb_vector_volume_is_refused_for_a_one_channel_model_with_the_conversion_named(app):
    rgb = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "Photo")
    slicer.util.updateVolumeFromArray(rgb, np.zeros((4, 5, 6, 3), np.uint8))
    logic = InferenceLogic(NoWorker())
    assert InferenceLogic.channelsOf(rgb) == 3
    problem = logic.channelProblem(rgb, ["classification"])
    assert "'Photo' has 3 components" in problem and "Vector to Scalar Volume" in problem
    with pytest.raises(Exception, match="'Photo' has 3 components"):
        logic.runAsync(rgb, print, tasks="classification")


def test_a_scalar_volume_suits_the_shipped_one_channel_models(obliqueVolume):
    logic = InferenceLogic(NoWorker())
    assert logic.channelProblem(obliqueVolume, ["segmentation", "landmarks", "classification"]) == ""
    assert "1 input volume(s)" in logic.channelProblem([obliqueVolume, obliqueVolume], ["classification"])


def test_every_result_node_says_its_models_quality_and_that_it_is_not_for_clinical_use(obliqueVolume):
    logic = InferenceLogic(NoWorker())
    logic.resultNodes.qualities = {"test-seg": "research"}
    outputs = logic.addResultsToScene(obliqueVolume, results(obliqueVolume))
    nodes = [node for taskNodes in outputs.values() for node in taskNodes]
    assert len(nodes) == 8
    for node in nodes:
        assert "not for clinical use" in node.GetDescription(), node.GetName()
    assert "quality: research" in outputs["segmentation"][0].GetDescription()
    assert "quality: not stated" in outputs["landmarks"][0].GetDescription()  # no card named test-lm here


def test_a_segmentation_comes_with_a_table_of_each_structures_volume_in_millilitres(obliqueVolume):
    result = segmentationResult(obliqueVolume)
    outputs = InferenceLogic(NoWorker()).addResultsToScene(obliqueVolume, {"segmentation": result})
    segmentation, table = outputs["segmentation"]
    assert table.GetName() == "Oblique head segmentation volumes" and table.IsA("vtkMRMLTableNode")
    millilitresPerVoxel = float(np.prod(result.geometry.spacing)) / 1000
    assert table.GetNumberOfRows() == len(result.segments)
    for row, info in enumerate(result.segments):
        assert table.GetCellText(row, 0) == info.name
        voxels = int((result.labelmap == info.label).sum())
        assert int(table.GetCellText(row, 2)) == voxels
        assert float(table.GetCellText(row, 3)) == pytest.approx(voxels * millilitresPerVoxel)
    assert voxels == 0 or int(table.GetCellText(0, 2)) > 0  # the first segment (brain) is not empty


def test_replacing_keeps_a_segmentation_and_landmarks_the_user_edited_by_hand(obliqueVolume):
    logic = InferenceLogic(NoWorker())
    first = logic.addResultsToScene(obliqueVolume, results(obliqueVolume))
    untouched = logic.addResultsToScene(obliqueVolume, {"segmentation": segmentationResult(obliqueVolume)})
    edited = first["segmentation"][0]
    segmentId = edited.GetSegmentation().GetSegmentIdBySegmentName("brain")
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(edited, segmentId, obliqueVolume)
    mask[0, 0, 0] = 1  # one voxel painted, as in Segment Editor
    slicer.util.updateSegmentBinaryLabelmapFromArray(mask, edited, segmentId, obliqueVolume)
    first["landmarks"][0].SetNthControlPointPosition(0, 1.0, 2.0, 3.0)  # a landmark dragged

    second = logic.addResultsToScene(obliqueVolume, results(obliqueVolume), replaceExisting=True)
    assert slicer.mrmlScene.IsNodePresent(edited) and slicer.mrmlScene.IsNodePresent(first["landmarks"][0])
    assert not slicer.mrmlScene.IsNodePresent(untouched["segmentation"][0])  # not edited: replaced
    assert not slicer.mrmlScene.IsNodePresent(first["classification"][0])
    assert {n.GetName() for n in logic.resultNodes.keptEdited} == {edited.GetName(), first["landmarks"][0].GetName()}
    assert "edited by hand" in logic.resultNodes.summary(second, {})


def test_segments_go_into_the_segmentation_node_the_user_chose_replacing_its_segments(obliqueVolume):
    chosen = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My segmentation")
    chosen.CreateDefaultDisplayNodes()
    chosen.GetSegmentation().AddEmptySegment("old", "old segment")
    before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    outputs = InferenceLogic(NoWorker()).resultNodes.add(
        obliqueVolume, {"segmentation": segmentationResult(obliqueVolume)}, outputSegmentation=chosen)
    assert outputs["segmentation"][0] is chosen and chosen.GetName() == "My segmentation"
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before  # no extra node left
    segmentation = chosen.GetSegmentation()
    names = sorted(segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments()))
    assert names == ["brain", "tumour", "ventricles"]
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(chosen, segmentation.GetSegmentIdBySegmentName("tumour"),
                                                      obliqueVolume)
    np.testing.assert_array_equal(mask > 0, segmentationResult(obliqueVolume).labelmap == 3)
    assert "not for clinical use" in chosen.GetDescription()
    assert OutputRegistry(slicer.mrmlScene).outputsOf(obliqueVolume)["segmentation"][0] is chosen
