"""Which nodes of the scene are this module's outputs, and for which input volume.

Outputs carry the attribute `NNMambaSlicer.Task` and a node reference (role
`NNMambaSlicer.SourceVolume`) to their input: references survive saving and reloading the scene
(and are remapped when node IDs clash), so re-running after a reload still finds them. Nothing
without that attribute is ever touched. A fingerprint of what the module put in a segmentation or
a point list (`NNMambaSlicer.Fingerprint`) tells whether the user has edited it since.
"""

from __future__ import annotations

import hashlib

import numpy as np
from vtk.util import numpy_support

TASK_ATTRIBUTE = "NNMambaSlicer.Task"
MODEL_ATTRIBUTE = "NNMambaSlicer.Model"
SOURCE_REFERENCE_ROLE = "NNMambaSlicer.SourceVolume"
FINGERPRINT_ATTRIBUTE = "NNMambaSlicer.Fingerprint"


class OutputRegistry:
    """Tags, finds and removes the module's output nodes in one scene.

    Example:
        >>> registry = OutputRegistry(scene)
        >>> registry.tag(segmentationNode, volumeNode, "segmentation", "demo-seg")
        >>> registry.outputsOf(volumeNode)["segmentation"] == [segmentationNode]
        True
    """

    def __init__(self, scene) -> None:
        self.scene = scene

    def tag(self, outputNode, sourceVolumeNode, task: str, model: str) -> None:
        outputNode.SetAttribute(TASK_ATTRIBUTE, task)
        outputNode.SetAttribute(MODEL_ATTRIBUTE, model or "")
        outputNode.SetNodeReferenceID(SOURCE_REFERENCE_ROLE, sourceVolumeNode.GetID())
        outputNode.SetAttribute(FINGERPRINT_ATTRIBUTE, self.fingerprint(outputNode))

    def isEdited(self, node) -> bool:
        """True when a segmentation's segments or a point list's points changed since the module made it."""
        stored = node.GetAttribute(FINGERPRINT_ATTRIBUTE)
        return bool(stored) and stored != self.fingerprint(node)

    @staticmethod
    def fingerprint(node) -> str:
        """A hash of the content a user edits: segment names, label values and voxels; point labels and
        positions. Other outputs (tables, charts) get none."""
        digest = hashlib.sha1()
        if node.IsA("vtkMRMLSegmentationNode"):
            segmentation = node.GetSegmentation()
            for index in range(segmentation.GetNumberOfSegments()):
                segment = segmentation.GetNthSegment(index)
                digest.update(f"{segment.GetName()}|{segment.GetLabelValue()}|".encode())
                image = segment.GetRepresentation("Binary labelmap")
                if image is not None and image.GetPointData().GetScalars() is not None:
                    voxels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
                    digest.update(str(image.GetExtent()).encode())
                    digest.update(np.ascontiguousarray(voxels == segment.GetLabelValue()).tobytes())
        elif node.IsA("vtkMRMLMarkupsNode"):
            for index in range(node.GetNumberOfControlPoints()):
                position = node.GetNthControlPointPosition(index)
                digest.update(f"{node.GetNthControlPointLabel(index)}|{[round(p, 4) for p in position]}|".encode())
        else:
            return ""
        return digest.hexdigest()

    def outputsOf(self, sourceVolumeNode) -> dict:
        """task -> list of output nodes made from this volume (tables, plots and charts included)."""
        found: dict = {}
        nodes = self.scene.GetNodes()
        for index in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(index)
            task = node.GetAttribute(TASK_ATTRIBUTE)
            if not task:
                continue
            if node.GetNodeReferenceID(SOURCE_REFERENCE_ROLE) == sourceVolumeNode.GetID():
                found.setdefault(task, []).append(node)
        return found

    def isOutput(self, node) -> bool:
        return bool(node.GetAttribute(TASK_ATTRIBUTE))

    def remove(self, nodes) -> None:
        """Remove output nodes with their display and storage nodes; refuses anything untagged."""
        for node in nodes:
            if not self.isOutput(node):
                raise ValueError(f"refusing to remove '{node.GetName()}': it is not an NNMambaSlicer output")
        for node in nodes:
            if self.scene.IsNodePresent(node):
                self._removeWithHelpers(node)

    def _removeWithHelpers(self, node) -> None:
        helpers = []
        if node.IsA("vtkMRMLDisplayableNode"):
            helpers += [node.GetNthDisplayNode(i) for i in range(node.GetNumberOfDisplayNodes())]
        if node.IsA("vtkMRMLStorableNode"):
            helpers += [node.GetNthStorageNode(i) for i in range(node.GetNumberOfStorageNodes())]
        self.scene.RemoveNode(node)
        for helper in helpers:
            if helper is not None and self.scene.IsNodePresent(helper):
                self.scene.RemoveNode(helper)
