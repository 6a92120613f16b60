"""Show 3D: a segmentation's segments as closed surfaces in the 3D views, or in 2D only.

The surfaces are made on demand (CreateClosedSurfaceRepresentation), as Segment Editor's "Show
3D" does: building them for a large label map takes a while, so "off" never builds them.
"""

from __future__ import annotations


class SegmentationView:
    """Example (the panel, after a job and when Show 3D is toggled):
        >>> SegmentationView().show3D(segmentationNodes, visible=True)
    """

    def show3D(self, segmentationNodes, visible: bool) -> None:
        for node in segmentationNodes:
            if node is None or not node.IsA("vtkMRMLSegmentationNode"):
                continue
            if visible:
                node.CreateClosedSurfaceRepresentation()
            display = node.GetDisplayNode()
            if display is None:
                node.CreateDefaultDisplayNodes()
                display = node.GetDisplayNode()
            display.SetVisibility3D(bool(visible))
