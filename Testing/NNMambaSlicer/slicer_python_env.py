"""A separate Python environment holding only what Slicer's own Python bundles, plus slicer-core.

Slicer ships numpy, scipy, SimpleITK, requests, packaging and pydicom (and its MRML, here from the
slicer-core wheel), but not torch, websockets, safetensors, tqdm or matplotlib. `vtk` is installed
without its dependencies because its wheel pulls matplotlib, which Slicer does not bundle.
pytest goes to a folder of its own, put on the path only for the pytest run, so the environment
the module is imported in has nothing Slicer lacks.
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path

SLICER_BUNDLED = ("numpy", "scipy", "SimpleITK", "requests", "packaging", "pydicom")
NOT_IN_SLICER = ("torch", "websockets", "safetensors", "tqdm", "matplotlib")
# slicer-core release -> the exact vtk it was built against (its only requirement)
SLICER_CORE_VTK = {"5.12.4.0": "9.6.0", "5.13.31053.0": "9.6.2"}


class SlicerPythonEnvironment:
    """`python` runs with only Slicer's bundled packages; `pytestPath` adds pytest when wanted."""

    def __init__(self, root: Path, slicerCoreVersion: str) -> None:
        if slicerCoreVersion not in SLICER_CORE_VTK:
            raise ValueError(f"slicerCoreVersion must be one of {sorted(SLICER_CORE_VTK)}, got {slicerCoreVersion!r}")
        self.root = Path(root)
        self.slicerCoreVersion = slicerCoreVersion
        self.pytestPath = self.root / "pytest-only"
        binFolder = "Scripts" if os.name == "nt" else "bin"
        self.python = self.root / "env" / binFolder / ("python.exe" if os.name == "nt" else "python")

    def create(self) -> "SlicerPythonEnvironment":
        venv.create(self.root / "env", with_pip=True, symlinks=os.name != "nt")
        self._pip("install", *SLICER_BUNDLED)
        self._pip("install", "--no-deps", f"slicer-core=={self.slicerCoreVersion}",
                  f"vtk=={SLICER_CORE_VTK[self.slicerCoreVersion]}")
        self._pip("install", "--target", str(self.pytestPath), "pytest")
        return self

    def environment(self, extraPath: tuple = ()) -> dict:
        """os.environ without anything that would let this test run's own packages leak in."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["PYTHONNOUSERSITE"] = "1"
        if extraPath:
            env["PYTHONPATH"] = os.pathsep.join(str(p) for p in extraPath)
        return env

    def _pip(self, *args: str) -> None:
        # pip's own cache makes a second build on this machine take seconds; CI downloads from PyPI.
        completed = subprocess.run([str(self.python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
                                   capture_output=True, text=True, env=self.environment(), timeout=600)
        if completed.returncode != 0:
            raise RuntimeError(f"pip {' '.join(args)} failed in the Slicer-like environment:\n{completed.stderr}")

