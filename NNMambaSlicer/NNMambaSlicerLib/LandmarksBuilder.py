"""`LandmarkResult` -> a markups fiducial node, one labelled point per landmark, left editable."""

from __future__ import annotations

import numpy as np
import vtk

from nnmamba.errors import ModelError
from nnmamba.results import LandmarkResult
from nnmamba.volume import LPS_TO_RAS

from .SceneHelpers import SceneHelpers


class LandmarksBuilder:
    """Builds a fiducial node: label = landmark name, description = its description + confidence.

    Not locked: correcting a predicted landmark by dragging it is what users do next.

    Points arrive in LPS (the engine's physical space) and are stored in RAS, Slicer's world; the
    markups file Slicer writes for them is LPS again.

    Example:
        >>> node = LandmarksBuilder().build(result, volumeNode, "MRHead landmarks")
        >>> node.GetNthControlPointLabel(0)
        'AC'
    """

    def build(self, result: LandmarkResult, sourceVolumeNode, name: str):
        points = np.asarray(result.points_lps, dtype=np.float64).reshape(-1, 3)
        self._check(result, points)
        scene = sourceVolumeNode.GetScene()
        import slicer

        with SceneHelpers.addedUntilFailure(scene, slicer.vtkMRMLMarkupsFiducialNode(), name) as node:
            node.CreateDefaultDisplayNodes()
            wasModifying = node.StartModify()
            for index, lps in enumerate(points):
                ras = LPS_TO_RAS @ lps
                pointIndex = node.AddControlPoint(vtk.vtkVector3d(*ras), str(result.names[index]))
                node.SetNthControlPointDescription(pointIndex, self.describe(result, index))
            node.EndModify(wasModifying)
            SceneHelpers.placeBeside(node, sourceVolumeNode)
        return node

    @staticmethod
    def describe(result: LandmarkResult, index: int) -> str:
        description = str(result.descriptions[index]) if index < len(result.descriptions) else ""
        confidence = float(result.confidence[index])
        text = f"confidence {confidence:.2f}"
        return f"{description} ({text})" if description else text

    @staticmethod
    def _check(result: LandmarkResult, points: np.ndarray) -> None:
        count = len(result.names)
        if points.shape[0] != count or len(result.confidence) != count:
            raise ModelError(f"model '{result.model}' returned {count} landmark names, {points.shape[0]} points "
                             f"and {len(result.confidence)} confidences; they must match one to one.")
        if not np.all(np.isfinite(points)):
            raise ModelError(f"model '{result.model}' returned landmark positions that are not finite numbers.")
