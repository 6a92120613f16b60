"""The module's settings, kept in a vtkMRMLScriptedModuleNode so they are saved with the scene.

Typed fields over the node's string parameters and node references; works on plain slicer-core
MRML (no `slicer.parameterNodeWrapper`, which needs the application). The remote server token is
deliberately not here: it lives in Slicer's settings (see `ServerSettings`), never in a scene file.
"""

from __future__ import annotations

from typing import Any

from nnmamba.inference.options import PRECISIONS  # the worker's names (torch-free module)

from .DeviceChoices import isDevice

MODULE_NAME = "NNMambaSlicer"
# The device box before the worker reports its own devices (see DeviceChoices); any name `isDevice`
# accepts is a valid setting, since a worker may have more GPUs, or an Apple GPU.
DEVICES = ("auto", "cpu", "cuda:0", "cuda:1", "cuda:2", "cuda:3", "remote")
EARLIER_RESULTS = ("ask", "replace", "keep")  # what a new run does with this module's earlier outputs
EXTRA_SLOTS = 3  # extra channel inputs the panel offers (the first channel is the input volume)


class _Field:
    """A typed parameter stored as a string on the node (default when unset)."""

    def __init__(self, default: Any, choices: tuple = (), minimum: float = None, maximum: float = None,
                 check=None, allowed: str = "") -> None:
        self.default = default
        self.kind = type(default)
        self.choices = choices
        self.minimum, self.maximum = minimum, maximum
        self.check, self.allowed = check, allowed  # a predicate, and the allowed values in words

    def __set_name__(self, owner, name: str) -> None:
        self.key = name[0].upper() + name[1:]

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        text = instance.node.GetParameter(self.key)
        if not text:
            return self.default
        try:
            value = text == "true" if self.kind is bool else self.kind(text)
        except ValueError:
            return self.default  # a hand-edited scene file: fall back rather than break the panel
        return self._checked(value, quiet=True)

    def __set__(self, instance, value) -> None:
        value = self._checked(self.kind(value))
        instance.node.SetParameter(self.key, ("true" if value else "false") if self.kind is bool else str(value))

    def _checked(self, value, quiet: bool = False):
        bad = (self.choices and value not in self.choices) or \
              (self.minimum is not None and value < self.minimum) or \
              (self.maximum is not None and value > self.maximum) or \
              (self.check is not None and not self.check(value))
        if bad:
            if quiet:
                return self.default
            allowed = self.allowed or (list(self.choices) if self.choices else f"{self.minimum}..{self.maximum}")
            raise ValueError(f"{self.key} must be one of {allowed}, got {value!r}")
        return value


class ParameterNode:
    """Typed view of the module's parameter node.

    Example:
        >>> parameters = ParameterNode.getOrCreate(slicer.mrmlScene)
        >>> parameters.inputVolume = volumeNode
        >>> parameters.segmentationEnabled = True
        >>> parameters.overlap
        0.5
    """

    segmentationEnabled = _Field(True)
    landmarksEnabled = _Field(False)
    classificationEnabled = _Field(False)
    segmentationModel = _Field("")
    landmarksModel = _Field("")
    classificationModel = _Field("")
    device = _Field("auto", check=isDevice, allowed="auto, cpu, mps, cuda, cuda:N or remote")
    tta = _Field(False)
    overlap = _Field(0.5, minimum=0.0, maximum=0.9)
    precision = _Field("auto", choices=PRECISIONS)
    earlierResults = _Field("ask", choices=EARLIER_RESULTS)
    show3D = _Field(True)             # segmentations also shown as 3D surfaces
    allVolumes = _Field(False)        # run on every loaded scalar volume, one job each

    INPUT_ROLE = "InputVolume"
    EXTRA_INPUT_ROLE = "ExtraInputVolume"
    OUTPUT_SEGMENTATION_ROLE = "OutputSegmentation"

    def __init__(self, node) -> None:
        self.node = node

    @classmethod
    def getOrCreate(cls, scene) -> "ParameterNode":
        node = scene.GetSingletonNode(MODULE_NAME, "vtkMRMLScriptedModuleNode")
        if node is None:
            import slicer

            node = slicer.vtkMRMLScriptedModuleNode()
            node.SetSingletonTag(MODULE_NAME)
            node.SetName(scene.GenerateUniqueName(MODULE_NAME))
            node.SetAttribute("ModuleName", MODULE_NAME)
            node.SetHideFromEditors(True)
            node = scene.AddNode(node)
        return cls(node)

    @property
    def inputVolume(self):
        return self.node.GetNodeReference(self.INPUT_ROLE)

    @inputVolume.setter
    def inputVolume(self, volumeNode) -> None:
        self.node.SetNodeReferenceID(self.INPUT_ROLE, volumeNode.GetID() if volumeNode else None)

    @property
    def outputSegmentation(self):
        """The segmentation node a run fills (None: a new one per run)."""
        return self.node.GetNodeReference(self.OUTPUT_SEGMENTATION_ROLE)

    @outputSegmentation.setter
    def outputSegmentation(self, segmentationNode) -> None:
        self.node.SetNodeReferenceID(self.OUTPUT_SEGMENTATION_ROLE,
                                     segmentationNode.GetID() if segmentationNode else None)

    @property
    def extraInputVolumes(self) -> list:
        """Extra channels by slot (None where a slot is empty), up to the last one set."""
        volumes = [self.node.GetNodeReference(f"{self.EXTRA_INPUT_ROLE}{slot + 1}") for slot in range(EXTRA_SLOTS)]
        while volumes and volumes[-1] is None:
            volumes.pop()
        return volumes

    def setExtraInputVolume(self, index: int, volumeNode) -> None:
        if not 0 <= index < EXTRA_SLOTS:
            raise ValueError(f"extra channel slot must be 0..{EXTRA_SLOTS - 1}, got {index}")
        self.node.SetNodeReferenceID(f"{self.EXTRA_INPUT_ROLE}{index + 1}", volumeNode.GetID() if volumeNode else None)

    def clearExtraInputVolumes(self) -> None:
        for slot in range(EXTRA_SLOTS):
            self.node.RemoveNodeReferenceIDs(f"{self.EXTRA_INPUT_ROLE}{slot + 1}")

    def enabledTasks(self) -> list:
        return [task for task, enabled in (("segmentation", self.segmentationEnabled),
                                           ("landmarks", self.landmarksEnabled),
                                           ("classification", self.classificationEnabled)) if enabled]

    def modelFor(self, task: str) -> str:
        return getattr(self, f"{task}Model")

    def setModelFor(self, task: str, name: str) -> None:
        setattr(self, f"{task}Model", name)

    def models(self) -> dict:
        """task -> model name for the enabled tasks that name one (others get the task's default)."""
        return {task: self.modelFor(task) for task in self.enabledTasks() if self.modelFor(task)}

    def workerOptions(self) -> dict:
        options = {"tta": self.tta, "overlap": self.overlap, "precision": self.precision}
        if self.device != "remote":
            options["device"] = self.device
        return options
