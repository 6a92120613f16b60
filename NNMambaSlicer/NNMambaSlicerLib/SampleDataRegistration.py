"""Registers the extension's sample brain MR with Slicer's Sample Data module.

The file ships with the engine (nnmamba/data/sample_brain_mr.nrrd), so its URI is a local
`file://` one that Sample Data copies into its cache like a download, and a checksum guards the
copy. Sample Data is an optional module (a custom Slicer build, or `--modules-to-ignore`): without
it nothing is registered and a log line says so; the module works the same.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Optional

CATEGORY = "nnMamba"
SAMPLE_NAME = "nnMambaBrainMR"
NODE_NAME = "nnMamba sample brain MR"


class SampleDataRegistration:
    """Example (in the module's __init__, as Slicer's module template does):
        >>> slicer.app.connect("startupCompleted()", SampleDataRegistration().register)
    """

    def __init__(self, samplePath: Optional[Path] = None, thumbnailPath: Optional[Path] = None) -> None:
        self.samplePath = samplePath
        self.thumbnailPath = thumbnailPath

    def register(self) -> bool:
        """True when registered; False (logged) when Sample Data is not there."""
        try:
            import SampleData
        except ImportError:
            logging.info("NNMambaSlicer: the Sample Data module is not loaded; the nnMamba sample is not listed "
                         "there (load it with nnmamba.data.sample_volume_path() instead)")
            return False
        path = self._samplePath()
        SampleData.SampleDataLogic.registerCustomSampleDataSource(
            category=CATEGORY, sampleName=SAMPLE_NAME, uris=[path.as_uri()], fileNames=[path.name],
            nodeNames=[NODE_NAME], thumbnailFileName=str(self._thumbnailPath()),
            checksums=[f"SHA256:{hashlib.sha256(path.read_bytes()).hexdigest()}"])
        return True

    def _samplePath(self) -> Path:
        if self.samplePath is not None:
            return Path(self.samplePath).resolve()
        from nnmamba.data import sample_volume_path
        return sample_volume_path()

    def _thumbnailPath(self) -> Path:
        if self.thumbnailPath is not None:
            return Path(self.thumbnailPath)
        from .Paths import ModulePaths
        return ModulePaths().resourcePath("Icons/NNMambaSlicer.png")
