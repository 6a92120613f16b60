"""Whether the worker can start with the current settings, in words for Apply's tooltip.

Slicer's own Python: the packages InstallLogic finds missing (installing them is the panel's
explicit Install step, never part of Apply). Another Python: a subprocess check that it imports
what the worker needs, which can take a minute, so it runs in a BackgroundTask and its answer is
kept per Python until asked again.
"""

from __future__ import annotations

from typing import Optional

from .BackgroundTask import BackgroundTask

INSTALL_HINT = "press Apply to install them (you are asked first)"
INSTALL_AND_APPLY = "Install packages and Apply..."  # Apply's text while only installable packages are missing


class WorkerReadiness:
    """Example:
        >>> readiness = WorkerReadiness(InstallLogic())
        >>> readiness.whyCannotStart(settings)     # None, or e.g. "Checking that '/env/bin/python' can run..."
        >>> readiness.tick()                       # from a timer: a problem found by a check that just ended
    """

    def __init__(self, installLogic) -> None:
        self.installLogic = installLogic
        self.missingPackages = installLogic.missingRequirements()
        self.missingClientPackages = installLogic.missingRequirements(clientOnly=True)
        self._answers: dict = {}        # python -> None (it can run the worker) or the problem
        self._check: Optional[tuple] = None  # (python, BackgroundTask) while a check runs

    @property
    def checking(self) -> bool:
        return self._check is not None

    def refreshInstalled(self) -> None:
        """Read Slicer's packages again (after an install)."""
        self.missingPackages = self.installLogic.missingRequirements()
        self.missingClientPackages = self.installLogic.missingRequirements(clientOnly=True)

    def installable(self, settings) -> bool:
        """True when what keeps the worker from starting is packages Apply can install here."""
        if settings.isRemote:
            return bool(self.missingClientPackages)
        return not settings.pythonExecutable and bool(self.missingPackages) and not self.installLogic.platformProblem()

    def recheck(self, python: str) -> None:
        """Forget the answer for `python`; the next `whyCannotStart` checks it again."""
        self._answers.pop(python, None)

    def whyCannotStart(self, settings) -> Optional[str]:
        """None when the worker can start; else why. Starts the check of another Python if needed."""
        if settings.isRemote:
            if self.missingClientPackages:
                return ("Talking to a remote server needs a small Python package Slicer does not have ("
                        + ", ".join(self.missingClientPackages) + f"): {INSTALL_HINT}.")
            return None
        python = settings.pythonExecutable
        if not python:
            if self.missingPackages:
                return self.installLogic.platformProblem() or (
                    "The worker needs Python packages Slicer does not have (" + ", ".join(self.missingPackages)
                    + f"): {INSTALL_HINT}.")
            return None
        if python in self._answers:
            return self._answers[python]
        if self._check is None:
            self._check = (python, BackgroundTask(lambda: self.installLogic.checkOtherPython(python),
                                                  "nnmamba-python-check"))
        return f"Checking that '{self._check[0]}' can run the worker..."

    def tick(self) -> Optional[str]:
        """When a check has just ended: its problem ('' when the Python is fine); else None."""
        if self._check is None or not self._check[1].done:
            return None
        (python, task), self._check = self._check, None
        problem = task.result if task.error is None else f"the check of '{python}' failed: {task.error}"
        self._answers[python] = f"The worker cannot start: {problem}." if problem else None
        return self._answers[python] or ""
