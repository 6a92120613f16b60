"""The module's Qt panel: binds Resources/UI/NNMambaSlicer.ui to the parameter node and the logic.

GUI-only (imports qt/ctk/slicer.app). It never waits on the worker: Apply queues a job, the
logic's timer polls, and the logic's signals update the progress bar, status and results.
"""

from __future__ import annotations

import qt
import slicer

from nnmamba import model_card

from .InstallLogic import InstallLogic
from .ParameterNode import DEVICES, EXTRA_SLOTS, PRECISIONS, ParameterNode
from .Paths import ModulePaths
from .ServerSettings import ServerSettings
from .WorkerConnection import WorkerSettings

TASKS = ("segmentation", "landmarks", "classification")
EXTRA_CHANNEL_SLOTS = EXTRA_SLOTS


class Widget(qt.QWidget):
    """The panel. `logic` is the module's NNMambaSlicerLogic (an InferenceLogic with a poll timer).

    Example (what NNMambaSlicerWidget.setup does):
        >>> panel = Widget(logic)
        >>> layout.addWidget(panel)
    """

    def __init__(self, logic, parent=None) -> None:
        super().__init__(parent)
        self.logic = logic
        self.installLogic = InstallLogic()
        self.serverSettings = ServerSettings()
        self.parameters = None
        self._updatingGUI = False
        self._jobId = None
        self._checkedPythons = set()
        self._sceneObserverTags = []
        self._parameterObserverTag = None

        layout = qt.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        uiWidget = slicer.util.loadUI(str(ModulePaths().resourcePath("UI/NNMambaSlicer.ui")))
        layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.progressBar.setVisible(False)
        self.ui.remoteWidget.setVisible(False)
        self.ui.pythonExecutablePathLineEdit.filters = self._pathFilters()
        self.ui.serverCertificatePathLineEdit.nameFilters = ["PEM certificates (*.pem *.crt)", "All files (*)"]

        self._cards = self._readCards()
        self._fillModelComboBoxes()
        self._loadServerSettings()
        self._connectWidgets()
        self.logic.progress.connect(self.onProgress)
        self.logic.finished.connect(self.onFinished)
        self.logic.workerRestarted.connect(self.onWorkerRestarted)
        for event in (slicer.mrmlScene.StartCloseEvent, slicer.mrmlScene.EndCloseEvent):
            self._sceneObserverTags.append(slicer.mrmlScene.AddObserver(event, self.onSceneClose))
        self.initializeParameterNode()

    # -- lifecycle -------------------------------------------------------------------------------
    def cleanup(self) -> None:
        for tag in self._sceneObserverTags:
            slicer.mrmlScene.RemoveObserver(tag)
        self._sceneObserverTags = []
        self._observeParameterNode(None)
        self.logic.close()

    def onSceneClose(self, caller=None, event=None) -> None:
        if event == "StartCloseEvent":
            self._observeParameterNode(None)
        else:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        parameters = ParameterNode.getOrCreate(slicer.mrmlScene)
        if parameters.inputVolume is None:
            firstVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolume is not None:
                parameters.inputVolume = firstVolume
        self._observeParameterNode(parameters)

    def _observeParameterNode(self, parameters) -> None:
        if self.parameters is not None and self._parameterObserverTag is not None:
            self.parameters.node.RemoveObserver(self._parameterObserverTag)
            self._parameterObserverTag = None
        self.parameters = parameters
        if parameters is not None:
            self._parameterObserverTag = parameters.node.AddObserver("ModifiedEvent", self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    # -- parameter node <-> widgets --------------------------------------------------------------
    def _connectWidgets(self) -> None:
        ui = self.ui
        for selector in [ui.inputVolumeSelector, *self._extraSelectors()]:
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        for task in TASKS:
            getattr(ui, f"{task}CheckBox").connect("toggled(bool)", self.updateParameterNodeFromGUI)
            getattr(ui, f"{task}ModelComboBox").connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        ui.deviceComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        ui.ttaCheckBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        ui.overlapSliderWidget.connect("valueChanged(double)", self.updateParameterNodeFromGUI)
        ui.precisionComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        ui.pythonExecutablePathLineEdit.connect("currentPathChanged(QString)", self.onPythonExecutableChanged)
        ui.useServerButton.connect("clicked(bool)", self.onUseServer)
        ui.installDependenciesButton.connect("clicked(bool)", self.onInstallDependencies)
        ui.applyButton.connect("clicked(bool)", self.onApply)
        ui.cancelButton.connect("clicked(bool)", self.onCancel)

    def updateGUIFromParameterNode(self, caller=None, event=None) -> None:
        if self.parameters is None or self._updatingGUI:
            return
        self._updatingGUI = True
        try:
            p, ui = self.parameters, self.ui
            ui.inputVolumeSelector.setCurrentNode(p.inputVolume)
            extras = p.extraInputVolumes
            for index, selector in enumerate(self._extraSelectors()):
                selector.setCurrentNode(extras[index] if index < len(extras) else None)
            for task in TASKS:
                getattr(ui, f"{task}CheckBox").checked = getattr(p, f"{task}Enabled")
                comboBox = getattr(ui, f"{task}ModelComboBox")
                index = comboBox.findData(p.modelFor(task))
                comboBox.setCurrentIndex(index if index >= 0 else 0)
                comboBox.enabled = getattr(p, f"{task}Enabled")
            ui.deviceComboBox.setCurrentIndex(DEVICES.index(p.device))
            ui.remoteWidget.setVisible(p.device == "remote")
            ui.ttaCheckBox.checked = p.tta
            ui.overlapSliderWidget.value = p.overlap
            ui.precisionComboBox.setCurrentIndex(PRECISIONS.index(p.precision))
            self._showChannelSlots()
            self._showModelInfo()
        finally:
            self._updatingGUI = False
        self._checkCanApply()

    def updateParameterNodeFromGUI(self, *unused) -> None:
        if self.parameters is None or self._updatingGUI:
            return
        p, ui = self.parameters, self.ui
        wasModifying = p.node.StartModify()
        try:
            p.inputVolume = ui.inputVolumeSelector.currentNode()
            p.clearExtraInputVolumes()
            for index, selector in enumerate(self._extraSelectors()):
                p.setExtraInputVolume(index, selector.currentNode())
            for task in TASKS:
                setattr(p, f"{task}Enabled", getattr(ui, f"{task}CheckBox").checked)
                p.setModelFor(task, getattr(ui, f"{task}ModelComboBox").currentData or "")
            p.device = DEVICES[max(ui.deviceComboBox.currentIndex, 0)]
            p.tta = ui.ttaCheckBox.checked
            p.overlap = ui.overlapSliderWidget.value
            p.precision = PRECISIONS[max(ui.precisionComboBox.currentIndex, 0)]
        finally:
            p.node.EndModify(wasModifying)

    def _checkCanApply(self) -> None:
        """Apply is enabled only when a run can start; its tooltip says what is missing."""
        reason = self._whyCannotApply()
        self.ui.applyButton.enabled = reason is None
        self.ui.applyButton.toolTip = reason or "Run the selected tasks on the input volume."
        self.ui.cancelButton.enabled = self._jobId is not None

    def _whyCannotApply(self):
        p = self.parameters
        if p is None:
            return "The module is not initialised."
        if self._jobId is not None:
            return "A job is running; wait for it or press Cancel."
        if p.inputVolume is None:
            return "Select an input volume."
        if not p.enabledTasks():
            return "Tick at least one task."
        for task in p.enabledTasks():
            if not self._cards.get(task):
                return f"No {task} model is installed (no model card in the extension's models folder)."
        extras = p.extraInputVolumes[:self._channelsNeeded() - 1]
        missing = self._channelsNeeded() - 1 - len([v for v in extras if v is not None])
        if missing > 0:
            return f"The selected model needs {missing} more input channel(s); select them under Inputs."
        if p.device == "remote":
            host, port = self.serverSettings.address()
            if not self.serverSettings.isConfirmed(host, port):
                return "Enter a server and press 'Use this server...' to confirm sending volumes to it."
        return None

    # -- models and channels ---------------------------------------------------------------------
    @staticmethod
    def _readCards() -> dict:
        cards = {task: [] for task in TASKS}
        try:
            for card in model_card.list_models():
                cards.setdefault(card.task, []).append(card)
        except Exception as error:  # a broken card must not break the panel; say which
            slicer.util.warningDisplay(f"Some nnMamba model cards could not be read: {error}")
        return cards

    def _fillModelComboBoxes(self) -> None:
        for task in TASKS:
            comboBox = getattr(self.ui, f"{task}ModelComboBox")
            comboBox.clear()
            for card in self._cards.get(task, []):
                label = card.name if card.trained else f"{card.name} (untrained)"
                comboBox.addItem(label, card.name)
                comboBox.setItemData(comboBox.count - 1, card.summary(), qt.Qt.ToolTipRole)

    def _selectedCard(self, task: str):
        name = self.parameters.modelFor(task) if self.parameters else ""
        cards = self._cards.get(task, [])
        return next((c for c in cards if c.name == name), cards[0] if cards else None)

    def _channelsNeeded(self) -> int:
        cards = [self._selectedCard(task) for task in self.parameters.enabledTasks()]
        return max([card.in_channels for card in cards if card is not None] or [1])

    def _showChannelSlots(self) -> None:
        cards = [c for c in (self._selectedCard(t) for t in self.parameters.enabledTasks()) if c is not None]
        channels = max(cards, key=lambda c: c.in_channels).channels if cards else []
        for index in range(EXTRA_CHANNEL_SLOTS):
            visible = index + 1 < len(channels)
            label = getattr(self.ui, f"extraVolumeLabel{index + 1}")
            label.setVisible(visible)
            getattr(self.ui, f"extraVolumeSelector{index + 1}").setVisible(visible)
            if visible:
                label.text = f"{channels[index + 1].name} volume:"

    def _showModelInfo(self) -> None:
        lines = []
        for task in self.parameters.enabledTasks():
            card = self._selectedCard(task)
            if card is None:
                continue
            warning = "" if card.trained else " <b>Untrained weights: the output is not meaningful.</b>"
            lines.append(f"{task.capitalize()}: {card.description or card.summary()}{warning}")
        self.ui.modelInfoLabel.text = "<br>".join(lines)

    def _extraSelectors(self) -> list:
        return [getattr(self.ui, f"extraVolumeSelector{index + 1}") for index in range(EXTRA_CHANNEL_SLOTS)]

    # -- worker settings -------------------------------------------------------------------------
    @staticmethod
    def _pathFilters():
        import ctk
        return ctk.ctkPathLineEdit.Files | ctk.ctkPathLineEdit.Executable

    def _loadServerSettings(self) -> None:
        host, port = self.serverSettings.address()
        self.ui.serverAddressLineEdit.text = f"{host}:{port}" if host else ""
        self.ui.serverTokenLineEdit.text = self.serverSettings.token()
        self.ui.serverCertificatePathLineEdit.currentPath = self.serverSettings.tlsCertificateAuthority() or ""
        python = qt.QSettings().value("NNMambaSlicer/WorkerPython", "")
        self.ui.pythonExecutablePathLineEdit.currentPath = python or ""
        self._showRemoteStatus()

    def _showRemoteStatus(self) -> None:
        host, port = self.serverSettings.address()
        if self.serverSettings.isConfirmed(host, port):
            secure = "over TLS" if self.serverSettings.tlsCertificateAuthority() else "unencrypted"
            self.ui.remoteStatusLabel.text = f"Volumes will be sent to {host}:{port} ({secure}) for processing."
        else:
            self.ui.remoteStatusLabel.text = "Remote processing is off: nothing leaves this computer."

    def onPythonExecutableChanged(self, path: str) -> None:
        qt.QSettings().setValue("NNMambaSlicer/WorkerPython", path)

    def onUseServer(self) -> None:
        with slicer.util.tryWithErrorDisplay("The server address is not valid.", waitCursor=False):
            host, port = ServerSettings.parseAddress(self.ui.serverAddressLineEdit.text)
            token = self.ui.serverTokenLineEdit.text.strip()
            if not token:
                raise ValueError("enter the token the server printed when it started")
            certificate = self.ui.serverCertificatePathLineEdit.currentPath.strip() or None
            encryption = ("The connection is encrypted (TLS)." if certificate else
                          "The connection is NOT encrypted: no CA certificate was given.")
            question = (f"Volumes you process will be sent over the network to {host}:{port}, and results come back "
                        f"from it. {encryption} Only use a server you trust with these images.\n\n"
                        "Send volumes to this server?")
            if not slicer.util.confirmYesNoDisplay(question, windowTitle="nnMamba: remote server"):
                self.serverSettings.forget()
                self._showRemoteStatus()
                self._checkCanApply()
                return
            self.serverSettings.save(host, port, token, certificate)
            self.serverSettings.confirm(host, port)
            self._showRemoteStatus()
            self._checkCanApply()

    def workerSettings(self) -> WorkerSettings:
        p = self.parameters
        if p.device == "remote":
            host, port = self.serverSettings.address()
            return WorkerSettings(remoteHost=host, remotePort=port, remoteToken=self.serverSettings.token(),
                                  tlsCertificateAuthority=self.serverSettings.tlsCertificateAuthority())
        return WorkerSettings(pythonExecutable=self.ui.pythonExecutablePathLineEdit.currentPath.strip(),
                              device=p.device)

    def _ensureWorkerCanRun(self, settings: WorkerSettings) -> bool:
        """Local worker in Slicer's Python: offer to install what is missing. Another Python: check it."""
        if settings.isRemote:
            return True
        python = settings.pythonExecutable
        if python:
            if python in self._checkedPythons:
                return True
            with slicer.util.WaitCursor():
                problem = InstallLogic.checkOtherPython(python)
            if problem:
                slicer.util.errorDisplay(f"The worker cannot start: {problem}.")
                return False
            self._checkedPythons.add(python)
            return True
        return self.installLogic.installMissing(
            confirm=lambda question: slicer.util.confirmOkCancelDisplay(question, windowTitle="nnMamba: install"))

    def onInstallDependencies(self) -> None:
        with slicer.util.tryWithErrorDisplay("Installing the worker's dependencies failed.", waitCursor=True):
            if self._ensureWorkerCanRun(self.workerSettings()):
                self.ui.statusLabel.text = "The worker's dependencies are in place."

    # -- running ---------------------------------------------------------------------------------
    def onApply(self) -> None:
        with slicer.util.tryWithErrorDisplay("nnMamba could not start the job.", waitCursor=True):
            p = self.parameters
            replace = self._askReplace(p.inputVolume, p.enabledTasks())
            if replace is None:
                return
            settings = self.workerSettings()
            if not self._ensureWorkerCanRun(settings):
                return
            self.logic.configureWorker(settings)
            extras = p.extraInputVolumes[:self._channelsNeeded() - 1]  # slot order = the card's channel order
            self._jobId = self.logic.runAsync(p.inputVolume, self.onJobEnded, tasks=p.enabledTasks(),
                                              models=p.models(), extraChannels=extras, replaceExisting=replace,
                                              **p.workerOptions())
            self.ui.progressBar.setVisible(True)
            self.ui.progressBar.value = 0
            self._setStatus("Starting the worker and sending the volume...")
            self._checkCanApply()

    def _askReplace(self, volumeNode, tasks):
        """True: replace earlier outputs; False: keep both; None: the user cancelled."""
        existing = self.logic.existingOutputs(volumeNode, tasks)
        if not existing or self.parameters.replaceWithoutAsking:
            return bool(existing)
        names = sorted({node.GetName() for nodes in existing.values() for node in nodes
                        if not node.IsA("vtkMRMLPlotSeriesNode")})
        box = qt.QMessageBox(qt.QMessageBox.Question, "nnMamba: earlier results",
                             f"'{volumeNode.GetName()}' already has results of this module:\n  " + "\n  ".join(names)
                             + "\n\nReplace them once the new results are ready? (No keeps them and adds the new "
                               "results beside them.)",
                             qt.QMessageBox.Yes | qt.QMessageBox.No | qt.QMessageBox.Cancel)
        answer = box.exec_()
        if answer == qt.QMessageBox.Cancel:
            return None
        return answer == qt.QMessageBox.Yes

    def onCancel(self) -> None:
        if self._jobId is not None:
            self.logic.cancel(self._jobId)
            self._setStatus("Cancelling...")

    def onProgress(self, jobId: str, fraction: float, stage: str) -> None:
        if jobId != self._jobId:
            return
        self.ui.progressBar.value = int(round(100 * fraction))
        self._setStatus(stage[:1].upper() + stage[1:] if stage else "Working...")

    def onJobEnded(self, outcome) -> None:
        """The job's own callback (runAsync); `onFinished` handles every job's end the same way."""

    def onFinished(self, outcome) -> None:
        if outcome.jobId != self._jobId:
            return
        self._jobId = None
        self.ui.progressBar.setVisible(False)
        if outcome.succeeded:
            self._setStatus(outcome.message)
            self._showResults(outcome)
        elif outcome.status.value == "cancelled":
            self._setStatus(outcome.message or "Cancelled.")
        else:
            self._setStatus(outcome.message, error=True)
            slicer.util.errorDisplay(outcome.message, windowTitle="nnMamba")
        self._checkCanApply()

    def onWorkerRestarted(self, message: str) -> None:
        self._setStatus(message, error=True)

    def _setStatus(self, text: str, error: bool = False) -> None:
        self.ui.statusLabel.text = text
        self.ui.statusLabel.setStyleSheet("color: #c62828;" if error else "")

    def _showResults(self, outcome) -> None:
        result = outcome.results.get("classification")
        table = self.ui.probabilityTableWidget
        if result is None:
            self.ui.resultsSummaryLabel.text = outcome.message
            table.setRowCount(0)
            return
        top = int(max(range(len(result.class_names)), key=lambda i: result.probabilities[i]))
        self.ui.resultsSummaryLabel.text = (f"Most likely class: <b>{result.class_names[top]}</b> "
                                            f"({float(result.probabilities[top]):.1%}).")
        table.setRowCount(len(result.class_names))
        for row, (name, probability) in enumerate(zip(result.class_names, result.probabilities)):
            for column, text in enumerate((str(name), f"{float(probability):.3f}")):
                item = qt.QTableWidgetItem(text)
                if row == top:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                    item.setBackground(qt.QColor(255, 236, 179))
                table.setItem(row, column, item)
        table.resizeColumnsToContents()
