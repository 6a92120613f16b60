"""Where the module finds its resources and the `nnmamba` engine, in a checkout and when installed.

Source checkout (the module folder added to Slicer's module paths):
    <repo>/NNMambaSlicer/NNMambaSlicer.py, <repo>/Resources/..., <repo>/nnmamba/, <repo>/models/
Installed extension (CMake copies everything into Slicer's qt-scripted-modules folder):
    <lib>/qt-scripted-modules/NNMambaSlicer.py, .../Resources/..., .../nnmamba/, .../models/
"""

from __future__ import annotations

import os
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parent.parent


class ModulePaths:
    """Resolves resources and the engine root beside the module file, or one folder up.

    Example:
        >>> ModulePaths().resourcePath("UI/NNMambaSlicer.ui").is_file()
        True
    """

    def __init__(self, moduleDir: os.PathLike | str | None = None) -> None:
        self.moduleDir = Path(moduleDir) if moduleDir else MODULE_DIR
        self._candidates = [self.moduleDir, self.moduleDir.parent]

    def resourcePath(self, filename: str) -> Path:
        """The file under the first `Resources/` that has it (installed layout first)."""
        for root in self._candidates:
            path = root / "Resources" / filename
            if path.exists():
                return path
        searched = ", ".join(str(root / "Resources") for root in self._candidates)
        raise FileNotFoundError(f"resource '{filename}' not found; looked in {searched}. "
                                "Reinstall the extension or add the checkout's NNMambaSlicer folder "
                                "to Slicer's module paths.")

    def engineRoot(self) -> Path:
        """The folder that holds the `nnmamba` package (to put on the worker's PYTHONPATH)."""
        for root in self._candidates:
            if (root / "nnmamba" / "__init__.py").is_file():
                return root
        searched = ", ".join(str(root) for root in self._candidates)
        raise FileNotFoundError(f"the nnmamba engine package was not found beside the module; looked in "
                                f"{searched}. Reinstall the extension.")

    def requirementsFile(self) -> Path:
        return self.resourcePath("requirements.txt")
