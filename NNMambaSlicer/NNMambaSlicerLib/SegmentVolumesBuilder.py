"""`SegmentationResult` -> a table node of each structure's volume (mL), beside the segmentation.

The volumes come from the engine's `nnmamba.metrics.segment_volumes` on the labelmap the worker
returned, so the panel, the table node and the command line's `.volumes.tsv` give the same figures.
"""

from __future__ import annotations

import vtk

from nnmamba.metrics import segment_volumes
from nnmamba.results import SegmentationResult

from .SceneHelpers import SceneHelpers

COLUMNS = ("segment", "label", "voxels", "volume_mL")


class SegmentVolumesBuilder:
    """Example:
        >>> table = SegmentVolumesBuilder().build(result, volumeNode, "MRHead segmentation volumes")
        >>> table.GetCellText(0, 3)      # the first segment's volume in mL
    """

    def build(self, result: SegmentationResult, sourceVolumeNode, name: str):
        import slicer

        rows = segment_volumes(result.labelmap, result.geometry.spacing, result.segments)
        columns = [vtk.vtkStringArray(), vtk.vtkIntArray(), vtk.vtkIntArray(), vtk.vtkDoubleArray()]
        for column, title in zip(columns, COLUMNS):
            column.SetName(title)
        for label, segmentName, voxels, millilitres in rows:
            columns[0].InsertNextValue(segmentName)
            columns[1].InsertNextValue(label)
            columns[2].InsertNextValue(voxels)
            columns[3].InsertNextValue(millilitres)
        with SceneHelpers.addedUntilFailure(sourceVolumeNode.GetScene(), slicer.vtkMRMLTableNode(), name) as table:
            for column in columns:
                table.AddColumn(column)
            table.SetColumnUnitLabel(COLUMNS[3], "mL")
            SceneHelpers.placeBeside(table, sourceVolumeNode)
        return table
