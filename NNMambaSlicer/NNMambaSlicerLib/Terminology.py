"""The module's own terminology context, for structures Slicer's General Anatomy list lacks.

The shipped brain-structures model segments the hippocampus (SCT 5366008) and the brain stem
(SCT 119238007): both are in DICOM's list but not in "3D Slicer General Anatomy", so a segment
tagged with that context would name a type Slicer's terminology selector cannot find.
`Resources/Terminology/NNMambaSlicer-BrainStructures.term.json` defines them (with laterality);
the module loads it into Slicer's Terminologies logic at start-up, and segments whose category and
type it defines are tagged with its context.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from .Paths import ModulePaths

GENERAL_ANATOMY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
TERMINOLOGY_FILE = "Terminology/NNMambaSlicer-BrainStructures.term.json"


class ModuleTerminology:
    """Which terminology context a card's code belongs to; loads the module's context into Slicer.

    Example:
        >>> terminology = ModuleTerminology()
        >>> terminology.contextFor({"category": ["SCT", "123037004", "Anatomical Structure"],
        ...                         "type": ["SCT", "5366008", "Hippocampus"]})
        'Segmentation category and type - NNMambaSlicer brain structures'
        >>> terminology.loadInto(slicer.modules.terminologies.logic())   # in Slicer, at start-up
    """

    def __init__(self, path: Optional[Path] = None) -> None:
        self.path = Path(path) if path else ModulePaths().resourcePath(TERMINOLOGY_FILE)
        document = json.loads(self.path.read_text(encoding="utf-8"))
        self.contextName = document["SegmentationCategoryTypeContextName"]
        self._types = {(category["CodingSchemeDesignator"], category["CodeValue"],
                        entry["CodingSchemeDesignator"], entry["CodeValue"])
                       for category in document["SegmentationCodes"]["Category"]
                       for entry in category.get("Type", [])}

    def defines(self, terminology: dict) -> bool:
        """True when this context has the card terminology's (category, type) pair."""
        category, typeCode = terminology.get("category"), terminology.get("type")
        if not category or not typeCode:
            return False
        return (category[0], category[1], typeCode[0], typeCode[1]) in self._types

    def contextFor(self, terminology: dict) -> str:
        """The context a card's terminology names: its own "context", this module's, or General Anatomy."""
        if terminology.get("context"):
            return str(terminology["context"])
        return self.contextName if self.defines(terminology) else GENERAL_ANATOMY_CONTEXT

    def loadInto(self, terminologiesLogic) -> str:
        """Load the context into a vtkSlicerTerminologiesModuleLogic; returns its name."""
        loaded = terminologiesLogic.LoadTerminologyFromFile(str(self.path))
        if loaded != self.contextName:
            raise RuntimeError(f"Slicer could not load the terminology file {self.path} (got {loaded!r}); "
                               "reinstall the NNMambaSlicer extension")
        return loaded
