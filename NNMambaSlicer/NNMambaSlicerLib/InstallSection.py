"""The panel's install step: ask, install the worker's packages into Slicer's Python (or only the
client a remote server needs) with pip's output in the panel's log, then read what is installed.

GUI-only (slicer.util dialogs, the panel's widgets). Slicer's pip helpers are GUI-thread APIs that
keep the application responsive while pip runs, so the install runs here, with a busy progress bar.
"""

from __future__ import annotations

import logging
from typing import Callable

import slicer
from slicer.i18n import tr as _


class _PanelLogHandler(logging.Handler):
    """Copies log records (pip's output while installing) into the panel's log box."""

    def __init__(self, append) -> None:
        super().__init__(logging.INFO)
        self._append = append

    def emit(self, record) -> None:
        self._append(record.getMessage())


class InstallSection:
    """Example (the panel's Apply, when only packages are missing):
        >>> if readiness.installable(settings) and not installSection.install(settings): return
    """

    def __init__(self, ui, installLogic, readiness, appendLog: Callable[[str], None],
                 onChanged: Callable[[], None]) -> None:
        self.ui = ui
        self.installLogic = installLogic
        self.readiness = readiness
        self.installing = False
        self._appendLog = appendLog
        self._onChanged = onChanged  # Apply's state changes while installing and after

    def install(self, settings) -> bool:
        """Ask, then install; True when nothing is missing afterwards (False: declined or failed, said why)."""
        self.installing = True
        self._onChanged()
        self.ui.logCollapsibleButton.collapsed = False
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.setRange(0, 0)  # busy: pip reports no fraction
        handler = _PanelLogHandler(self._appendLog)
        logging.getLogger().addHandler(handler)
        installed = False
        try:
            with slicer.util.tryWithErrorDisplay(_("Installing the worker's dependencies failed."), waitCursor=False):
                installed = self.installLogic.installMissing(
                    confirm=lambda question: slicer.util.confirmOkCancelDisplay(question, windowTitle="nnMamba: install"),
                    clientOnly=settings.isRemote)
        finally:
            logging.getLogger().removeHandler(handler)
            self.installing = False
            self.readiness.refreshInstalled()
            self.ui.progressBar.setRange(0, 100)
            self.ui.progressBar.setVisible(False)
            self._onChanged()
        return installed
