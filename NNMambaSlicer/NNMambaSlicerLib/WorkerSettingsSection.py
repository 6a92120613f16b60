"""The panel's worker settings: which Python runs a local worker, an extra models folder, and the
remote server (address, token, CA certificate) the user must confirm before any volume leaves.

GUI-only (qt, ctk, slicer.util dialogs). The values live in Slicer's application settings, not the
scene: they belong to the computer, and a token must never be saved into a shared scene file.
"""

from __future__ import annotations

from typing import Callable

import qt
import slicer
from slicer.i18n import tr as _

from .ServerSettings import ServerSettings
from .WorkerConnection import WorkerSettings

PYTHON_SETTING = "NNMambaSlicer/WorkerPython"
MODELS_FOLDER_SETTING = "NNMambaSlicer/ModelsFolder"


class WorkerSettingsSection:
    """Binds the settings widgets of `ui` and builds the `WorkerSettings` a run uses.

    `onChanged()` is called when Apply's state may change; `onServerConfirmed()` when the user has
    agreed to use a server (the panel then lists its models); `onModelsFolderChanged(path)` when
    another models folder was chosen.

    Example (what the panel does):
        >>> section = WorkerSettingsSection(ui, panel._checkCanApply, panel.onRefreshFromWorker,
        ...                                 panel.onModelsFolderChanged)
        >>> settings = section.workerSettings(device="cuda:0")
    """

    def __init__(self, ui, onChanged: Callable[[], None], onServerConfirmed: Callable[[], None],
                 onModelsFolderChanged: Callable[[str], None]) -> None:
        self.ui = ui
        self.serverSettings = ServerSettings()
        self._onChanged = onChanged
        self._onServerConfirmed = onServerConfirmed
        self._onModelsFolderChanged = onModelsFolderChanged
        ui.pythonExecutablePathLineEdit.filters = self._pathFilters("Files", "Executable")
        ui.modelsFolderPathLineEdit.filters = self._pathFilters("Dirs")
        ui.serverCertificatePathLineEdit.nameFilters = ["PEM certificates (*.pem *.crt)", "All files (*)"]
        self._load()
        ui.pythonExecutablePathLineEdit.connect("currentPathChanged(QString)", self.onPythonExecutableChanged)
        ui.modelsFolderPathLineEdit.connect("currentPathChanged(QString)", self.onModelsFolderChanged)
        ui.useServerButton.connect("clicked(bool)", self.onUseServer)

    @property
    def modelsFolder(self) -> str:
        return self.ui.modelsFolderPathLineEdit.currentPath.strip()

    def workerSettings(self, device: str) -> WorkerSettings:
        """The settings of a run on `device` ("remote": the confirmed server)."""
        if device == "remote":
            host, port = self.serverSettings.address()
            return WorkerSettings(remoteHost=host, remotePort=port, remoteToken=self.serverSettings.token(),
                                  tlsCertificateAuthority=self.serverSettings.tlsCertificateAuthority())
        return WorkerSettings(pythonExecutable=self.ui.pythonExecutablePathLineEdit.currentPath.strip(),
                              device=device, modelsFolder=self.modelsFolder)

    def whyServerNotReady(self):
        """None once a server was entered and confirmed; else what to do, for Apply's tooltip."""
        host, port = self.serverSettings.address()
        if self.serverSettings.isConfirmed(host, port):
            return None
        return _("Enter a server and press 'Use this server...' to confirm sending volumes to it.")

    @staticmethod
    def _pathFilters(*names):
        import ctk
        filters = getattr(ctk.ctkPathLineEdit, names[0])
        for name in names[1:]:
            filters = filters | getattr(ctk.ctkPathLineEdit, name)
        return filters

    def _load(self) -> None:
        host, port = self.serverSettings.address()
        self.ui.serverAddressLineEdit.text = f"{host}:{port}" if host else ""
        self.ui.serverTokenLineEdit.text = self.serverSettings.token()
        self.ui.serverCertificatePathLineEdit.currentPath = self.serverSettings.tlsCertificateAuthority() or ""
        self.ui.pythonExecutablePathLineEdit.currentPath = qt.QSettings().value(PYTHON_SETTING, "") or ""
        self.ui.modelsFolderPathLineEdit.currentPath = qt.QSettings().value(MODELS_FOLDER_SETTING, "") or ""
        self._showRemoteStatus()

    def _showRemoteStatus(self) -> None:
        host, port = self.serverSettings.address()
        if self.serverSettings.isConfirmed(host, port):
            secure = _("over TLS") if self.serverSettings.tlsCertificateAuthority() else _("unencrypted")
            self.ui.remoteStatusLabel.text = _("Volumes will be sent to {address} ({secure}) for processing.").format(
                address=f"{host}:{port}", secure=secure)
        else:
            self.ui.remoteStatusLabel.text = _("Remote processing is off: nothing leaves this computer.")

    def onPythonExecutableChanged(self, path: str) -> None:
        qt.QSettings().setValue(PYTHON_SETTING, path)
        self._onChanged()

    def onModelsFolderChanged(self, path: str) -> None:
        qt.QSettings().setValue(MODELS_FOLDER_SETTING, path)
        self._onModelsFolderChanged(path)

    def onUseServer(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("The server address is not valid."), waitCursor=False):
            host, port = ServerSettings.parseAddress(self.ui.serverAddressLineEdit.text)
            token = self.ui.serverTokenLineEdit.text.strip()
            if not token:
                raise ValueError("enter the token the server printed when it started")
            certificate = self.ui.serverCertificatePathLineEdit.currentPath.strip() or None
            encryption = (_("The connection is encrypted (TLS).") if certificate else
                          _("The connection is NOT encrypted: no CA certificate was given."))
            question = _("Volumes you process will be sent over the network to {address}, and results come back "
                         "from it. {encryption} Only use a server you trust with these images.\n\n"
                         "Send volumes to this server?").format(address=f"{host}:{port}", encryption=encryption)
            if not slicer.util.confirmYesNoDisplay(question, windowTitle="nnMamba: remote server"):
                self.serverSettings.forget()
                self._showRemoteStatus()
                self._onChanged()
                return
            self.serverSettings.save(host, port, token, certificate)
            self.serverSettings.confirm(host, port)
            self._showRemoteStatus()
            self._onServerConfirmed()  # the server's models are its own: list them
