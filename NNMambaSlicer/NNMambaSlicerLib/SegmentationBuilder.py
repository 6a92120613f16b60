"""`SegmentationResult` -> a segmentation node: named, coloured segments with terminology, 3D surfaces."""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import vtk
from vtk.util import numpy_support

from nnmamba.errors import ModelError
from nnmamba.results import SegmentationResult

from .SceneHelpers import SceneHelpers
from .Terminology import GENERAL_ANATOMY_CONTEXT, ModuleTerminology
from .VolumeConverter import GEOMETRY_TOLERANCE, VolumeConverter

# Slicer 5.10 renamed the entry's anatomic region accessors; 5.8 has only the old names, 5.10+
# keeps them as deprecated aliases of the new ones. The first pair an entry has is used.
REGION_ACCESSORS = (("GetRegionObject", "GetRegionModifierObject"),
                    ("GetAnatomicRegionObject", "GetAnatomicRegionModifierObject"))


class SegmentationBuilder:
    """Builds a new segmentation node whose reference geometry is the input volume.

    Each label of the card becomes one segment (label value kept, name, colour, terminology); labels
    absent from the prediction become empty segments so the list always matches the card.

    Example:
        >>> node = SegmentationBuilder().build(result, volumeNode, "MRHead segmentation")
        >>> node.GetSegmentation().GetNumberOfSegments()
    """

    def __init__(self, closedSurfaces: bool = True, terminology: Optional[ModuleTerminology] = None) -> None:
        self.closedSurfaces = closedSurfaces
        self.terminology = terminology or ModuleTerminology()

    def build(self, result: SegmentationResult, sourceVolumeNode, name: str):
        self._checkMatchesInput(result, sourceVolumeNode)
        scene = sourceVolumeNode.GetScene()
        import slicer  # MRML classes; importing slicer needs no application

        with SceneHelpers.addedUntilFailure(scene, slicer.vtkMRMLSegmentationNode(), name) as node:
            node.CreateDefaultDisplayNodes()
            # Under the input's transform first: the reference geometry folds in any transform between
            # the volume and the segmentation, so set before, a parent transform would apply twice.
            SceneHelpers.placeBeside(node, sourceVolumeNode)
            node.SetReferenceImageGeometryParameterFromVolumeNode(sourceVolumeNode)
            self._importLabelmap(result, node)
            self._describeSegments(result, node)
            if self.closedSurfaces and not node.CreateClosedSurfaceRepresentation():
                logging.warning("NNMambaSlicer: no closed-surface converter is registered; segments show in 2D only")
        return node

    @staticmethod
    def labelmapImage(labelmap: np.ndarray, ijkToRas: np.ndarray):
        """A vtkOrientedImageData holding `labelmap` [k, j, i] placed by the 4x4 `ijkToRas`."""
        import slicer

        maximum = int(labelmap.max()) if labelmap.size else 0
        dtype, vtkType = (np.uint8, vtk.VTK_UNSIGNED_CHAR) if maximum < 256 else (np.uint16, vtk.VTK_UNSIGNED_SHORT)
        if labelmap.min() < 0 or maximum >= 65536:
            raise ModelError(f"labels must be in 0..65535, got {labelmap.min()}..{maximum}")
        image = slicer.vtkOrientedImageData()
        k, j, i = labelmap.shape
        image.SetDimensions(i, j, k)
        image.AllocateScalars(vtkType, 1)
        numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())[:] = labelmap.astype(dtype).ravel()
        image.SetImageToWorldMatrix(SceneHelpers.arrayToMatrix(ijkToRas))
        return image

    @staticmethod
    def _checkMatchesInput(result: SegmentationResult, sourceVolumeNode) -> None:
        dims = sourceVolumeNode.GetImageData().GetDimensions()
        expected = (dims[2], dims[1], dims[0])
        if tuple(result.labelmap.shape) != expected:
            raise ModelError(f"the segmentation from model '{result.model}' has {result.labelmap.shape} voxels "
                             f"(k, j, i) but the input '{sourceVolumeNode.GetName()}' has {expected}; "
                             "the worker must return labels on the input grid.")
        geometry = VolumeConverter.geometryOf(sourceVolumeNode)
        difference = np.abs(geometry.ijk_to_ras_matrix() - result.geometry.ijk_to_ras_matrix()).max()
        if difference > GEOMETRY_TOLERANCE * max(1.0, np.abs(geometry.origin).max()):
            raise ModelError(f"the segmentation from model '{result.model}' is placed differently from the input "
                             f"'{sourceVolumeNode.GetName()}' (IJK-to-RAS differs by {difference:.3g}).")

    def _importLabelmap(self, result: SegmentationResult, node) -> None:
        import slicer

        if not np.any(result.labelmap):
            return
        image = self.labelmapImage(np.asarray(result.labelmap), result.geometry.ijk_to_ras_matrix())
        if not slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(image, node, ""):
            raise ModelError(f"Slicer could not import the segmentation of model '{result.model}'")

    def _describeSegments(self, result: SegmentationResult, node) -> None:
        segmentation = node.GetSegmentation()
        byLabel = {}
        for index in range(segmentation.GetNumberOfSegments()):
            segment = segmentation.GetNthSegment(index)
            byLabel[segment.GetLabelValue()] = segment
        for info in sorted(result.segments, key=lambda s: s.label):
            segment = byLabel.pop(int(info.label), None)
            if segment is None:
                segmentId = segmentation.AddEmptySegment("", info.name, list(info.color))
                segment = segmentation.GetSegment(segmentId)
            self._describe(segment, info)
        for label, segment in byLabel.items():
            logging.warning("NNMambaSlicer: model '%s' predicted label %d, which its card does not name",
                            result.model, label)
            segment.SetName(f"Label {label}")
            segment.SetNameAutoGenerated(False)

    def _describe(self, segment, info) -> None:
        segment.SetName(info.name)
        segment.SetColor(*[float(c) for c in info.color])
        segment.SetNameAutoGenerated(False)
        segment.SetColorAutoGenerated(False)
        if info.terminology:
            context = self.terminology.contextFor(info.terminology)
            SegmentationBuilder.setTerminology(segment, SegmentationBuilder.terminologyString(info.terminology, context))

    @staticmethod
    def setTerminology(segment, serializedEntry: str) -> None:
        """Store a serialized terminology entry on a segment, in every Slicer version.

        `vtkSegment.SetTerminology` exists since 5.10 and only sets the tag named by
        `GetTerminologyEntryTagName()`, which every version has: set that tag directly."""
        import slicer

        segment.SetTag(slicer.vtkSegment.GetTerminologyEntryTagName(), serializedEntry)

    @staticmethod
    def regionCodeObjects(entry) -> tuple:
        """(region, region modifier) code objects of a vtkSlicerTerminologyEntry, in any Slicer version."""
        for regionName, modifierName in REGION_ACCESSORS:
            if hasattr(entry, regionName) and hasattr(entry, modifierName):
                return getattr(entry, regionName)(), getattr(entry, modifierName)()
        raise RuntimeError("this Slicer's terminology entries have neither GetRegionObject nor "
                           "GetAnatomicRegionObject; update the NNMambaSlicer extension for this Slicer version")

    @staticmethod
    def terminologyString(terminology: dict, context: str = GENERAL_ANATOMY_CONTEXT) -> str:
        """Slicer's serialized terminology entry from a card's {"category": [scheme, code, meaning], ...}.

        Keys: category, type, type_modifier (or modifier), region, region_modifier; optional context."""
        import slicer

        entry = slicer.vtkSlicerTerminologyEntry()
        entry.SetTerminologyContextName(terminology.get("context", context))
        region, regionModifier = SegmentationBuilder.regionCodeObjects(entry)
        parts = {"category": entry.GetCategoryObject(), "type": entry.GetTypeObject(),
                 "type_modifier": entry.GetTypeModifierObject(), "modifier": entry.GetTypeModifierObject(),
                 "region": region, "region_modifier": regionModifier}
        unknown = sorted(set(terminology) - set(parts) - {"context"})
        if unknown:
            logging.warning("NNMambaSlicer: terminology keys %s are not used (known: %s)", unknown, sorted(parts))
        for key, codeObject in parts.items():
            code = terminology.get(key)
            if not code:
                continue
            if len(code) != 3:
                raise ModelError(f"terminology '{key}' must be [coding scheme, code value, code meaning], got {code}")
            codeObject.SetCodingSchemeDesignator(str(code[0]))
            codeObject.SetCodeValue(str(code[1]))
            codeObject.SetCodeMeaning(str(code[2]))
        return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(entry)
