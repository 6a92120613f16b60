"""Which volume nodes the panel offers as inputs, and which ones "run on every loaded volume" takes.

A vector volume (RGB, or several components) is several channels: it fits a model of that many
channels, never a one-channel model, so the selector hides vector volumes while the chosen models
take one channel. Label maps are outputs, not images to analyse.
"""

from __future__ import annotations

SCALAR = "vtkMRMLScalarVolumeNode"
VECTOR = "vtkMRMLVectorVolumeNode"


class InputVolumes:
    """Input volume choices for models of `channels` input channels.

    Example:
        >>> InputVolumes(1).nodeTypes()
        ['vtkMRMLScalarVolumeNode']
        >>> [v.GetName() for v in InputVolumes(1).allIn(slicer.mrmlScene)]
        ['MRHead', 'CTChest']
    """

    def __init__(self, channels: int) -> None:
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        self.channels = channels

    def nodeTypes(self) -> list:
        """For the selector's `nodeTypes` (with `showChildNodeTypes` off, so label maps stay out)."""
        return [SCALAR] if self.channels == 1 else [SCALAR, VECTOR]

    def accepts(self, node) -> bool:
        if node is None or node.GetClassName() not in self.nodeTypes():
            return False
        image = node.GetImageData()
        components = image.GetNumberOfScalarComponents() if image is not None else 0
        return components == 1 or (node.GetClassName() == VECTOR and components == self.channels)

    def allIn(self, scene) -> list:
        """Every loaded volume a one-channel model can run on, in scene order (vector volumes and
        label maps left out). Several channels need one volume each, so this is for one channel only."""
        if self.channels != 1:
            raise ValueError(f"running on every loaded volume needs a one-channel model; the chosen model has "
                             f"{self.channels} channels: select one volume per channel instead")
        nodes = [scene.GetNthNodeByClass(i, SCALAR) for i in range(scene.GetNumberOfNodesByClass(SCALAR))]
        return [node for node in nodes if self.accepts(node)]
