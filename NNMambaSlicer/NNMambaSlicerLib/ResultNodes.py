"""The worker's results -> this module's output nodes beside their input volume, or nothing.

The scene side of the logic: `InferenceLogic` runs jobs and hands each finished one here. Every
result is checked against the volume it will be placed on before a node is made, so a result
computed for one grid (or one patient) never lands on another.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional, Sequence

import numpy as np

from nnmamba.errors import NNMambaError
from nnmamba.model_card import NOT_FOR_CLINICAL_USE
from nnmamba.results import SegmentationResult, Task

from .ClassificationBuilder import ClassificationBuilder
from .JobOutcome import ResultsNotAddedError
from .LandmarksBuilder import LandmarksBuilder
from .OutputRegistry import OutputRegistry
from .SceneHelpers import SceneHelpers
from .SegmentationBuilder import SegmentationBuilder
from .SegmentVolumesBuilder import SegmentVolumesBuilder
from .VolumeConverter import GEOMETRY_TOLERANCE, VolumeConverter

OUTPUT_SUFFIX = {"segmentation": "segmentation", "landmarks": "landmarks", "classification": "classification"}
QUALITY_ATTRIBUTE = "NNMambaSlicer.Quality"
UNKNOWN_QUALITY = "not stated (the model's card is not readable here)"


class ResultNodes:
    """Builds, tags and describes output nodes; finds and replaces this module's earlier ones.

    `qualities` maps model name -> its card's quality (the panel fills it from the models it lists);
    a model not in it is looked up among the cards on this computer.

    Example:
        >>> nodes = ResultNodes()
        >>> problem = nodes.placementProblem(volumeNode, sentGeometry, sentShape, results)
        >>> outputs = nodes.add(volumeNode, results) if not problem else {}
    """

    def __init__(self) -> None:
        self.segmentationBuilder = SegmentationBuilder()
        self.segmentVolumesBuilder = SegmentVolumesBuilder()
        self.landmarksBuilder = LandmarksBuilder()
        self.classificationBuilder = ClassificationBuilder()
        self.qualities: dict = {}
        self.keptEdited: list = []        # earlier outputs the last `add` kept because the user edited them

    @property
    def closedSurfaces(self) -> bool:
        """Build 3D surfaces with each segmentation (off: faster on large scans; 2D only)."""
        return self.segmentationBuilder.closedSurfaces

    @closedSurfaces.setter
    def closedSurfaces(self, value: bool) -> None:
        self.segmentationBuilder.closedSurfaces = bool(value)

    @staticmethod
    def existing(volumeNode, tasks: Optional[Sequence[str]] = None) -> dict:
        """task -> this module's earlier output nodes for `volumeNode` (only the tasks asked for)."""
        outputs = OutputRegistry(volumeNode.GetScene()).outputsOf(volumeNode)
        return {t: n for t, n in outputs.items() if tasks is None or t in tasks}

    @staticmethod
    def placementProblem(volumeNode, sentGeometry, sentShape: tuple, results: dict) -> str:
        """Why the results must not be placed on `volumeNode` ("" when they may).

        `sentGeometry` / `sentShape` ([k, j, i]) are what the job sent: a volume whose voxels or
        placement changed meanwhile (resampled, cropped, or a new node that reuses the ID of a closed
        scene's one) is not the volume the results are about, whatever the task."""
        scene = volumeNode.GetScene()
        if scene is None or not scene.IsNodePresent(volumeNode):
            return ("The input volume was removed from the scene while it was being processed; "
                    "nothing was added.")
        image = volumeNode.GetImageData()
        dims = image.GetDimensions() if image is not None else (0, 0, 0)
        if (dims[2], dims[1], dims[0]) != tuple(sentShape):
            return (f"The input volume '{volumeNode.GetName()}' changed size while it was being processed "
                    f"(sent {tuple(sentShape)[::-1]} voxels (i, j, k), now {tuple(dims)}); nothing was added. "
                    "Press Apply to run it again.")
        if ResultNodes._geometryDifference(VolumeConverter.geometryOf(volumeNode), sentGeometry) > 0:
            return (f"The input volume '{volumeNode.GetName()}' was moved or resampled while it was being "
                    "processed; nothing was added. Press Apply to run it again.")
        for task, result in results.items():
            if isinstance(result, SegmentationResult) and \
                    ResultNodes._geometryDifference(result.geometry, sentGeometry) > 0:
                return (f"The {task} result of model '{result.model}' is placed differently from the input "
                        f"'{volumeNode.GetName()}'; nothing was added.")
        return ""

    @staticmethod
    def _geometryDifference(a, b) -> float:
        """How far two geometries' IJK-to-RAS differ, beyond the tolerance (0 when they agree)."""
        difference = float(np.abs(a.ijk_to_ras_matrix() - b.ijk_to_ras_matrix()).max())
        scale = max(1.0, float(np.abs(b.origin).max()))
        return difference if difference > GEOMETRY_TOLERANCE * scale else 0.0

    def add(self, sourceVolumeNode, results: dict, replaceExisting: bool = False,
            onAdded: Optional[Callable] = None, outputSegmentation=None) -> dict:
        """task -> new nodes for `results` (nnmamba.results objects) of `sourceVolumeNode`.

        All or nothing per task: a task whose nodes cannot all be built adds none and keeps its
        earlier outputs, while the job's other tasks are still added (a segmentation Slicer cannot
        import must not cost the landmarks). Earlier outputs of a task are removed (when replacing)
        only once its new ones exist, except those the user edited by hand: those stay (listed in
        `keptEdited`). `onAdded(source, outputs)` is called when any were added.
        `outputSegmentation`: an existing segmentation node the segments go into (its earlier segments
        are replaced once the new ones are built), as the user chose in the panel; None makes a new one.
        Raises `ResultsNotAddedError` (with the added outputs) after adding what could be added,
        if any task failed."""
        registry = OutputRegistry(sourceVolumeNode.GetScene())
        previous = self.existing(sourceVolumeNode, list(results)) if replaceExisting else {}
        outputs, failures = {}, {}
        for task, result in results.items():
            task = str(getattr(task, "value", task))
            try:
                into = outputSegmentation if task == Task.SEGMENTATION.value else None
                outputs[task] = self._addTask(registry, task, result, sourceVolumeNode, replaceExisting, into)
            except Exception as error:
                logging.exception("NNMambaSlicer: adding the %s nodes failed", task)
                failures[task] = error
        self.keptEdited = []
        for task in outputs:
            previous[task] = [node for node in previous.get(task, []) if node not in outputs[task]]
            edited = [node for node in previous[task] if registry.isEdited(node)]
            self.keptEdited += edited
            registry.remove([node for node in previous.get(task, []) if node not in edited])
        if outputs and onAdded is not None:
            onAdded(sourceVolumeNode, outputs)
        if failures:
            problems = "; ".join(f"{task}: {error}" for task, error in failures.items())
            added = f" The {', '.join(outputs)} results were added." if outputs else " Nothing was added."
            raise ResultsNotAddedError(f"The results could not be added to the scene ({problems}).{added}", outputs)
        return outputs

    def qualityOf(self, modelName: str) -> str:
        """The quality the model's card states (see nnmamba.model_card.QUALITIES)."""
        if modelName in self.qualities:
            return self.qualities[modelName]
        from nnmamba import model_card
        try:
            quality = model_card.find_model(modelName).quality
        except NNMambaError:
            quality = UNKNOWN_QUALITY
        self.qualities[modelName] = quality  # a job's nodes share the model: read its card once
        return quality

    def describe(self, node, task: str, modelName: str) -> None:
        """Says on the node, where Slicer's Data module shows it, what made it and that it is not clinical."""
        quality = self.qualityOf(modelName)
        node.SetAttribute(QUALITY_ATTRIBUTE, quality)
        node.SetDescription(f"nnMamba {task} by model '{modelName}' (quality: {quality}). {NOT_FOR_CLINICAL_USE}")

    def _addTask(self, registry: OutputRegistry, task: str, result, source, replaceExisting: bool,
                 into=None) -> list:
        """The tagged nodes of one task, or none of them (those built are removed) and the error."""
        if task not in OUTPUT_SUFFIX:
            raise ValueError(f"unknown task '{task}' in the worker's results")
        scene = source.GetScene()
        name = f"{source.GetName()} {OUTPUT_SUFFIX[task]}"
        if not replaceExisting:
            name = scene.GenerateUniqueName(name)  # keeping both: the new ones get their own names
        nodes = self._buildTask(task, result, source, name)
        if into is not None:
            nodes[0] = self._moveInto(nodes[0], into, source)
        try:
            for node in nodes:
                registry.tag(node, source, task, getattr(result, "model", ""))
                self.describe(node, task, getattr(result, "model", ""))
        except Exception:
            SceneHelpers.removeNodes(scene, reversed(nodes))  # maybe untagged: the registry would refuse
            raise
        return nodes

    @staticmethod
    def _moveInto(built, target, source):
        """The built segmentation's segments and reference geometry, copied into the user's chosen
        node (its earlier segments go only now that the new ones exist); the built node is removed."""
        if not target.IsA("vtkMRMLSegmentationNode") or target.GetScene() is not source.GetScene():
            SceneHelpers.removeNodes(source.GetScene(), [built.GetDisplayNode(), built])
            raise ValueError(f"the output segmentation '{target.GetName()}' is not a segmentation node of this scene")
        SceneHelpers.placeBeside(target, source)   # before the copy: the reference geometry follows the transform
        wasModifying = target.StartModify()
        target.GetSegmentation().DeepCopy(built.GetSegmentation())
        target.EndModify(wasModifying)
        if target.GetDisplayNode() is None:
            target.CreateDefaultDisplayNodes()
        SceneHelpers.removeNodes(source.GetScene(), [built.GetDisplayNode(), built])
        return target

    def _buildTask(self, task: str, result, source, name: str) -> list:
        if task == Task.SEGMENTATION.value:
            segmentation = self.segmentationBuilder.build(result, source, name)
            try:
                return [segmentation, self.segmentVolumesBuilder.build(result, source, f"{name} volumes")]
            except Exception:
                SceneHelpers.removeNodes(source.GetScene(), [segmentation.GetDisplayNode(), segmentation])
                raise
        if task == Task.LANDMARKS.value:
            return [self.landmarksBuilder.build(result, source, name)]
        if task == Task.CLASSIFICATION.value:
            return list(self.classificationBuilder.build(result, source, name))
        raise ValueError(f"unknown task '{task}'")

    def summary(self, outputs: dict, results: dict) -> str:
        """What a job added (and which edited results it kept), in words for the status line."""
        parts = []
        if "segmentation" in outputs:
            parts.append(f"{outputs['segmentation'][0].GetSegmentation().GetNumberOfSegments()} segments")
        if "landmarks" in outputs:
            parts.append(f"{outputs['landmarks'][0].GetNumberOfControlPoints()} landmarks")
        if "classification" in results:
            result = results["classification"]
            parts.append(f"class {result.top_class} ({float(max(result.probabilities)):.0%})")
        kept = ""
        if self.keptEdited:
            kept = (" Kept the results you edited by hand instead of replacing them: "
                    + ", ".join(node.GetName() for node in self.keptEdited) + ".")
        return "Done: " + ", ".join(parts) + "." + kept + " " + NOT_FOR_CLINICAL_USE
