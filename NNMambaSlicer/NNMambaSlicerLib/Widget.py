"""The module's Qt panel: binds Resources/UI/NNMambaSlicer.ui to the parameter node and the logic.

GUI-only (imports qt/ctk/slicer.app). It never waits on the worker: Apply queues one job per input
volume, the logic's timer polls, and the logic's signals update the progress bar, status and
results. Everything slow (starting a worker, asking it for its models and devices, checking
another Python) runs in a BackgroundTask that the panel's own timer looks at; installing the
worker's packages is its own button, never part of Apply.
"""

from __future__ import annotations

import logging

import qt
import slicer

from .DeviceChoices import DeviceChoices
from .InputVolumes import InputVolumes
from .InstallLogic import InstallLogic
from .ModelCatalog import TASKS, ModelCatalog
from .ParameterNode import EARLIER_RESULTS, EXTRA_SLOTS, PRECISIONS, ParameterNode
from .Paths import ModulePaths
from .SceneCloseGuard import SceneCloseGuard
from .SegmentationView import SegmentationView
from .ServerSettings import ServerSettings
from .WorkerConnection import WorkerSettings
from .WorkerInquiry import WorkerInquiry
from .WorkerReadiness import WorkerReadiness

EXTRA_CHANNEL_SLOTS = EXTRA_SLOTS
REMOTE_ITEM = ("remote", "Remote server")
PYTHON_SETTING = "NNMambaSlicer/WorkerPython"
MODELS_FOLDER_SETTING = "NNMambaSlicer/ModelsFolder"


class _PanelLogHandler(logging.Handler):
    """Copies log records (pip's output while installing) into the panel's log box."""

    def __init__(self, append) -> None:
        super().__init__(logging.INFO)
        self._append = append

    def emit(self, record) -> None:
        self._append(record.getMessage())


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
        self._jobIds = []                 # this panel's running jobs, in submission order
        self._jobsInRun, self._jobsEnded, self._failures = 0, 0, []
        self.readiness = WorkerReadiness(self.installLogic)
        self.inquiry = WorkerInquiry(self.logic)
        self._installing = False
        self._parameterObserverTag = None

        layout = qt.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        uiWidget = slicer.util.loadUI(str(ModulePaths().resourcePath("UI/NNMambaSlicer.ui")))
        layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.ui.progressBar.setVisible(False)
        self.ui.remoteWidget.setVisible(False)
        self.ui.pythonExecutablePathLineEdit.filters = self._pathFilters("Files", "Executable")
        self.ui.modelsFolderPathLineEdit.filters = self._pathFilters("Dirs")
        self.ui.serverCertificatePathLineEdit.nameFilters = ["PEM certificates (*.pem *.crt)", "All files (*)"]

        self._loadSettings()
        self.catalog = ModelCatalog.fromDisk([self.ui.modelsFolderPathLineEdit.currentPath])
        self.devices = DeviceChoices.usual()
        self._fillModelComboBoxes()
        self._fillDeviceComboBox()
        self._connectWidgets()
        self._logicConnections = [(signal, signal.connect(slot)) for signal, slot in (
            (self.logic.progress, self.onProgress), (self.logic.finished, self.onFinished),
            (self.logic.workerRestarted, self.onWorkerRestarted), (self.logic.outputsAdded, self.onOutputsAdded),
            (self.installLogic.progressInfo, self._appendLog))]
        # The logic drops its own jobs on a close; the panel only changes parameter node.
        self.sceneCloseGuard = SceneCloseGuard(slicer.mrmlScene, lambda: self._observeParameterNode(None),
                                               self.initializeParameterNode)
        self._tickTimer = qt.QTimer()
        self._tickTimer.setInterval(250)
        self._tickTimer.connect("timeout()", self.onTick)
        self._tickTimer.start()
        self.initializeParameterNode()

    # -- lifecycle -------------------------------------------------------------------------------
    def cleanup(self) -> None:
        self._tickTimer.stop()
        self.sceneCloseGuard.close()
        for signal, connectionId in self._logicConnections:
            signal.disconnect(connectionId)
        self._observeParameterNode(None)
        self.logic.close()

    def initializeParameterNode(self) -> None:
        parameters = ParameterNode.getOrCreate(slicer.mrmlScene)
        if parameters.inputVolume is None:
            volumes = InputVolumes(1).allIn(slicer.mrmlScene)
            if volumes:
                parameters.inputVolume = volumes[0]
        self._observeParameterNode(parameters)

    def _observeParameterNode(self, parameters) -> None:
        if self.parameters is not None and self._parameterObserverTag is not None:
            self.parameters.node.RemoveObserver(self._parameterObserverTag)
            self._parameterObserverTag = None
        self.parameters = parameters
        if parameters is not None:
            self._parameterObserverTag = parameters.node.AddObserver("ModifiedEvent", self.updateGUIFromParameterNode)
            self.updateGUIFromParameterNode()

    def onTick(self) -> None:
        """The panel's timer: the worker's new log lines, and the background tasks that ended."""
        for line in self.logic.connection.takeLogLines():
            self._appendLog(line)
        answer = self.inquiry.tick()
        if answer is not None:
            self._showWorkerAnswer(answer)
        problem = self.readiness.tick()
        if problem is not None:
            if problem:
                self._setStatus(problem, error=True)
            self._checkCanApply()

    # -- parameter node <-> widgets --------------------------------------------------------------
    def _connectWidgets(self) -> None:
        ui = self.ui
        for selector in [ui.inputVolumeSelector, *self._extraSelectors()]:
            selector.connect("currentNodeChanged(vtkMRMLNode*)", self.updateParameterNodeFromGUI)
        for task in TASKS:
            getattr(ui, f"{task}CheckBox").connect("toggled(bool)", self.updateParameterNodeFromGUI)
            getattr(ui, f"{task}ModelComboBox").connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        ui.allVolumesCheckBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        ui.deviceComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        ui.ttaCheckBox.connect("toggled(bool)", self.updateParameterNodeFromGUI)
        ui.overlapSliderWidget.connect("valueChanged(double)", self.updateParameterNodeFromGUI)
        ui.precisionComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        ui.earlierResultsComboBox.connect("currentIndexChanged(int)", self.updateParameterNodeFromGUI)
        ui.show3DCheckBox.connect("toggled(bool)", self.onShow3DToggled)
        ui.pythonExecutablePathLineEdit.connect("currentPathChanged(QString)", self.onPythonExecutableChanged)
        ui.modelsFolderPathLineEdit.connect("currentPathChanged(QString)", self.onModelsFolderChanged)
        ui.refreshModelsButton.connect("clicked(bool)", self.onRefreshFromWorker)
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
            self._setInputNodeTypes()
            ui.inputVolumeSelector.setCurrentNode(p.inputVolume)
            ui.inputVolumeSelector.enabled = not p.allVolumes
            ui.allVolumesCheckBox.checked = p.allVolumes
            extras = p.extraInputVolumes
            for index, selector in enumerate(self._extraSelectors()):
                selector.setCurrentNode(extras[index] if index < len(extras) else None)
            for task in TASKS:
                getattr(ui, f"{task}CheckBox").checked = getattr(p, f"{task}Enabled")
                comboBox = getattr(ui, f"{task}ModelComboBox")
                # No name yet: the first model. A name this worker lacks (a scene saved with another
                # worker): nothing shown as selected, and Apply's tooltip says to choose another.
                comboBox.setCurrentIndex(comboBox.findData(p.modelFor(task)) if p.modelFor(task) else 0)
                comboBox.enabled = getattr(p, f"{task}Enabled")
            self._selectDevice(p.device)
            ui.remoteWidget.setVisible(p.device == "remote")
            ui.ttaCheckBox.checked = p.tta
            ui.overlapSliderWidget.value = p.overlap
            ui.precisionComboBox.setCurrentIndex(PRECISIONS.index(p.precision))
            ui.earlierResultsComboBox.setCurrentIndex(EARLIER_RESULTS.index(p.earlierResults))
            ui.show3DCheckBox.checked = p.show3D
            self._showChannelSlots()
            self._showModelInfo()
            self._showSources()
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
            p.allVolumes = ui.allVolumesCheckBox.checked
            p.clearExtraInputVolumes()
            for index, selector in enumerate(self._extraSelectors()):
                p.setExtraInputVolume(index, selector.currentNode())
            for task in TASKS:
                setattr(p, f"{task}Enabled", getattr(ui, f"{task}CheckBox").checked)
                p.setModelFor(task, getattr(ui, f"{task}ModelComboBox").currentData or "")
            p.device = ui.deviceComboBox.currentData or "auto"
            p.tta = ui.ttaCheckBox.checked
            p.overlap = ui.overlapSliderWidget.value
            p.precision = PRECISIONS[max(ui.precisionComboBox.currentIndex, 0)]
            p.earlierResults = EARLIER_RESULTS[max(ui.earlierResultsComboBox.currentIndex, 0)]
            p.show3D = ui.show3DCheckBox.checked
        finally:
            p.node.EndModify(wasModifying)

    def _checkCanApply(self) -> None:
        """Apply is enabled only when a run can start; its tooltip says what is missing."""
        reason = self._whyCannotApply()
        self.ui.applyButton.enabled = reason is None
        self.ui.applyButton.toolTip = reason or "Run the selected tasks on the input volume(s)."
        self.ui.cancelButton.enabled = bool(self._jobIds)
        self.ui.refreshModelsButton.enabled = not (self.inquiry.busy or self._jobIds)
        self.ui.installDependenciesButton.enabled = not (self._installing or self._jobIds)

    def _whyCannotApply(self):
        p = self.parameters
        if p is None:
            return "The module is not initialised."
        if self._installing:
            return "The worker's packages are being installed; wait for it to finish."
        if self._jobIds:
            return "A job is running; wait for it or press Cancel."
        if self.inquiry.busy:
            return "Asking the worker for its models and devices; a moment."
        if not p.enabledTasks():
            return "Tick at least one task."
        for task in p.enabledTasks():
            reason = self.catalog.whyCannotRun(task, p.modelFor(task))
            if reason:
                return reason
        if p.allVolumes:
            if self._channelsNeeded() != 1:
                return "'Run on every loaded volume' needs one-channel models; untick it and select the channels."
            if not InputVolumes(1).allIn(slicer.mrmlScene):
                return "Load a volume first."
        elif p.inputVolume is None:
            return "Select an input volume."
        extras = p.extraInputVolumes[:self._channelsNeeded() - 1]
        missing = self._channelsNeeded() - 1 - len([v for v in extras if v is not None])
        if missing > 0 and not p.allVolumes:
            return f"The selected model needs {missing} more input channel(s); select them under Inputs."
        if p.device == "remote":
            host, port = self.serverSettings.address()
            if not self.serverSettings.isConfirmed(host, port):
                return "Enter a server and press 'Use this server...' to confirm sending volumes to it."
        return self.readiness.whyCannotStart(self.workerSettings())

    # -- models, devices and channels ------------------------------------------------------------
    def _fillModelComboBoxes(self) -> None:
        self.logic.resultNodes.qualities = self.catalog.qualities()  # the nodes say what the panel said
        self._updatingGUI = True
        try:
            for task in TASKS:
                comboBox = getattr(self.ui, f"{task}ModelComboBox")
                comboBox.clear()
                for entry in self.catalog.forTask(task):
                    comboBox.addItem(entry.label, entry.name)
                    comboBox.setItemData(comboBox.count - 1, entry.summary, qt.Qt.ToolTipRole)
        finally:
            self._updatingGUI = False

    def _fillDeviceComboBox(self) -> None:
        self._updatingGUI = True
        try:
            self.ui.deviceComboBox.clear()
            for value, label in [*self.devices.items, REMOTE_ITEM]:
                self.ui.deviceComboBox.addItem(label, value)
        finally:
            self._updatingGUI = False

    def _selectDevice(self, device: str) -> None:
        comboBox = self.ui.deviceComboBox
        if comboBox.findData(device) < 0:  # chosen earlier (a saved scene) but not reported by this worker
            comboBox.insertItem(comboBox.count - 1, f"{device} (not reported by the worker)", device)
        comboBox.setCurrentIndex(comboBox.findData(device))

    def _selectedEntry(self, task: str):
        return self.catalog.find(task, self.parameters.modelFor(task) if self.parameters else "")

    def _channelsNeeded(self) -> int:
        entries = [self._selectedEntry(task) for task in self.parameters.enabledTasks()]
        return max([len(entry.channels) for entry in entries if entry is not None] or [1])

    def _setInputNodeTypes(self) -> None:
        """A vector (RGB) volume is offered only to a model with that many channels."""
        types = InputVolumes(self._channelsNeeded()).nodeTypes()
        if list(self.ui.inputVolumeSelector.nodeTypes) != types:
            self.ui.inputVolumeSelector.nodeTypes = types

    def _showChannelSlots(self) -> None:
        entries = [e for e in (self._selectedEntry(t) for t in self.parameters.enabledTasks()) if e is not None]
        channels = max(entries, key=lambda e: len(e.channels)).channels if entries else ()
        for index in range(EXTRA_CHANNEL_SLOTS):
            visible = index + 1 < len(channels)
            label = getattr(self.ui, f"extraVolumeLabel{index + 1}")
            label.setVisible(visible)
            getattr(self.ui, f"extraVolumeSelector{index + 1}").setVisible(visible)
            if visible:
                label.text = f"{channels[index + 1]} volume:"

    def _showModelInfo(self) -> None:
        lines = []
        for task in self.parameters.enabledTasks():
            entry = self._selectedEntry(task)
            if entry is None:
                continue
            lines.append(f"{task.capitalize()}: {entry.description or entry.summary} <b>{self._qualityWarning(entry)}</b>")
        self.ui.modelInfoLabel.text = "<br>".join(lines)

    @staticmethod
    def _qualityWarning(entry) -> str:
        if not entry.trained:
            return "Untrained weights: the output is not meaningful."
        if entry.quality == "unvalidated":
            return "Unvalidated: its accuracy on real scans has not been shown; check every result."
        return f"Quality: {entry.quality}. Not for clinical use."

    def _showSources(self) -> None:
        problems = "".join(f"<br><b>Not readable:</b> {problem}" for problem in self.catalog.problems)
        self.ui.modelSourceLabel.text = f"Listing the {self.catalog.source}.{problems}"
        self.ui.deviceSourceLabel.text = f"Devices: {self.devices.source}."
        if self.parameters is not None and self.parameters.device == "remote":
            self.ui.logSourceLabel.text = ("A remote server keeps its own log (in the terminal where `nnmamba serve` "
                                           "runs); progress and errors of your jobs are shown above.")
        else:
            self.ui.logSourceLabel.text = "Output of the local worker process, and of installs started here."

    def _extraSelectors(self) -> list:
        return [getattr(self.ui, f"extraVolumeSelector{index + 1}") for index in range(EXTRA_CHANNEL_SLOTS)]

    def onModelsFolderChanged(self, path: str) -> None:
        qt.QSettings().setValue(MODELS_FOLDER_SETTING, path)
        # A running local worker was started with the old folder: the next Apply or refresh restarts it
        # with the new one (the settings differ), so until then the cards on disk are what it will see.
        self.catalog = ModelCatalog.fromDisk([path])
        self._fillModelComboBoxes()
        self.updateGUIFromParameterNode()

    def onRefreshFromWorker(self) -> None:
        """Start (or reach) the worker off the GUI thread, then ask it for its models and devices."""
        settings = self.workerSettings()
        problem = self.readiness.whyCannotStart(settings)
        if problem:
            self._setStatus(problem, error=not self.readiness.checking)
            return
        self.logic.configureWorker(settings)
        self.inquiry.start()
        self._setStatus(f"Asking {self.logic.connection.describe()} for its models and devices...")
        self._checkCanApply()

    def _showWorkerAnswer(self, answer) -> None:
        if answer.error:
            self._setStatus(f"{answer.error[:1].upper()}{answer.error[1:]}. The panel still lists the "
                            f"{self.catalog.source}.", error=True)
        else:
            self.catalog, self.devices = answer.catalog, answer.devices
            self._fillModelComboBoxes()
            self._fillDeviceComboBox()
            self._setStatus(f"{len(self.catalog.entries)} model(s) and {len(self.devices.items)} device choice(s) "
                            f"from {answer.where}.")
        self.updateGUIFromParameterNode()

    # -- worker settings and dependencies --------------------------------------------------------
    @staticmethod
    def _pathFilters(*names):
        import ctk
        filters = getattr(ctk.ctkPathLineEdit, names[0])
        for name in names[1:]:
            filters = filters | getattr(ctk.ctkPathLineEdit, name)
        return filters

    def _loadSettings(self) -> None:
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
            secure = "over TLS" if self.serverSettings.tlsCertificateAuthority() else "unencrypted"
            self.ui.remoteStatusLabel.text = f"Volumes will be sent to {host}:{port} ({secure}) for processing."
        else:
            self.ui.remoteStatusLabel.text = "Remote processing is off: nothing leaves this computer."

    def onPythonExecutableChanged(self, path: str) -> None:
        qt.QSettings().setValue(PYTHON_SETTING, path)
        self._checkCanApply()

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
            self.onRefreshFromWorker()  # the server's models are its own: list them

    def workerSettings(self) -> WorkerSettings:
        p = self.parameters
        if p is not None and p.device == "remote":
            host, port = self.serverSettings.address()
            return WorkerSettings(remoteHost=host, remotePort=port, remoteToken=self.serverSettings.token(),
                                  tlsCertificateAuthority=self.serverSettings.tlsCertificateAuthority())
        return WorkerSettings(pythonExecutable=self.ui.pythonExecutablePathLineEdit.currentPath.strip(),
                              device=p.device if p is not None else "auto",
                              modelsFolder=self.ui.modelsFolderPathLineEdit.currentPath.strip())

    def onInstallDependencies(self) -> None:
        """The explicit install step: ask, then install with pip's output streamed into the worker log."""
        settings = self.workerSettings()
        if settings.isRemote:
            self._setStatus("A remote server runs with its own packages; nothing to install here.")
            return
        if settings.pythonExecutable:
            self.readiness.recheck(settings.pythonExecutable)  # checked again, off the GUI thread
            self._setStatus(self.readiness.whyCannotStart(settings))
            self._checkCanApply()
            return
        self._installing = True
        self._checkCanApply()
        self.ui.logCollapsibleButton.collapsed = False
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.setRange(0, 0)  # busy: pip reports no fraction
        handler = _PanelLogHandler(self._appendLog)
        logging.getLogger().addHandler(handler)
        try:
            with slicer.util.tryWithErrorDisplay("Installing the worker's dependencies failed.", waitCursor=False):
                # Slicer's pip helpers run on the GUI thread and keep it responsive while pip runs.
                if self.installLogic.installMissing(confirm=lambda question: slicer.util.confirmOkCancelDisplay(
                        question, windowTitle="nnMamba: install")):
                    self._setStatus("The worker's dependencies are in place.")
        finally:
            logging.getLogger().removeHandler(handler)
            self._installing = False
            self.readiness.refreshInstalled()
            self.ui.progressBar.setRange(0, 100)
            self.ui.progressBar.setVisible(False)
            self._checkCanApply()

    def _appendLog(self, line: str) -> None:
        self.ui.workerLogTextEdit.appendPlainText(str(line).rstrip())

    # -- running ---------------------------------------------------------------------------------
    def _inputVolumes(self) -> list:
        if self.parameters.allVolumes:
            return InputVolumes(1).allIn(slicer.mrmlScene)
        return [self.parameters.inputVolume]

    def onApply(self) -> None:
        with slicer.util.tryWithErrorDisplay("nnMamba could not start the job.", waitCursor=False):
            p = self.parameters
            volumes = self._inputVolumes()
            replace = self._askReplace(volumes, p.enabledTasks())
            if replace is None:
                return
            self.logic.configureWorker(self.workerSettings())
            self.logic.resultNodes.closedSurfaces = p.show3D  # off: no seconds spent on surfaces nobody sees
            # The model shown is the model run: name it, as the worker's default may be another one.
            models = {task: self._selectedEntry(task).name for task in p.enabledTasks()}
            extras = [] if p.allVolumes else p.extraInputVolumes[:self._channelsNeeded() - 1]  # the card's order
            self._jobsInRun, self._jobsEnded, self._failures = len(volumes), 0, []
            for volume in volumes:
                self._jobIds.append(self.logic.runAsync(volume, self.onJobEnded, tasks=p.enabledTasks(),
                                                        models=models, extraChannels=extras,
                                                        replaceExisting=replace, **p.workerOptions()))
            self.ui.progressBar.setVisible(True)
            self.ui.progressBar.value = 0
            self.ui.timingsLabel.text = ""
            self._setStatus(f"Starting {self.logic.connection.describe()} and sending "
                            f"{'the volume' if len(volumes) == 1 else f'{len(volumes)} volumes'}...")
            self._checkCanApply()

    def _askReplace(self, volumeNodes, tasks):
        """True: replace earlier outputs; False: keep both; None: the user cancelled."""
        policy = self.parameters.earlierResults
        if policy != "ask":
            return policy == "replace"
        existing = {}
        for volumeNode in volumeNodes:
            for nodes in self.logic.existingOutputs(volumeNode, tasks).values():
                existing.setdefault(volumeNode.GetName(), []).extend(nodes)
        if not existing:
            return False
        names = sorted({node.GetName() for nodes in existing.values() for node in nodes
                        if not node.IsA("vtkMRMLPlotSeriesNode")})
        box = qt.QMessageBox(qt.QMessageBox.Question, "nnMamba: earlier results",
                             "These volumes already have results of this module:\n  " + "\n  ".join(names)
                             + "\n\nReplace them once the new results are ready? (No keeps them and adds the new "
                               "results beside them. 'Earlier results' under Outputs stops this question.)",
                             qt.QMessageBox.Yes | qt.QMessageBox.No | qt.QMessageBox.Cancel)
        answer = box.exec_()
        if answer == qt.QMessageBox.Cancel:
            return None
        return answer == qt.QMessageBox.Yes

    def onCancel(self) -> None:
        for jobId in list(self._jobIds):
            self.logic.cancel(jobId)
        if self._jobIds:
            self._setStatus("Cancelling...")

    def onProgress(self, jobId: str, fraction: float, stage: str) -> None:
        if jobId not in self._jobIds:
            return
        overall = (self._jobsEnded + fraction) / max(self._jobsInRun, 1)
        self.ui.progressBar.value = int(round(100 * overall))
        text = stage[:1].upper() + stage[1:] if stage else "Working..."
        if self._jobsInRun > 1:
            text = f"Volume {self._jobsEnded + 1} of {self._jobsInRun}: {text}"
        self._setStatus(text)

    def onJobEnded(self, outcome) -> None:
        """The job's own callback (runAsync); `onFinished` handles every job's end the same way."""

    def onFinished(self, outcome) -> None:
        if outcome.jobId not in self._jobIds:
            return
        self._jobIds.remove(outcome.jobId)
        self._jobsEnded += 1
        if outcome.succeeded:
            self._showResults(outcome)
            self.ui.timingsLabel.text = outcome.timingSummary()
        elif outcome.status.value != "cancelled":
            self._failures.append(outcome.message)
        if self._jobIds:
            return
        self.ui.progressBar.setVisible(False)
        if self._failures:
            self._setStatus(self._failures[-1], error=True)
            slicer.util.errorDisplay("\n\n".join(self._failures), windowTitle="nnMamba")
        elif outcome.succeeded:
            done = "" if self._jobsInRun == 1 else f"{self._jobsInRun} volumes done. Last: "
            self._setStatus(done + outcome.message)
        else:
            self._setStatus(outcome.message or "Cancelled.")
        if not self.catalog.fromWorkerList and self.logic.connection.isStarted:
            self.inquiry.start()  # the worker is up now: show its own models and devices
        self._checkCanApply()

    def onWorkerRestarted(self, message: str) -> None:
        self._setStatus(message, error=True)

    def onOutputsAdded(self, sourceVolumeNode, outputs: dict) -> None:
        if self.parameters is not None:
            SegmentationView().show3D(outputs.get("segmentation", []), self.parameters.show3D)

    def onShow3DToggled(self, visible: bool) -> None:
        self.updateParameterNodeFromGUI()
        for volumeNode in self._inputVolumes() if self.parameters is not None else []:
            if volumeNode is not None:
                outputs = self.logic.existingOutputs(volumeNode, ["segmentation"])
                SegmentationView().show3D(outputs.get("segmentation", []), visible)

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
