"""ResultChecks (what the self-test asserts) on real result nodes: each check can fail."""

from __future__ import annotations

import numpy as np
import slicer

from nnmamba.results import ClassificationResult, LandmarkResult, SegmentationResult
from NNMambaSlicerLib.ResultChecks import ResultChecks
from NNMambaSlicerLib.ResultNodes import ResultNodes
from NNMambaSlicerLib.VolumeConverter import VolumeConverter
from slicer_app import obliqueIjkToRas
from test_result_builders import segmentationResult


def headVolume():
    """A bright 'head' box in the middle of a dark field, on an oblique grid."""
    array = np.zeros((16, 20, 24), np.int16)
    array[3:13, 4:16, 5:19] = 500
    node = slicer.util.addVolumeFromArray(array, ijkToRAS=obliqueIjkToRas(), name="Head")
    node.CreateDefaultDisplayNodes()
    return node


def addSegmentation(volume, labelmap):
    result = segmentationResult(volume)
    result = SegmentationResult(labelmap, result.geometry, result.segments, result.model)
    return ResultNodes().add(volume, {"segmentation": result})["segmentation"][0]


def test_a_segment_inside_the_head_on_the_inputs_grid_passes(app):
    volume = headVolume()
    labelmap = np.zeros((16, 20, 24), np.uint8)
    labelmap[5:10, 6:12, 8:15] = 1
    assert ResultChecks().segmentationProblems(addSegmentation(volume, labelmap), volume) == []


def test_an_all_empty_segmentation_fails_although_every_segment_exists(app):
    volume = headVolume()
    node = addSegmentation(volume, np.zeros((16, 20, 24), np.uint8))
    assert node.GetSegmentation().GetNumberOfSegments() == 3  # what counting nodes would have accepted
    assert ResultChecks().segmentationProblems(node, volume) == ["every segment is empty"]


def test_a_segment_in_the_air_around_the_head_fails(app):
    volume = headVolume()
    labelmap = np.zeros((16, 20, 24), np.uint8)
    labelmap[0:2, 0:3, 0:4] = 3
    assert ResultChecks().segmentationProblems(addSegmentation(volume, labelmap), volume) == [
        "segment 'tumour' has only 0% of its voxels inside the head"]


def test_landmarks_outside_the_volume_fail_and_inside_pass(app):
    volume = headVolume()
    geometry = VolumeConverter.geometryOf(volume)
    voxels = np.array([[4.0, 5.0, 6.0], [40.0, 5.0, 6.0]])  # the second is past i = 23
    result = LandmarkResult(["AC", "PC"], ["", ""], geometry.index_to_physical(voxels), np.array([0.9, 0.8]), "lm")
    node = ResultNodes().add(volume, {"landmarks": result})["landmarks"][0]
    assert ResultChecks.landmarkProblems(node, volume) == ["landmark 'PC' is outside the volume"]


def test_probabilities_that_do_not_sum_to_one_fail(app):
    volume = headVolume()
    good = ResultNodes().add(volume, {"classification": ClassificationResult(["T1", "CT"], np.array([0.25, 0.75]))})
    bad = ResultNodes().add(volume, {"classification": ClassificationResult(["T1", "CT"], np.array([0.2, 0.2]))})
    assert ResultChecks.classificationProblems(good["classification"][0]) == []
    assert ResultChecks.classificationProblems(bad["classification"][0]) == [
        "the class probabilities sum to 0.4000, not 1"]


def test_a_segmentation_off_the_inputs_grid_fails(app):
    volume = headVolume()
    labelmap = np.zeros((16, 20, 24), np.uint8)
    labelmap[5:10, 6:12, 8:15] = 1
    node = addSegmentation(volume, labelmap)
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    volume.SetAndObserveTransformNodeID(transform.GetID())
    assert ResultChecks().segmentationProblems(node, volume) == [
        "the segmentation is not under the input volume's transform"]


def test_all_of_a_jobs_problems_are_listed_together(app):
    volume = headVolume()
    outputs = ResultNodes().add(volume, {
        "segmentation": SegmentationResult(np.zeros((16, 20, 24), np.uint8), VolumeConverter.geometryOf(volume), [], "s"),
        "classification": ClassificationResult(["T1", "CT"], np.array([0.2, 0.2]))})
    assert ResultChecks().problems(outputs, volume) == ["every segment is empty",
                                                        "the class probabilities sum to 0.4000, not 1"]
