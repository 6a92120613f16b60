"""What the module's self-test asserts of real results: content, not counts.

An all-zero network still yields one (empty) segment per label, a landmark per name and a table row
per class, so counting nodes proves nothing. These checks look at what the nodes hold: voxels in
the segments and inside the head, landmarks inside the volume, probabilities that sum to one, and
outputs on the input's own grid.
"""

from __future__ import annotations

import numpy as np
import vtk
from vtk.util import numpy_support

from .ClassificationBuilder import PROBABILITY_COLUMN
from .SceneHelpers import SceneHelpers

INSIDE_HEAD_FRACTION = 0.9     # of a segment's voxels, inside the head's outline
TISSUE_FRACTION = 0.1          # of the 99th percentile: brighter than air and noise on MR and CT alike
GEOMETRY_TOLERANCE_MM = 1e-4


class ResultChecks:
    """Each method returns the problems found (empty when the output is plausible).

    Example (the self-test):
        >>> problems = ResultChecks().segmentationProblems(segmentationNode, volumeNode)
        >>> assert not problems, problems
    """

    def problems(self, outputs: dict, volumeNode) -> list:
        """Every problem of a job's outputs (task -> nodes, as `InferenceLogic.run` returns them)."""
        problems = []
        if "segmentation" in outputs:
            problems += self.segmentationProblems(outputs["segmentation"][0], volumeNode)
        if "landmarks" in outputs:
            problems += self.landmarkProblems(outputs["landmarks"][0], volumeNode)
        if "classification" in outputs:
            problems += self.classificationProblems(outputs["classification"][0])
        return problems

    def segmentationProblems(self, segmentationNode, volumeNode) -> list:
        import slicer

        problems = []
        reference = self.referenceGeometry(segmentationNode)
        volumeMatrix = vtk.vtkMatrix4x4()
        volumeNode.GetIJKToRASMatrix(volumeMatrix)
        if reference is None or np.abs(reference - SceneHelpers.matrixToArray(volumeMatrix)).max() > GEOMETRY_TOLERANCE_MM:
            problems.append("the segmentation's reference geometry is not the input volume's grid")
        if segmentationNode.GetTransformNodeID() != volumeNode.GetTransformNodeID():
            problems.append("the segmentation is not under the input volume's transform")
        head = self.headMask(slicer.util.arrayFromVolume(volumeNode))
        segmentation = segmentationNode.GetSegmentation()
        filled = 0
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentationNode, segmentId, volumeNode)
            if mask is None or not mask.any():
                continue
            filled += 1
            inside = float(head[mask > 0].mean())
            if inside < INSIDE_HEAD_FRACTION:
                name = segmentation.GetNthSegment(index).GetName()
                problems.append(f"segment '{name}' has only {inside:.0%} of its voxels inside the head")
        if filled == 0:
            problems.append("every segment is empty")
        return problems

    @staticmethod
    def headMask(voxels: np.ndarray) -> np.ndarray:
        """Voxels inside the head's outline: between the first and last tissue voxel along every
        axis, so dark structures inside it (ventricles, CSF) count as inside."""
        voxels = np.asarray(voxels, dtype=np.float32)
        tissue = voxels > TISSUE_FRACTION * np.percentile(voxels, 99)
        inside = np.ones_like(tissue)
        for axis in range(tissue.ndim):
            fromStart = np.maximum.accumulate(tissue, axis=axis)
            fromEnd = np.flip(np.maximum.accumulate(np.flip(tissue, axis), axis=axis), axis)
            inside &= fromStart & fromEnd
        return inside

    @staticmethod
    def landmarkProblems(markupsNode, volumeNode) -> list:
        rasToIjk = vtk.vtkMatrix4x4()
        volumeNode.GetRASToIJKMatrix(rasToIjk)
        dims = volumeNode.GetImageData().GetDimensions()
        problems = []
        if markupsNode.GetNumberOfControlPoints() == 0:
            problems.append("there are no landmarks")
        for index in range(markupsNode.GetNumberOfControlPoints()):
            ras = markupsNode.GetNthControlPointPosition(index)
            ijk = rasToIjk.MultiplyPoint((*ras, 1.0))[:3]
            if not all(-0.5 <= value <= size - 0.5 for value, size in zip(ijk, dims)):
                problems.append(f"landmark '{markupsNode.GetNthControlPointLabel(index)}' is outside the volume")
        return problems

    @staticmethod
    def classificationProblems(tableNode) -> list:
        column = tableNode.GetTable().GetColumnByName(PROBABILITY_COLUMN)
        if column is None:
            return [f"the probability table has no '{PROBABILITY_COLUMN}' column"]
        probabilities = numpy_support.vtk_to_numpy(column)
        if probabilities.size == 0 or abs(float(probabilities.sum()) - 1.0) > 1e-3:
            return [f"the class probabilities sum to {float(probabilities.sum()):.4f}, not 1"]
        return []

    @staticmethod
    def referenceGeometry(segmentationNode):
        """The segmentation's reference image geometry (the grid Segment Editor edits on) as IJK-to-RAS."""
        import slicer

        converter = slicer.vtkSegmentationConverter
        serialized = segmentationNode.GetSegmentation().GetConversionParameter(
            converter.GetReferenceImageGeometryParameterName())
        if not serialized:
            return None
        matrix, extent = vtk.vtkMatrix4x4(), [0] * 6
        converter.DeserializeImageGeometry(serialized, matrix, extent)
        return SceneHelpers.matrixToArray(matrix)
