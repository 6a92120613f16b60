"""Result objects -> segmentation / markups / table+plot nodes on real slicer-core MRML."""

from __future__ import annotations

import json

import numpy as np
import pytest
import slicer
import vtk

from nnmamba.errors import ModelError
from nnmamba.results import ClassificationResult, LandmarkResult, SegmentationResult, SegmentInfo
from NNMambaSlicerLib.ClassificationBuilder import ClassificationBuilder
from NNMambaSlicerLib.LandmarksBuilder import LandmarksBuilder
from NNMambaSlicerLib.ResultChecks import ResultChecks
from NNMambaSlicerLib.SceneHelpers import SceneHelpers
from NNMambaSlicerLib.SegmentationBuilder import SegmentationBuilder
from NNMambaSlicerLib.VolumeConverter import VolumeConverter

BRAIN = {"category": ["SCT", "123037004", "Anatomical Structure"], "type": ["SCT", "12738006", "Brain"],
         "type_modifier": ["SCT", "7771000", "Left"]}


def segmentationResult(volumeNode) -> SegmentationResult:
    geometry = VolumeConverter.geometryOf(volumeNode)
    labelmap = np.zeros((16, 20, 24), np.uint8)
    labelmap[2:6, 3:9, 4:10] = 1
    labelmap[9:13, 10:15, 12:20] = 3
    segments = [SegmentInfo(1, "brain", (0.9, 0.1, 0.1), BRAIN), SegmentInfo(2, "ventricles", (0.1, 0.2, 0.9)),
                SegmentInfo(3, "tumour", (0.1, 0.8, 0.2))]
    return SegmentationResult(labelmap, geometry, segments, "test-seg")


def test_segments_are_named_coloured_and_land_on_the_same_ras_points_as_the_input(obliqueVolume):
    result = segmentationResult(obliqueVolume)
    node = SegmentationBuilder().build(result, obliqueVolume, "Oblique head segmentation")
    segmentation = node.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert sorted(names) == ["brain", "tumour", "ventricles"]
    tumour = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("tumour"))
    assert tumour.GetColor() == pytest.approx((0.1, 0.8, 0.2))
    # exported on the input's grid, each segment covers exactly the voxels it had in the result
    for info in result.segments:
        segmentId = segmentation.GetSegmentIdBySegmentName(info.name)
        mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segmentId, obliqueVolume)
        np.testing.assert_array_equal(mask > 0, result.labelmap == info.label, err_msg=info.name)


def test_a_segment_voxel_maps_to_the_ras_point_of_the_input_voxel(obliqueVolume):
    node = SegmentationBuilder().build(segmentationResult(obliqueVolume), obliqueVolume, "seg")
    segmentId = node.GetSegmentation().GetSegmentIdBySegmentName("brain")
    image = slicer.vtkOrientedImageData()
    node.GetBinaryLabelmapRepresentation(segmentId, image)
    toWorld = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(toWorld)
    volumeToRas = vtk.vtkMatrix4x4()
    obliqueVolume.GetIJKToRASMatrix(volumeToRas)
    extent = image.GetExtent()
    ijk = (extent[0], extent[2], extent[4], 1)  # the first stored voxel of the segment
    assert toWorld.MultiplyPoint(ijk) == pytest.approx(volumeToRas.MultiplyPoint(ijk), abs=1e-6)
    assert image.GetScalarComponentAsDouble(*ijk[:3], 0) > 0
    assert (ijk[2], ijk[1], ijk[0]) == (2, 3, 4)  # k, j, i of the brain box corner


def test_reference_geometry_is_the_input_and_closed_surfaces_exist(obliqueVolume):
    node = SegmentationBuilder().build(segmentationResult(obliqueVolume), obliqueVolume, "seg")
    assert node.GetNodeReferenceID("referenceImageGeometryRef") == obliqueVolume.GetID()
    segmentation = node.GetSegmentation()
    assert segmentation.ContainsRepresentation("Closed surface")
    polyData = vtk.vtkPolyData()
    node.GetClosedSurfaceRepresentation(segmentation.GetSegmentIdBySegmentName("tumour"), polyData)
    assert polyData.GetNumberOfPoints() > 0


def test_segments_carry_the_cards_snomed_terminology(obliqueVolume):
    node = SegmentationBuilder().build(segmentationResult(obliqueVolume), obliqueVolume, "seg")
    segmentation = node.GetSegmentation()
    brain = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("brain"))
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(brain.GetTerminology(), entry)
    assert (entry.GetTypeObject().GetCodingSchemeDesignator(), entry.GetTypeObject().GetCodeValue(),
            entry.GetTypeObject().GetCodeMeaning()) == ("SCT", "12738006", "Brain")
    assert entry.GetCategoryObject().GetCodeValue() == "123037004"
    assert entry.GetTypeModifierObject().GetCodeMeaning() == "Left"


def test_a_card_label_absent_from_the_prediction_becomes_an_empty_segment(obliqueVolume):
    node = SegmentationBuilder().build(segmentationResult(obliqueVolume), obliqueVolume, "seg")
    segmentation = node.GetSegmentation()
    segmentId = segmentation.GetSegmentIdBySegmentName("ventricles")
    assert segmentId
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segmentId, obliqueVolume)
    assert not mask.any()


def test_a_labelmap_on_another_grid_is_refused_and_nothing_is_added(obliqueVolume):
    result = segmentationResult(obliqueVolume)
    result.labelmap = result.labelmap[:, :, :-1]
    before = slicer.mrmlScene.GetNumberOfNodes()
    with pytest.raises(ModelError, match="must return labels on the input grid"):
        SegmentationBuilder().build(result, obliqueVolume, "seg")
    assert slicer.mrmlScene.GetNumberOfNodes() == before


def test_a_segmentation_that_fails_while_being_built_leaves_nothing_in_the_scene(obliqueVolume):
    result = segmentationResult(obliqueVolume)
    result.segments[0] = SegmentInfo(1, "brain", ("red", 0.1, 0.1))  # fails inside the build
    before = slicer.mrmlScene.GetNumberOfNodes()
    with pytest.raises((TypeError, ValueError)):
        SegmentationBuilder().build(result, obliqueVolume, "seg")
    assert slicer.mrmlScene.GetNumberOfNodes() == before


def landmarkResult(volumeNode) -> LandmarkResult:
    geometry = VolumeConverter.geometryOf(volumeNode)
    voxels = np.array([[4, 5, 6], [20, 1, 14]], dtype=float)  # (i, j, k)
    return LandmarkResult(["AC", "PC"], ["anterior commissure", "posterior commissure"],
                          geometry.index_to_physical(voxels), np.array([0.93, 0.41]), "test-lm")


def test_a_landmark_on_a_known_voxel_comes_back_at_that_voxels_ras_position(obliqueVolume):
    node = LandmarksBuilder().build(landmarkResult(obliqueVolume), obliqueVolume, "lm")
    ijkToRas = vtk.vtkMatrix4x4()
    obliqueVolume.GetIJKToRASMatrix(ijkToRas)
    expected = ijkToRas.MultiplyPoint((20, 1, 14, 1))[:3]
    assert node.GetNthControlPointPosition(1) == pytest.approx(expected, abs=1e-6)
    assert [node.GetNthControlPointLabel(i) for i in range(2)] == ["AC", "PC"]
    assert node.GetNthControlPointDescription(0) == "anterior commissure (confidence 0.93)"
    assert not node.GetLocked() and not node.GetNthControlPointLocked(1)  # users drag them to correct them


def test_landmarks_are_written_as_lps_markups_json(obliqueVolume, tmp_path):
    result = landmarkResult(obliqueVolume)
    node = LandmarksBuilder().build(result, obliqueVolume, "lm")
    node.AddDefaultStorageNode()
    storage = node.GetStorageNode()
    storage.SetFileName(str(tmp_path / "lm.mrk.json"))
    assert storage.WriteData(node)
    markup = json.loads((tmp_path / "lm.mrk.json").read_text())["markups"][0]
    assert markup["coordinateSystem"] == "LPS" and markup["locked"] is False
    np.testing.assert_allclose(markup["controlPoints"][1]["position"], result.points_lps[1], atol=1e-6)


def test_mismatched_landmark_lists_are_refused(obliqueVolume):
    result = landmarkResult(obliqueVolume)
    result.confidence = np.array([0.5])
    with pytest.raises(ModelError, match="must match one to one"):
        LandmarksBuilder().build(result, obliqueVolume, "lm")


def test_class_probabilities_fill_a_table_and_a_bar_chart_with_the_top_class_marked(obliqueVolume):
    result = ClassificationResult(["healthy", "lesion", "artefact"], np.array([0.2, 0.7, 0.1]), "test-cls")
    nodes = ClassificationBuilder().build(result, obliqueVolume, "Oblique head classification")
    table, chart = nodes[0], nodes[-1]
    assert table.GetNumberOfRows() == 3
    assert [table.GetCellText(r, 0) for r in range(3)] == ["healthy", "lesion", "artefact"]
    assert float(table.GetCellText(1, 1)) == pytest.approx(0.7)
    assert [table.GetCellText(r, 2) for r in range(3)] == ["", "yes", ""]
    assert chart.IsA("vtkMRMLPlotChartNode") and "lesion" in chart.GetTitle()


def test_every_bar_of_the_chart_is_named_by_its_class_in_the_legend(obliqueVolume):
    # Slicer's plot view numbers a bar chart's x axis 0, 1, 2: the class names come from the series.
    result = ClassificationResult(["healthy", "lesion", "lesion"], np.array([0.2, 0.7, 0.1]), "test-cls")
    nodes = ClassificationBuilder().build(result, obliqueVolume, "cls")
    chart = nodes[-1]
    series = [slicer.mrmlScene.GetNodeByID(chart.GetNthPlotSeriesNodeID(i)) for i in range(chart.GetNumberOfPlotSeriesNodes())]
    assert [s.GetName() for s in series] == ["healthy", "lesion", "lesion'"]
    assert chart.GetLegendVisibility()
    for node, probability in zip(series, result.probabilities):
        assert node.GetPlotType() == node.PlotTypeBar
        data = node.GetTableNode()
        assert float(data.GetCellText(0, data.GetColumnIndex(node.GetYColumnName()))) == pytest.approx(probability)
    assert len({tuple(s.GetColor()) for s in series}) == 3


def test_probabilities_outside_zero_one_are_refused_and_nothing_is_added(obliqueVolume):
    before = slicer.mrmlScene.GetNumberOfNodes()
    with pytest.raises(ModelError, match="outside 0..1"):
        ClassificationBuilder().build(ClassificationResult(["a", "b"], np.array([1.5, -0.5])), obliqueVolume, "c")
    assert slicer.mrmlScene.GetNumberOfNodes() == before


def test_the_terminology_is_stored_under_the_tag_every_slicer_version_reads(obliqueVolume):
    # Slicer 5.8 has no vtkSegment.SetTerminology; its GetTag(GetTerminologyEntryTagName()) is what
    # 5.10+ GetTerminology() reads too.
    node = SegmentationBuilder().build(segmentationResult(obliqueVolume), obliqueVolume, "seg")
    segmentation = node.GetSegmentation()
    brain = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("brain"))
    tagName = slicer.vtkSegment.GetTerminologyEntryTagName()
    assert tagName == "TerminologyEntry"
    value = vtk.reference("")
    assert brain.GetTag(tagName, value)
    assert str(value) == brain.GetTerminology() and "12738006" in str(value)


def test_the_region_codes_land_in_the_fields_the_slicer_58_names_reach_too():
    region = ["SCT", "361360008", "Hippocampal structure"]
    text = SegmentationBuilder.terminologyString({**BRAIN, "region": region,
                                                  "region_modifier": ["SCT", "24028007", "Right"]})
    entry = slicer.vtkSlicerTerminologyEntry()
    assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(text, entry)
    # 5.8's accessors (deprecated aliases since 5.10) and the new ones are the same objects
    assert entry.GetAnatomicRegionObject().GetCodeMeaning() == "Hippocampal structure"
    assert entry.GetRegionObject().GetCodeValue() == "361360008"
    assert entry.GetAnatomicRegionModifierObject().GetCodeMeaning() == "Right"
    regionObject, modifierObject = SegmentationBuilder.regionCodeObjects(entry)
    assert (regionObject.GetCodeValue(), modifierObject.GetCodeValue()) == ("361360008", "24028007")


def test_a_transformed_volumes_segmentation_has_the_volumes_own_grid_as_reference_geometry(obliqueVolume):
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "AC-PC")
    shift = vtk.vtkMatrix4x4()
    shift.SetElement(0, 3, 50.0)
    shift.SetElement(1, 3, -30.0)
    transform.SetMatrixTransformToParent(shift)
    obliqueVolume.SetAndObserveTransformNodeID(transform.GetID())

    node = SegmentationBuilder(closedSurfaces=False).build(segmentationResult(obliqueVolume), obliqueVolume, "seg")
    volumeIjkToRas = vtk.vtkMatrix4x4()
    obliqueVolume.GetIJKToRASMatrix(volumeIjkToRas)
    assert node.GetTransformNodeID() == transform.GetID()
    # Both live under the same transform, so the reference grid is the volume's untransformed one
    # (with the translation folded in, the transform would apply twice: 50 mm off in R).
    np.testing.assert_allclose(ResultChecks.referenceGeometry(node), SceneHelpers.matrixToArray(volumeIjkToRas), atol=1e-6)
    # and the segment sits on the volume's voxels in the world
    segmentId = node.GetSegmentation().GetSegmentIdBySegmentName("brain")
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(node, segmentId, obliqueVolume)
    np.testing.assert_array_equal(mask > 0, segmentationResult(obliqueVolume).labelmap == 1)
