"""The module's terminology context: Slicer's own Terminologies logic loads it, and segments of
structures Slicer's General Anatomy list lacks (hippocampus, brain stem) are tagged with it."""

from __future__ import annotations

import json

import numpy as np
import slicer

from nnmamba import model_card
from nnmamba.results import SegmentationResult, SegmentInfo
from NNMambaSlicerLib.SegmentationBuilder import SegmentationBuilder
from NNMambaSlicerLib.Terminology import GENERAL_ANATOMY_CONTEXT, ModuleTerminology
from NNMambaSlicerLib.VolumeConverter import VolumeConverter

ANATOMY = ["SCT", "123037004", "Anatomical Structure"]
HIPPOCAMPUS = {"category": ANATOMY, "type": ["SCT", "5366008", "Hippocampus"], "type_modifier": ["SCT", "7771000", "Left"]}
THALAMUS = {"category": ANATOMY, "type": ["SCT", "119406000", "Thalamus"]}


def typesIn(logic, contextName: str) -> dict:
    """type code -> number of modifiers, read back through Slicer's Terminologies logic."""
    category = slicer.vtkSlicerTerminologyCategory()
    assert logic.GetNthCategoryInTerminology(contextName, 0, category)
    found = {}
    for index in range(logic.GetNumberOfTypesInTerminologyCategory(contextName, category)):
        entry = slicer.vtkSlicerTerminologyType()
        assert logic.GetNthTypeInTerminologyCategory(contextName, category, index, entry)
        found[entry.GetCodeValue()] = logic.GetNumberOfTypeModifiersInTerminologyType(contextName, category, entry)
    return found


def test_slicers_terminologies_logic_loads_the_context_with_hippocampus_laterality_and_the_brain_stem():
    logic = slicer.vtkSlicerTerminologiesModuleLogic()
    terminology = ModuleTerminology()
    assert terminology.loadInto(logic) == terminology.contextName
    assert typesIn(logic, terminology.contextName) == {"5366008": 2, "119238007": 0}


def test_every_shipped_label_slicers_general_anatomy_lacks_is_defined_by_the_module_context():
    # Slicer 5.12's General Anatomy list has the ventricles, thalamus, caudate and putamen, not these:
    notInGeneralAnatomy = {"5366008", "119238007"}
    terminology = ModuleTerminology()
    card = model_card.default_model("segmentation")
    for label in card.labels:
        if label.terminology and label.terminology["type"][1] in notInGeneralAnatomy:
            assert terminology.contextFor(label.terminology) == terminology.contextName, label.name
        elif label.terminology:
            assert terminology.contextFor(label.terminology) == GENERAL_ANATOMY_CONTEXT, label.name


def test_a_hippocampus_segment_names_the_module_context_and_a_thalamus_general_anatomy(obliqueVolume):
    geometry = VolumeConverter.geometryOf(obliqueVolume)
    labelmap = np.zeros((16, 20, 24), np.uint8)
    labelmap[2:6, 3:9, 4:10] = 1
    labelmap[9:13, 10:15, 12:20] = 2
    result = SegmentationResult(labelmap, geometry, [SegmentInfo(1, "Left hippocampus", (0.9, 0.9, 0.1), HIPPOCAMPUS),
                                                     SegmentInfo(2, "Thalamus", (0.1, 0.6, 0.2), THALAMUS)], "seg")
    node = SegmentationBuilder().build(result, obliqueVolume, "seg")
    segmentation = node.GetSegmentation()
    contexts = {}
    for name in ("Left hippocampus", "Thalamus"):
        entry = slicer.vtkSlicerTerminologyEntry()
        segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName(name))
        assert slicer.vtkSlicerTerminologiesModuleLogic.DeserializeTerminologyEntry(segment.GetTerminology(), entry)
        contexts[name] = entry.GetTerminologyContextName()
    assert contexts == {"Left hippocampus": ModuleTerminology().contextName, "Thalamus": GENERAL_ANATOMY_CONTEXT}


def test_a_card_that_names_its_own_context_keeps_it(tmp_path):
    document = json.loads(ModuleTerminology().path.read_text())
    document["SegmentationCategoryTypeContextName"] = "Segmentation category and type - test list"
    (tmp_path / "test.term.json").write_text(json.dumps(document))
    terminology = ModuleTerminology(tmp_path / "test.term.json")
    assert terminology.contextFor(HIPPOCAMPUS) == "Segmentation category and type - test list"
    assert terminology.contextFor({**HIPPOCAMPUS, "context": "Mine"}) == "Mine"
    assert not terminology.defines({"category": ANATOMY}) and not terminology.defines(THALAMUS)
