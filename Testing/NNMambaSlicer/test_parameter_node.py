"""ParameterNode: typed settings stored on a scripted module node, saved with the scene."""

from __future__ import annotations

import pytest
import slicer

from NNMambaSlicerLib.ParameterNode import ParameterNode


def test_unset_fields_read_as_their_defaults(app):
    parameters = ParameterNode.getOrCreate(app.scene)
    assert parameters.segmentationEnabled is True and parameters.landmarksEnabled is False
    assert parameters.overlap == 0.5 and parameters.device == "auto" and parameters.tta is False
    assert parameters.inputVolume is None and parameters.extraInputVolumes == []


def test_one_parameter_node_per_scene(app):
    first = ParameterNode.getOrCreate(app.scene)
    assert ParameterNode.getOrCreate(app.scene).node is first.node


def test_informs_which_values_are_allowed_when_a_setting_is_out_of_range(app):
    parameters = ParameterNode.getOrCreate(app.scene)
    with pytest.raises(ValueError, match=r"Overlap must be one of 0.0..0.9, got 1.2"):
        parameters.overlap = 1.2
    with pytest.raises(ValueError, match="Device must be one of auto, cpu, mps, cuda, cuda:N or remote, got 'tpu'"):
        parameters.device = "tpu"
    with pytest.raises(ValueError, match="EarlierResults must be one of"):
        parameters.earlierResults = "merge"


def test_a_device_the_worker_reported_is_kept_even_beyond_the_usual_list(app):
    parameters = ParameterNode.getOrCreate(app.scene)
    parameters.device = "cuda:7"
    assert parameters.device == "cuda:7"
    parameters.device = "mps"
    assert parameters.workerOptions()["device"] == "mps"


def test_settings_and_input_references_survive_saving_and_reloading_the_scene(obliqueVolume, app, tmp_path):
    parameters = ParameterNode.getOrCreate(app.scene)
    parameters.inputVolume = obliqueVolume
    parameters.setExtraInputVolume(0, obliqueVolume)
    parameters.landmarksEnabled = True
    parameters.landmarksModel = "afids-landmarks"
    parameters.overlap = 0.25
    parameters.device = "cpu"
    parameters.earlierResults, parameters.show3D, parameters.allVolumes = "keep", False, True
    mrml = app.saveScene(tmp_path, [obliqueVolume])

    reloaded = type(app)()
    reloaded.loadScene(mrml)
    again = ParameterNode.getOrCreate(reloaded.scene)
    assert again.inputVolume.GetName() == "Oblique head"
    assert [v.GetName() for v in again.extraInputVolumes] == ["Oblique head"]
    assert again.enabledTasks() == ["segmentation", "landmarks"]
    assert again.models() == {"landmarks": "afids-landmarks"}
    assert (again.earlierResults, again.show3D, again.allVolumes) == ("keep", False, True)
    assert again.workerOptions() == {"tta": False, "overlap": 0.25, "precision": "auto", "device": "cpu"}


def test_extra_channel_slots_keep_their_positions(obliqueVolume, app):
    parameters = ParameterNode.getOrCreate(app.scene)
    parameters.setExtraInputVolume(1, obliqueVolume)
    assert parameters.extraInputVolumes == [None, obliqueVolume]
    parameters.setExtraInputVolume(1, None)
    assert parameters.extraInputVolumes == []
    with pytest.raises(ValueError, match="slot must be 0..2, got 3"):
        parameters.setExtraInputVolume(3, obliqueVolume)


def test_a_hand_edited_bad_value_falls_back_to_the_default(app):
    parameters = ParameterNode.getOrCreate(app.scene)
    parameters.node.SetParameter("Overlap", "lots")
    parameters.node.SetParameter("Device", "tpu")
    assert parameters.overlap == 0.5 and parameters.device == "auto"


def test_worker_options_from_the_parameter_node_are_valid_inference_options(app):
    from nnmamba.inference.options import InferenceOptions
    from NNMambaSlicerLib.ParameterNode import DEVICES, PRECISIONS

    parameters = ParameterNode.getOrCreate(app.scene)
    for device in DEVICES:
        for precision in PRECISIONS:
            parameters.device, parameters.precision, parameters.overlap = device, precision, 0.9
            InferenceOptions.from_dict(parameters.workerOptions())  # raises on a name the worker refuses


def test_the_chosen_output_segmentation_is_a_node_reference_that_can_be_cleared(app):
    parameters = ParameterNode.getOrCreate(app.scene)
    assert parameters.outputSegmentation is None  # default: a new segmentation per run
    chosen = app.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "My segmentation")
    parameters.outputSegmentation = chosen
    assert parameters.outputSegmentation is chosen
    parameters.outputSegmentation = None
    assert parameters.outputSegmentation is None
