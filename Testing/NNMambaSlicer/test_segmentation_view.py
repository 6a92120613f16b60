"""SegmentationView.show3D on real segmentation nodes: surfaces made only when asked for."""

from __future__ import annotations

from NNMambaSlicerLib.SegmentationBuilder import SegmentationBuilder
from NNMambaSlicerLib.SegmentationView import SegmentationView
from test_result_builders import segmentationResult

CLOSED_SURFACE = "Closed surface"


def test_show_3d_builds_closed_surfaces_and_shows_them_in_3d(obliqueVolume):
    node = SegmentationBuilder().build(segmentationResult(obliqueVolume), obliqueVolume, "seg")
    SegmentationView().show3D([node], visible=True)
    segmentation = node.GetSegmentation()
    assert segmentation.ContainsRepresentation(CLOSED_SURFACE)
    surface = segmentation.GetSegment(segmentation.GetNthSegmentID(0)).GetRepresentation(CLOSED_SURFACE)
    assert surface.GetNumberOfPoints() > 0
    assert node.GetDisplayNode().GetVisibility3D()


def test_show_3d_off_hides_them_in_3d_and_builds_nothing(obliqueVolume):
    node = SegmentationBuilder().build(segmentationResult(obliqueVolume), obliqueVolume, "seg")
    node.RemoveClosedSurfaceRepresentation()
    SegmentationView().show3D([node, None], visible=False)
    assert not node.GetSegmentation().ContainsRepresentation(CLOSED_SURFACE)
    assert not node.GetDisplayNode().GetVisibility3D()


def test_with_show_3d_off_the_logic_builds_no_surfaces_for_a_new_result(obliqueVolume):
    from NNMambaSlicerLib.ResultNodes import ResultNodes
    nodes = ResultNodes()
    nodes.closedSurfaces = False  # what Apply sets from the panel's Show 3D box
    outputs = nodes.add(obliqueVolume, {"segmentation": segmentationResult(obliqueVolume)})
    assert not outputs["segmentation"][0].GetSegmentation().ContainsRepresentation(CLOSED_SURFACE)
