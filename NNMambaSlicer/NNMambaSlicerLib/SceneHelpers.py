"""Small MRML helpers shared by the result builders: placement beside the input, undo on failure."""

from __future__ import annotations

import contextlib

import numpy as np
import vtk


class SceneHelpers:
    """Places new output nodes beside their input (transform, subject-hierarchy folder).

    Example:
        >>> SceneHelpers.placeBeside(segmentationNode, volumeNode)
    """

    @staticmethod
    def placeBeside(outputNode, sourceVolumeNode) -> None:
        """Same parent transform as the input, and the same subject-hierarchy parent (study/folder)."""
        if outputNode.IsA("vtkMRMLTransformableNode"):
            outputNode.SetAndObserveTransformNodeID(sourceVolumeNode.GetTransformNodeID())
        scene = outputNode.GetScene()
        import slicer  # the subject hierarchy node class lives in slicer's MRML bindings
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
        if shNode is None:
            return
        sourceItem = shNode.GetItemByDataNode(sourceVolumeNode)
        if not sourceItem:
            return
        parentItem = shNode.GetItemParent(sourceItem)
        outputItem = shNode.GetItemByDataNode(outputNode)
        if outputItem:
            shNode.SetItemParent(outputItem, parentItem)
        else:  # Slicer's GUI makes items for new nodes itself; plain MRML does not
            shNode.CreateItem(parentItem, outputNode)

    @staticmethod
    @contextlib.contextmanager
    def addedUntilFailure(scene, node, name: str):
        """Add `node` named `name` to `scene` for the `with` body; if the body raises, remove it
        (and its display node) again, so a half-built result never stays in the scene."""
        node.SetName(name)
        scene.AddNode(node)
        try:
            yield node
        except Exception:
            SceneHelpers.removeNodes(scene, [node.GetDisplayNode(), node])
            raise

    @staticmethod
    def removeNodes(scene, nodes) -> None:
        """Remove nodes this builder added (used to undo a half-built result)."""
        for node in nodes:
            if node is not None and scene.IsNodePresent(node):
                scene.RemoveNode(node)

    @staticmethod
    def matrixToArray(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
        return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])

    @staticmethod
    def arrayToMatrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
        matrix = vtk.vtkMatrix4x4()
        for r in range(4):
            for c in range(4):
                matrix.SetElement(r, c, float(array[r, c]))
        return matrix
