"""InputVolumes: an RGB volume is never offered to a one-channel model; 'all volumes' takes scalar ones only."""

from __future__ import annotations

import numpy as np
import pytest
import slicer

from NNMambaSlicerLib.InputVolumes import InputVolumes


@pytest.fixture
def mixedScene(app, obliqueVolume):
    rgb = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "Photo")
    slicer.util.updateVolumeFromArray(rgb, np.zeros((4, 5, 6, 3), np.uint8))
    label = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "Labels")
    slicer.util.updateVolumeFromArray(label, np.zeros((4, 5, 6), np.uint8))
    second = slicer.util.addVolumeFromArray(np.ones((4, 5, 6), np.float32), name="Second")
    return {"oblique": obliqueVolume, "rgb": rgb, "label": label, "second": second}


def test_a_one_channel_model_offers_scalar_volumes_only(mixedScene):
    inputs = InputVolumes(1)
    assert inputs.nodeTypes() == ["vtkMRMLScalarVolumeNode"]
    assert not inputs.accepts(mixedScene["rgb"]) and not inputs.accepts(mixedScene["label"])
    assert inputs.accepts(mixedScene["oblique"])


def test_a_three_channel_model_takes_an_rgb_volume_as_its_three_channels(mixedScene):
    inputs = InputVolumes(3)
    assert "vtkMRMLVectorVolumeNode" in inputs.nodeTypes()
    assert inputs.accepts(mixedScene["rgb"]) and not InputVolumes(2).accepts(mixedScene["rgb"])


def test_every_loaded_volume_means_the_scalar_images_in_scene_order(mixedScene):
    assert [v.GetName() for v in InputVolumes(1).allIn(slicer.mrmlScene)] == ["Oblique head", "Second"]


def test_every_loaded_volume_is_refused_for_a_multichannel_model_with_the_way_out(mixedScene):
    with pytest.raises(ValueError, match="needs a one-channel model; the chosen model has 2 channels"):
        InputVolumes(2).allIn(slicer.mrmlScene)
    with pytest.raises(ValueError, match="channels must be >= 1, got 0"):
        InputVolumes(0)
