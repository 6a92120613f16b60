"""Checks and installs what the worker needs, in Slicer's Python or in another environment.

Nothing is installed without asking. In Slicer's own Python: torch through the PyTorch extension
(PyTorchUtils, a declared dependency of this extension: it picks the CUDA build), the rest from
`Resources/requirements.txt` with `slicer.packaging.pip_ensure` (Slicer >= 5.12) or
`slicer.util.pip_install` (older). For another Python (a CUDA environment with mamba-ssm) the
user installs `nnmamba[cuda]` there; we only check it can import what the worker needs.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Callable, Optional

from .Paths import ModulePaths
from .Signal import Signal
from .WorkerConnection import applicationStartupEnvironment

TORCH_REQUIREMENT = "torch>=2.1,<3"
# A console program started from Slicer on Windows flashes a console window unless told not to.
NO_CONSOLE_WINDOW = {"creationflags": subprocess.CREATE_NO_WINDOW} if os.name == "nt" else {}
WORKER_IMPORTS = ("torch", "numpy", "SimpleITK", "safetensors", "websockets")
# What Slicer needs to talk to a remote worker (nnmamba.worker.client): a few hundred kB, no torch.
CLIENT_PACKAGES = ("websockets",)
MAC_INTEL_PROBLEM = (
    "This Slicer runs as Intel (x86_64) code{rosetta}. The last torch built for Intel Macs (2.2.2) needs "
    "NumPy 1, and Slicer comes with NumPy 2, so the worker cannot run inside Slicer. Run it in a separate "
    "Python instead: install Miniforge (https://conda-forge.org/download/) for your Mac, then in a Terminal "
    "run `python3 -m pip install nnmamba` and `which python3`, and paste that path into 'Worker Python' "
    "under Device and options. (Or choose 'Remote server' to use a GPU server.)")


class InstallLogic:
    """Reports missing worker dependencies and installs them after the user agrees.

    Example:
        >>> install = InstallLogic()
        >>> install.missingRequirements()          # in Slicer's Python
        ['torch>=2.1,<3', 'websockets>=15.0']
        >>> install.installMissing(confirm=lambda text: slicer.util.confirmOkCancelDisplay(text))
    """

    def __init__(self, requirementsFile: Optional[Path] = None) -> None:
        self.requirementsFile = Path(requirementsFile) if requirementsFile else ModulePaths().requirementsFile()
        self.progressInfo = Signal()  # (text)

    def requirements(self) -> list:
        """The requirement lines of Resources/requirements.txt (comments and blanks dropped)."""
        lines = self.requirementsFile.read_text(encoding="utf-8").splitlines()
        return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]

    def missingRequirements(self, clientOnly: bool = False) -> list:
        """Requirements (torch first) not satisfied in this Python; `clientOnly`: only what talking
        to a remote worker needs (no torch)."""
        from packaging.requirements import Requirement

        missing = []
        wanted = [TORCH_REQUIREMENT, *self.requirements()]
        if clientOnly:
            wanted = [text for text in wanted if Requirement(text).name in CLIENT_PACKAGES]
        for text in wanted:
            requirement = Requirement(text)
            try:
                installed = importlib.metadata.version(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                missing.append(text)
                continue
            if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
                missing.append(text)
        return missing

    @staticmethod
    def checkOtherPython(pythonExecutable: str, timeout: float = 120.0,
                         environment: Optional[dict] = None) -> Optional[str]:
        """None when `pythonExecutable` can import what the worker needs, else a plain-words problem.

        It runs in `environment` (default: the one Slicer was started with, as the worker will)."""
        probe = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
        if environment is None:
            environment = applicationStartupEnvironment()
        try:
            completed = subprocess.run([pythonExecutable, "-c", probe, *WORKER_IMPORTS], capture_output=True,
                                       text=True, timeout=timeout, env=environment, **NO_CONSOLE_WINDOW)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"could not run '{pythonExecutable}': {error}"
        if completed.returncode != 0:
            lastLine = (completed.stderr.strip().splitlines() or ["unknown error"])[-1]
            return (f"the Python '{pythonExecutable}' cannot run the worker ({lastLine}); install the engine "
                    f"there with: {pythonExecutable} -m pip install 'nnmamba[cuda]' (or without [cuda] on CPU)")
        return None

    @staticmethod
    def platformProblem(system: str = "", machine: str = "", translated: bool = None) -> Optional[str]:
        """Why the worker's packages cannot be installed into this Slicer at all (None when they can).

        Slicer for macOS is an Intel build that Apple silicon runs under Rosetta; no torch for Intel
        Macs works with the NumPy 2 Slicer ships. Arguments default to this machine (tests pass others)."""
        system = system or platform.system()
        machine = machine or platform.machine()
        if system != "Darwin" or machine != "x86_64":
            return None
        if translated is None:
            translated = InstallLogic._runsUnderRosetta()
        return MAC_INTEL_PROBLEM.format(rosetta=" under Rosetta on an Apple silicon Mac" if translated else "")

    @staticmethod
    def _runsUnderRosetta() -> bool:
        try:
            completed = subprocess.run(["sysctl", "-n", "sysctl.proc_translated"], capture_output=True, text=True,
                                       timeout=10, **NO_CONSOLE_WINDOW)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return completed.stdout.strip() == "1"

    def installMissing(self, confirm: Callable[[str], bool], clientOnly: bool = False) -> bool:
        """Install what is missing into Slicer's Python, after `confirm(question)` says yes.

        `clientOnly`: just what a remote worker's client needs. Returns True when nothing is missing
        afterwards; False when the user declined. Raises RuntimeError where it cannot work (Intel macOS)."""
        missing = self.missingRequirements(clientOnly)
        if not missing:
            return True
        problem = None if clientOnly else self.platformProblem()
        if problem:
            raise RuntimeError(problem)
        size = "a few hundred kB" if clientOnly else "torch can be several GB"
        question = ("The nnMamba worker needs these Python packages in Slicer:\n  " + "\n  ".join(missing) +
                    f"\n\nThey are downloaded from the Python package index ({size}). Install them now?")
        if not confirm(question):
            self._log("Install declined; the module cannot run the worker in Slicer's Python until it is done.")
            return False
        if missing[0] == TORCH_REQUIREMENT:
            self.installTorch()
            missing = missing[1:]
        if missing:
            self._pipInstall(missing)
        stillMissing = self.missingRequirements(clientOnly)
        if stillMissing:
            raise RuntimeError(f"these packages are still missing after the install: {stillMissing}; see the "
                               "Python console for pip's messages.")
        self._log("The worker's dependencies are installed.")
        return True

    def installTorch(self) -> None:
        """torch through the PyTorch extension, which picks the CUDA build for this machine's GPU.

        No pip fallback: PyPI's torch is CPU-only on Windows, so "GPU if present" would silently run
        on the CPU. The extension declares PyTorch as a dependency; a source checkout must install it."""
        try:
            import PyTorchUtils  # the PyTorch extension's module
        except ImportError as error:
            raise RuntimeError("the PyTorch extension is not installed, and it is what installs a torch that "
                               "matches your GPU: install 'PyTorch' from the Extensions Manager, restart Slicer, "
                               "then press Apply again") from error
        self._log("Installing PyTorch through the PyTorch extension (it picks the build for your GPU)...")
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False,
                                                              torchVersionRequirement=TORCH_REQUIREMENT[len("torch"):])
        if torch is None:
            raise RuntimeError("the PyTorch extension could not install torch; install it from the PyTorch "
                               "module's panel, then press Apply again.")

    def _pipInstall(self, requirements: list) -> None:
        import slicer

        self._log("Installing " + ", ".join(requirements) + " ...")
        try:
            import slicer.packaging as slicerPackaging  # Slicer >= 5.12
        except ImportError:
            slicerPackaging = None
        if slicerPackaging is not None:
            from packaging.requirements import Requirement

            # The user already agreed (installMissing asked), so pip_ensure does not ask again.
            slicerPackaging.pip_ensure([Requirement(r) for r in requirements], prompt_install=False,
                                       requester="NNMambaSlicer")
        else:
            slicer.util.pip_install(list(requirements))

    def _log(self, text: str) -> None:
        self.progressInfo.emit(text)
